"""The kiosk's job queue: what stands between a submitted operation and a lock.

Concurrency, in the order a job meets it:

1. A per-lock gate (an ``asyncio.Lock`` held here): one operation per lock at a time. Jobs
   queue in the order they were submitted (the lock is FIFO and job tasks start in the order
   they are created); past ``lock_queue_limit`` a submission is refused at once as busy, and a
   job that waits longer than ``lock_wait_timeout`` fails as busy.
2. A per-adapter connection semaphore (``max_connections``): a controller holds only a few LE
   links, and a connection attempt beyond them fails in ways that look like a dead lock.
3. An overall budget per operation, on top of the visit's own timeouts.

Nothing here knows what an operation does: the runner hands in a coroutine per job.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import enum
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from blelock.clock import Clock
from blelock.config import Settings
from blelock.errors import BlelockError, OutOfSlots, lock_context
from blelock.service.logs import log_context, logger
from blelock.transport.drive import deadline

__all__ = ["JOBS_KEPT", "Job", "JobQueue", "JobState", "LockBusy", "Result", "ServiceStopping"]

JOBS_KEPT = 1000
"""Finished jobs remembered for GET /jobs/{id}; the oldest finished are forgotten first."""

Result = dict[str, str | int | float | bool | None]
Work = Callable[["Job"], Awaitable[Result]]
"""One job's operation, run inside its gate, a connection slot and its budget."""


class LockBusy(BlelockError):
    """The lock has too many operations running or waiting, or one waited too long."""

    hint = "wait for the operations on this lock to finish and try again"


class ServiceStopping(BlelockError):
    """The service is shutting down and takes no new work."""

    hint = "try again once the service has restarted"


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(eq=False)
class Job:
    id: str
    lock_id: str
    vendor: str
    """The name of the vendor plugin that owns the lock."""
    operation: str
    queued_seq: int
    """Position in one counter shared by queueing, starting and finishing: evidence of order."""
    created_at: dt.datetime
    budget_s: float
    """The whole operation's time budget (from the plugin's OperationSpec)."""
    long_running: bool = False
    radio: bool = True
    """It takes one of the adapter's connection slots (False: only a vendor's cloud is asked)."""
    slot_when_needed: bool = False
    """Its slot is taken when the work asks (:attr:`need_radio`), not before the work starts."""
    state: JobState = JobState.QUEUED
    started_seq: int | None = None
    finished_seq: int | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    progress_done: int | None = None
    progress_total: int | None = None
    result: Result | None = None
    error: BlelockError | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    upkeep_due: bool = True
    """Its end wakes the background upkeep (it may have kept records the cloud has not got);
    the work clears it when it left nothing to upload."""
    release_radio: Callable[[], None] = field(default=lambda: None, repr=False)
    """Frees the job's connection slot before the work ends (once its links are closed and
    only cloud calls remain); the queue sets it while the job holds a slot, and frees the
    slot itself when the work ends, whichever comes first."""
    need_radio: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)
    """Takes the job's connection slot if it holds none (waiting for one, or OutOfSlots): a
    ``slot_when_needed`` job's work awaits it before its radio work. The queue sets it before
    the work starts."""

    def progress(self, done: int, total: int | None) -> None:
        self.progress_done, self.progress_total = done, total


@dataclass
class _Gate:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holders: int = 0
    """Jobs running or waiting on this lock."""


async def _acquired(
    primitive: asyncio.Lock | asyncio.Semaphore, wait: float, refusal: Callable[[], BlelockError]
) -> None:
    """Acquire ``primitive`` within ``wait`` seconds, else raise ``refusal()``."""
    try:
        async with asyncio.timeout(wait):
            await primitive.acquire()
    except TimeoutError:
        raise refusal() from None


class _Slot:
    """One job's hold on a connection slot: none until :meth:`need`, none again after
    :meth:`release` (both idempotent). Work that uses no radio gets one that never waits."""

    def __init__(self, queue: JobQueue | None) -> None:
        self._queue = queue
        self._held = False

    async def need(self) -> None:
        if self._queue is not None and not self._held:
            await self._queue._take_slot()
            self._held = True

    def release(self) -> None:
        if self._queue is not None and self._held:
            self._held = False
            self._queue._give_slot()


class JobQueue:
    """Per-lock gates, the adapter's connection slots, and the jobs remembered."""

    def __init__(
        self, settings: Settings, clock: Clock, *, on_done: Callable[[Job], None] | None = None
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._on_done = on_done
        self._gates: dict[str, _Gate] = {}
        self._slots = asyncio.Semaphore(settings.max_connections)
        self.connections_in_use = 0
        self.peak_connections = 0
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sequence = itertools.count(1)

    # --- submitting ---------------------------------------------------------------------

    def submit(
        self,
        lock_id: str,
        vendor: str,
        operation: str,
        work: Work,
        *,
        budget_s: float,
        long_running: bool = False,
        radio: bool = True,
        slot_when_needed: bool = False,
    ) -> Job:
        """Queue ``work`` on ``lock_id`` and return its job at once; a full queue raises
        LockBusy here and changes nothing."""
        gate = self._join(lock_id, operation)
        job = Job(
            id=uuid.uuid4().hex,
            lock_id=lock_id,
            vendor=vendor,
            operation=operation,
            queued_seq=next(self._sequence),
            created_at=self._clock.now_utc(),
            budget_s=budget_s,
            long_running=long_running,
            radio=radio,
            slot_when_needed=slot_when_needed,
        )
        self._remember(job)
        # Tasks start in creation order, so they reach the FIFO gate in submission order.
        task = asyncio.create_task(self._run(job, work, gate), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    @contextlib.asynccontextmanager
    async def radio_slot(self, lock_id: str, operation: str) -> AsyncIterator[None]:
        """Work that is no job (a command ``blelock agent`` runs for the CLI) under the same
        rules as one: the lock's gate in turn, then one of the adapter's connection slots."""
        gate = self._join(lock_id, operation)
        try:
            async with self._held(lock_id, operation, gate, radio=True) as slot:
                await slot.need()
                yield
        finally:
            self._leave(lock_id, gate)

    def _join(self, lock_id: str, operation: str) -> _Gate:
        gate = self._gates.setdefault(lock_id, _Gate())
        if gate.holders >= self._settings.lock_queue_limit:
            if gate.holders == 0:  # a limit of 0: the gate was only just made
                del self._gates[lock_id]
            error = LockBusy(f"{gate.holders} operations are already running or waiting")
            error.lock_id, error.step = lock_id, operation
            raise error
        gate.holders += 1
        return gate

    def _leave(self, lock_id: str, gate: _Gate) -> None:
        gate.holders -= 1
        if gate.holders == 0 and self._gates.get(lock_id) is gate:
            del self._gates[lock_id]

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job remembered, oldest first."""
        return list(self._jobs.values())

    def unfinished(self) -> list[Job]:
        return [j for j in self._jobs.values() if not j.done.is_set()]

    async def wait(self, job: Job) -> Job:
        """The job, once finished (every job has a budget, so this returns)."""
        await job.done.wait()
        return job

    async def drain(self, timeout: float) -> bool:
        """Wait for every submitted job to finish; False if ``timeout`` passed first (the rest
        are then cancelled)."""
        tasks = set(self._tasks)
        if not tasks:
            return True
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            logger.warning("stopped before every job finished", extra={"cancelled": len(late)})
        return not late

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        while len(self._jobs) > JOBS_KEPT:
            oldest = next((j for j in self._jobs.values() if j.done.is_set()), None)
            if oldest is None:
                break
            del self._jobs[oldest.id]

    # --- running ------------------------------------------------------------------------

    async def _run(self, job: Job, work: Work, gate: _Gate) -> None:
        with log_context(lock=job.lock_id, job=job.id, operation=job.operation):
            try:
                result = await self._gated(job, work, gate)
            except asyncio.CancelledError:
                self._finish(job, error=ServiceStopping("cancelled: the service stopped first"))
                raise
            except BlelockError as exc:
                self._finish(job, error=exc)
            except Exception as exc:
                logger.exception("operation failed unexpectedly")
                error = BlelockError(
                    f"internal error ({type(exc).__name__})",
                    hint="see the service log; report it if it persists",
                )
                error.lock_id, error.step = job.lock_id, job.operation
                self._finish(job, error=error)
            else:
                self._finish(job, result=result)
            finally:
                self._leave(job.lock_id, gate)
                if self._on_done is not None:
                    self._on_done(job)

    async def _gated(self, job: Job, work: Work, gate: _Gate) -> Result:
        async with self._held(job.lock_id, job.operation, gate, radio=job.radio) as slot:
            if not job.slot_when_needed:
                await slot.need()  # a no-op for work that uses no radio
            job.release_radio, job.need_radio = slot.release, slot.need
            return await self._execute(job, work)

    @contextlib.asynccontextmanager
    async def _held(
        self, lock_id: str, operation: str, gate: _Gate, *, radio: bool
    ) -> AsyncIterator[_Slot]:
        """Hold the lock's gate; yields the job's connection slot, taken with ``need()`` (for
        radio work only) and freed early with ``release()`` (a visit whose link is closed and
        has only cloud calls left), else when the block ends."""
        wait = self._settings.lock_wait_timeout
        with lock_context(lock_id, operation):
            await _acquired(
                gate.lock,
                wait,
                lambda: LockBusy(f"waited {wait:g} s for the operations before it on this lock"),
            )
            slot = _Slot(self if radio else None)
            try:
                yield slot
            finally:
                slot.release()
                gate.lock.release()

    async def _take_slot(self) -> None:
        wait, slots = self._settings.lock_wait_timeout, self._settings.max_connections
        await _acquired(
            self._slots,
            wait,
            lambda: OutOfSlots(
                f"waited {wait:g} s for one of the adapter's {slots} connection slots"
            ),
        )
        self.connections_in_use += 1
        self.peak_connections = max(self.peak_connections, self.connections_in_use)

    def _give_slot(self) -> None:
        self.connections_in_use -= 1
        self._slots.release()

    async def _execute(self, job: Job, work: Work) -> Result:
        job.state = JobState.RUNNING
        job.started_seq = next(self._sequence)
        job.started_at = self._clock.now_utc()
        logger.info("operation started")
        async with deadline(job.budget_s, "the operation"):
            return await work(job)

    def _finish(
        self, job: Job, *, result: Result | None = None, error: BlelockError | None = None
    ) -> None:
        job.finished_seq = next(self._sequence)
        job.finished_at = self._clock.now_utc()
        job.result, job.error = result, error
        job.state = JobState.FAILED if error is not None else JobState.DONE
        if error is not None:
            logger.warning("operation failed", extra={"error": error.one_line()})
        else:
            logger.info("operation done")
        job.done.set()
