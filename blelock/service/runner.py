"""The kiosk's long-running core: a live view of nearby locks, lock operations run as jobs, and
background upkeep (log uploads, offline-key refresh), all on one asyncio loop.

Concurrency, in the order a job meets it:

1. A per-lock gate (an ``asyncio.Lock`` held on this runner): one operation per lock at a time.
   Jobs queue in the order they were submitted (the lock is FIFO and job tasks start in the
   order they are created); past ``lock_queue_limit`` a submission is refused at once as busy,
   and a job that waits longer than ``lock_wait_timeout`` fails as busy.
2. A per-adapter connection semaphore (``max_connections``): a controller holds only a few
   LE links, and a connection attempt beyond them fails in ways that look like a dead lock.
3. An overall budget per operation, on top of the visit's own timeouts.

Operations are dispatched through :data:`OPERATIONS`, vendor → operation name → coroutine; a
vendor is wired in with one entry. Visits themselves are :mod:`blelock.jobs`' — the same code
the CLI runs — and every record a lock gives is in the outbox before a job finishes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import enum
import itertools
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Self

from blelock.clock import Clock, SystemClock
from blelock.cloud.noke import NokeCloud
from blelock.config import Settings
from blelock.errors import (
    AuthFailed,
    BlelockError,
    CloudTimeout,
    CloudUnavailable,
    ConfigError,
    LinkTimeout,
    OutOfSlots,
    RateLimited,
    UsageError,
    lock_context,
)
from blelock.jobs import Store, open_store, update, visit
from blelock.jobs.keyless import KeylessUploader, open_lock, sync_keyless
from blelock.model import Action, MacAddress, Sighting, Vendor, parse_mac
from blelock.protocol.dfu_package import DfuPackage, read_package
from blelock.service.logs import log_context, logger
from blelock.sync import drain_outbox, refresh_offline_keys
from blelock.transport.scan import Found, scan
from blelock.vendors.noke import VisitMode

__all__ = [
    "OPERATIONS",
    "Job",
    "JobState",
    "LockBusy",
    "Operation",
    "Runner",
    "SeenLock",
    "ServiceStopping",
    "Task",
    "VendorOperations",
]

SCAN_WINDOW_S = 5.0
"""One scan window, after which the view is updated: fresh enough for someone walking up to a
kiosk, and restarting discovery every few seconds costs BlueZ nothing."""
IN_RANGE_S = 60.0
"""A lock unheard this long is no longer listed as in range (a connected lock stops
advertising, so a short visit must not make it vanish)."""
FIRMWARE_BUDGET_S = 20 * 60.0
"""A whole firmware update: a 200 KB image at a slow link's ~1 KB/s, plus reconnects."""
SYNC_ROUND_BUDGET_S = 15 * 60.0
"""One background round (key refresh + a full drain): the HTTP calls carry their own timeouts;
this only bounds a drain of a very long outbox over a very slow link."""
BACKOFF_MIN_S = 2.0
"""First retry after a failed background round: long enough to ride out a blip."""
BACKOFF_MAX_S = 600.0
"""Ten minutes: a kiosk offline for a day still retries often enough to catch the network."""
JOBS_KEPT = 1000
"""Finished jobs remembered for GET /jobs/{id}; the oldest finished are forgotten first."""
DRAIN_GRACE_S = 5.0
"""Added to the longest running job's own budget when SIGTERM drains in-flight work."""

Result = dict[str, str | int | float | bool | None]


class LockBusy(BlelockError):
    """The lock has too many operations running or waiting, or one waited too long."""

    hint = "wait for the operations on this lock to finish and try again"


class ServiceStopping(BlelockError):
    """The service is shutting down and takes no new work."""

    hint = "try again once the service has restarted"


@dataclass(frozen=True, slots=True)
class Task:
    """What one operation is given."""

    lock_id: str
    settings: Settings
    found: Found | None
    """A fresh sighting from the live view, so the visit need not scan first."""
    tracking_key: str | None = None
    mode: VisitMode = "auto"
    package: DfuPackage | None = None
    prn: int = 0
    progress: Callable[[int, int | None], None] = lambda done, total: None


def _visit_budget(settings: Settings) -> float:
    t = settings.timeouts
    # A scan (when the view had no fresh sighting) and then a whole visit.
    return t.scan + t.visit + 2 * t.gatt


@dataclass(frozen=True, slots=True)
class Operation:
    run: Callable[[Task], Awaitable[Result]]
    budget: Callable[[Settings], float] = _visit_budget
    long_running: bool = False
    """Answered at once with a job to poll, rather than when done."""


@dataclass(frozen=True, slots=True)
class VendorOperations:
    parse_id: Callable[[str], str]
    """The vendor's lock id in canonical form, or a UsageError."""
    operations: Mapping[str, Operation]


async def _noke_visit(task: Task, action: Action) -> Result:
    outcome = await visit(
        MacAddress(task.lock_id),
        action,
        task.settings,
        tracking_key=task.tracking_key,
        found=task.found,
        mode=task.mode,
    )
    return {
        "battery_mv": outcome.battery_mv,
        "offline": outcome.offline,
        "attempts": outcome.attempts,
        "packets_sent": outcome.packets_sent,
        "logs_kept": len(outcome.logs),
    }


async def _noke_unlock(task: Task) -> Result:
    return await _noke_visit(task, Action.UNLOCK)


async def _noke_unshackle(task: Task) -> Result:
    return await _noke_visit(task, Action.UNSHACKLE)


async def _noke_firmware_update(task: Task) -> Result:
    package = task.package
    if package is None:
        raise UsageError("a firmware update needs a package")
    task.progress(0, package.size)
    outcome = await update(
        MacAddress(task.lock_id),
        package,
        task.settings,
        prn=task.prn,
        on_progress=lambda done: task.progress(done, package.size),
    )
    return {
        "version": outcome.version,
        "bytes": outcome.size,
        "bytes_sent": outcome.bytes_sent,
        "connections": outcome.connections,
    }


async def _keyless_open(task: Task) -> Result:
    # The visit scans for the lock itself: a Keyless lock is found by the id in its advert.
    async with open_store(task.settings) as store:
        outcome, online = await open_lock(task.lock_id, task.settings, store, mode=task.mode)
    return {
        "online": online,
        "key_id": outcome.key_id,
        "audit_entries_kept": outcome.audit_collected,
        "certificate_installed": outcome.certificate_installed is not None,
        "rekeying_started": outcome.csr is not None,
    }


def _keyless_id(text: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise UsageError(f"{text!r} is not a Keyless lockingDeviceId (a UUID)") from None


def _firmware_budget(settings: Settings) -> float:
    return FIRMWARE_BUDGET_S


FIRMWARE_UPDATE = "firmware-update"

OPERATIONS: Mapping[Vendor, VendorOperations] = {
    Vendor.NOKE: VendorOperations(
        parse_id=parse_mac,
        operations={
            "unlock": Operation(_noke_unlock),
            "unshackle": Operation(_noke_unshackle),
            FIRMWARE_UPDATE: Operation(_noke_firmware_update, _firmware_budget, True),
        },
    ),
    Vendor.KEYLESS: VendorOperations(
        parse_id=_keyless_id, operations={"open": Operation(_keyless_open)}
    ),
}
"""Vendor → what its locks can do. A lock id the live view has not seen is taken as the first
vendor's whose ``parse_id`` accepts it."""


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(eq=False)
class Job:
    id: str
    lock_id: str
    vendor: Vendor
    operation: str
    queued_seq: int
    """Position in one counter shared by queueing, starting and finishing: evidence of order."""
    created_at: dt.datetime
    long_running: bool = False
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


@dataclass(frozen=True, slots=True)
class SeenLock:
    sighting: Sighting
    found: Found
    last_seen: dt.datetime
    seen_monotonic: float
    battery_mv: int | None
    """From the lock's last session (Nokē adverts carry no battery level)."""


@dataclass
class _Gate:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holders: int = 0
    """Jobs running or waiting on this lock."""


@dataclass(frozen=True, slots=True)
class KeyHealth:
    cached: int
    expiring_soon: int
    """Within the refresh horizon and not yet refreshed."""
    expired: int
    revoked: int
    next_expiry: dt.datetime | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Health:
    stopping: bool
    adapter_up: bool | None
    last_scan_at: dt.datetime | None
    locks_in_range: int
    cloud_reachable: bool | None
    cloud_checked_at: dt.datetime | None
    last_sync_error: str | None
    last_sync_at: dt.datetime | None
    uploads_configured: bool
    outbox_depth: int
    set_aside: int
    """Records in batches the cloud refused for good: they wait for a person to act."""
    keys: KeyHealth | None
    jobs_running: int
    jobs_queued: int
    max_connections: int
    connections_in_use: int
    peak_connections: int


class _Backoff:
    """ARCHITECTURE (d): refused credentials → the maximum; 429 → its Retry-After; other
    failures → exponential from the minimum, with jitter so kiosks do not retry in step."""

    def __init__(self) -> None:
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def after(self, exc: BaseException) -> float:
        self.failures += 1
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(max(exc.retry_after, BACKOFF_MIN_S), BACKOFF_MAX_S)
        if isinstance(exc, AuthFailed | ConfigError):
            return BACKOFF_MAX_S
        exponential: float = BACKOFF_MIN_S * 2.0 ** min(self.failures - 1, 16)
        return min(exponential, BACKOFF_MAX_S) * random.uniform(0.8, 1.2)


class Runner:
    """Use as ``async with Runner(settings) as runner:``; leaving drains in-flight jobs."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        scan_window: float = SCAN_WINDOW_S,
        operations: Mapping[Vendor, VendorOperations] = OPERATIONS,
    ) -> None:
        self.settings = settings
        self._clock = clock or SystemClock()
        self._scan_window = scan_window
        self._operations = operations
        self._gates: dict[str, _Gate] = {}
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._slots_in_use = 0
        self.peak_connections = 0
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._sequence = itertools.count(1)
        self._view: dict[str, SeenLock] = {}
        self._batteries: dict[str, int] = {}
        self._accepting = False
        self._logs_waiting = asyncio.Event()
        self._scanned = asyncio.Condition()
        self.scans_completed = 0
        self._synced = asyncio.Condition()
        self.sync_rounds = 0
        """Background rounds finished, successful or not."""
        self.last_sync_at: dt.datetime | None = None
        self._exit = contextlib.AsyncExitStack()
        self._store: Store | None = None
        self._cloud: NokeCloud | None = None
        self.adapter_up: bool | None = None
        self.last_scan_at: dt.datetime | None = None
        self.cloud_reachable: bool | None = None
        self.cloud_checked_at: dt.datetime | None = None
        self.last_sync_error: str | None = None
        self._key_health: KeyHealth | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the store, and start scanning and the background upkeep; work left in the store
        by an earlier run (logs not yet uploaded) is picked up by the first round."""
        self._store = await self._exit.enter_async_context(open_store(self.settings))
        if self.settings.noke_api_key is not None:
            self._cloud = NokeCloud.from_settings(self.settings)
            self._exit.push_async_callback(self._cloud.aclose)
        self._accepting = True
        self._background = [
            asyncio.create_task(self._scan_loop(), name="blelock-scan"),
            asyncio.create_task(self._sync_loop(), name="blelock-sync"),
        ]
        pending = await self.pending_logs()
        logger.info(
            "service started",
            extra={"outbox_depth": pending, "max_connections": self.settings.max_connections},
        )

    def stop_accepting(self) -> None:
        """New submissions are refused from now on (SIGTERM's first step)."""
        self._accepting = False

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait for every submitted job to finish; False if ``timeout`` passed first (the rest
        are then cancelled, which keeps the store consistent: logs are appended in ``finally``,
        and an unacknowledged upload batch is simply resent next time)."""
        tasks = set(self._job_tasks)
        if not tasks:
            return True
        if timeout is None:
            running = [j for j in self._jobs.values() if not j.done.is_set()]
            budgets = [
                self._operation(j.vendor, j.operation).budget(self.settings) for j in running
            ]
            timeout = max(budgets, default=0.0) + DRAIN_GRACE_S
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            logger.warning("stopped before every job finished", extra={"cancelled": len(late)})
        return not late

    async def close(self) -> None:
        self.stop_accepting()
        await self.drain()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._exit.aclose()
        logger.info("service stopped")

    # --- submitting work ----------------------------------------------------------------

    def _operation(self, vendor: Vendor, name: str) -> Operation:
        return self._operations[vendor].operations[name]

    def operation_names(self) -> list[str]:
        """Every operation some wired vendor supports, in table order."""
        names: dict[str, None] = {}
        for table in self._operations.values():
            names.update(dict.fromkeys(table.operations))
        return list(names)

    def resolve(self, lock_id: str, vendor: Vendor | None = None) -> tuple[Vendor, str]:
        """The vendor and canonical id of ``lock_id``: as asked, else as the live view saw
        it, else the first vendor whose id format accepts it."""
        if vendor is not None:
            if vendor not in self._operations:
                raise UsageError(
                    f"{vendor.value} locks are not supported by this service",
                    hint=f"supported: {', '.join(v.value for v in self._operations)}",
                )
            return vendor, self._operations[vendor].parse_id(lock_id)
        first_error: UsageError | None = None
        candidates: list[tuple[Vendor, str]] = []
        for known, table in self._operations.items():
            try:
                canonical = table.parse_id(lock_id)
            except UsageError as exc:
                first_error = first_error or exc
                continue
            seen = self._view.get(canonical)
            if seen is not None and seen.sighting.vendor is known:
                return known, canonical
            candidates.append((known, canonical))
        if candidates:
            return candidates[0]
        assert first_error is not None  # OPERATIONS is never empty
        raise first_error

    async def load_package(self, name: str) -> DfuPackage:
        """A firmware package by file name from ``serve_firmware_dir``, the only place the API
        may take one from."""
        folder = self.settings.serve_firmware_dir
        if folder is None:
            raise ConfigError(
                "firmware updates through the API are off",
                hint="set serve_firmware_dir in the config file to the folder of packages",
            )
        if Path(name).name != name or name.startswith("."):
            raise UsageError(
                f"package {name!r} is not a plain file name",
                hint="name a package in the service's firmware folder, without a path",
            )
        path = folder / name
        if not await asyncio.to_thread(path.is_file):
            raise UsageError(
                f"there is no package {name!r} in the firmware folder",
                hint="copy the package into serve_firmware_dir first",
            )
        return await asyncio.to_thread(read_package, path)

    def submit(
        self,
        operation: str,
        lock_id: str,
        *,
        vendor: Vendor | None = None,
        tracking_key: str | None = None,
        mode: VisitMode = "auto",
        package: DfuPackage | None = None,
        prn: int = 0,
    ) -> Job:
        """Queue one operation on one lock and return its job at once. Refusals (stopping,
        unknown lock or operation, a full queue) raise here and change nothing."""
        if not self._accepting:
            raise ServiceStopping("the service is stopping and takes no new operations")
        vendor, canonical = self.resolve(lock_id, vendor)
        table = self._operations[vendor].operations
        if operation not in table:
            raise UsageError(
                f"{vendor.value} locks cannot {operation}",
                hint=f"they can: {', '.join(table)}",
            )
        gate = self._gates.setdefault(canonical, _Gate())
        if gate.holders >= self.settings.lock_queue_limit:
            error = LockBusy(f"{gate.holders} operations are already running or waiting")
            error.lock_id, error.step = canonical, operation
            raise error
        gate.holders += 1
        op = table[operation]
        job = Job(
            id=uuid.uuid4().hex,
            lock_id=canonical,
            vendor=vendor,
            operation=operation,
            queued_seq=next(self._sequence),
            created_at=self._clock.now_utc(),
            long_running=op.long_running,
        )
        self._remember(job)

        def progress(done: int, total: int | None) -> None:
            job.progress_done, job.progress_total = done, total

        task = Task(
            canonical,
            self.settings,
            None,
            tracking_key=tracking_key,
            mode=mode,
            package=package,
            prn=prn,
            progress=progress,
        )
        # Tasks start in creation order, so they reach the FIFO gate in submission order.
        running = asyncio.create_task(self._run(job, op, task, gate), name=f"job-{job.id}")
        self._job_tasks.add(running)
        running.add_done_callback(self._job_tasks.discard)
        return job

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job remembered, oldest first."""
        return list(self._jobs.values())

    async def wait(self, job: Job) -> Job:
        """The job, once finished (every job has a budget, so this returns)."""
        await job.done.wait()
        return job

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        while len(self._jobs) > JOBS_KEPT:
            oldest = next((j for j in self._jobs.values() if j.done.is_set()), None)
            if oldest is None:
                break
            del self._jobs[oldest.id]

    # --- running work -------------------------------------------------------------------

    async def _run(self, job: Job, op: Operation, task: Task, gate: _Gate) -> None:
        with log_context(lock=job.lock_id, job=job.id, operation=job.operation):
            try:
                result = await self._gated(job, op, task, gate)
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
                gate.holders -= 1
                if gate.holders == 0 and self._gates.get(job.lock_id) is gate:
                    del self._gates[job.lock_id]
                self._logs_waiting.set()  # the visit may have kept records: upload soon

    async def _gated(self, job: Job, op: Operation, task: Task, gate: _Gate) -> Result:
        wait = self.settings.lock_wait_timeout
        with lock_context(job.lock_id, job.operation):
            try:
                async with asyncio.timeout(wait):
                    await gate.lock.acquire()
            except TimeoutError:
                raise LockBusy(
                    f"waited {wait:g} s for the operations before it on this lock"
                ) from None
            try:
                try:
                    async with asyncio.timeout(wait):
                        await self._slots.acquire()
                except TimeoutError:
                    raise OutOfSlots(
                        f"waited {wait:g} s for one of the adapter's "
                        f"{self.settings.max_connections} connection slots"
                    ) from None
                self._slots_in_use += 1
                self.peak_connections = max(self.peak_connections, self._slots_in_use)
                try:
                    return await self._execute(job, op, task)
                finally:
                    self._slots_in_use -= 1
                    self._slots.release()
            finally:
                gate.lock.release()

    async def _execute(self, job: Job, op: Operation, task: Task) -> Result:
        job.state = JobState.RUNNING
        job.started_seq = next(self._sequence)
        job.started_at = self._clock.now_utc()
        logger.info("operation started")
        budget = op.budget(self.settings)
        try:
            async with asyncio.timeout(budget):
                return await op.run(replace(task, found=self._fresh(job.lock_id)))
        except TimeoutError as exc:
            if isinstance(exc, BlelockError):
                raise
            raise LinkTimeout(f"gave up after {budget:g} s") from None

    def _finish(
        self, job: Job, *, result: Result | None = None, error: BlelockError | None = None
    ) -> None:
        job.finished_seq = next(self._sequence)
        job.finished_at = self._clock.now_utc()
        job.result, job.error = result, error
        job.state = JobState.FAILED if error is not None else JobState.DONE
        if error is not None:
            logger.warning("operation failed", extra={"error": error.one_line()})
            if isinstance(error, CloudUnavailable | CloudTimeout):
                self._cloud_seen(reachable=False)
        else:
            battery = (result or {}).get("battery_mv")
            if isinstance(battery, int):
                self._batteries[job.lock_id] = battery
            if (result or {}).get("offline") is False:
                self._cloud_seen(reachable=True)
            logger.info("operation done")
        job.done.set()

    def _cloud_seen(self, *, reachable: bool) -> None:
        self.cloud_reachable = reachable
        self.cloud_checked_at = self._clock.now_utc()

    # --- the live view ------------------------------------------------------------------

    def _fresh(self, lock_id: str) -> Found | None:
        seen = self._view.get(lock_id)
        # Two windows: the lock advertised within the last one or the one before.
        if seen is None or self._clock.monotonic() - seen.seen_monotonic > 2 * self._scan_window:
            return None
        return seen.found

    def locks_in_range(self) -> list[SeenLock]:
        now = self._clock.monotonic()
        return sorted(
            (
                replace(seen, battery_mv=self._batteries.get(lock_id, seen.battery_mv))
                for lock_id, seen in self._view.items()
                if now - seen.seen_monotonic <= max(IN_RANGE_S, 2 * self._scan_window)
            ),
            key=lambda seen: seen.sighting.lock_id,
        )

    async def wait_for_scans(self, count: int) -> None:
        """Until ``count`` scan windows have completed since start."""
        async with self._scanned:
            await self._scanned.wait_for(lambda: self.scans_completed >= count)

    async def wait_for_sync_rounds(self, count: int) -> None:
        """Until ``count`` background rounds have finished since start."""
        async with self._synced:
            await self._synced.wait_for(lambda: self.sync_rounds >= count)

    async def _round_finished(self) -> None:
        async with self._synced:
            self.sync_rounds += 1
            self.last_sync_at = self._clock.now_utc()
            self._synced.notify_all()

    async def _scan_loop(self) -> None:
        """Scan window after window; when the adapter fails (unplugged, powered off, BlueZ
        restarted), say so in health, back off and scan again."""
        backoff = _Backoff()
        while True:
            try:
                heard = await scan(self.settings, duration=self._scan_window)
            except BlelockError as exc:
                await self._scan_failed(backoff, exc, exc.one_line())
                continue
            except Exception as exc:
                logger.exception("scan failed unexpectedly")
                await self._scan_failed(backoff, exc, type(exc).__name__)
                continue
            if self.adapter_up is False:
                logger.info("adapter back; scanning again")
            backoff.reset()
            self.adapter_up = True
            now, monotonic = self._clock.now_utc(), self._clock.monotonic()
            self.last_scan_at = now
            for found in heard:
                lock_id = found.sighting.lock_id
                self._view[lock_id] = SeenLock(
                    found.sighting, found, now, monotonic, self._batteries.get(lock_id)
                )
            async with self._scanned:
                self.scans_completed += 1
                self._scanned.notify_all()

    async def _scan_failed(self, backoff: _Backoff, exc: BaseException, text: str) -> None:
        self.adapter_up = False
        delay = backoff.after(exc)
        logger.warning("scan failed", extra={"error": text, "retry_in_s": round(delay, 1)})
        await asyncio.sleep(delay)

    # --- background upkeep --------------------------------------------------------------

    async def _sync_loop(self) -> None:
        """Upload kept logs and refresh offline keys due within the horizon; after a failure,
        back off (a visit's wake-up does not cut a backoff short: the cloud is still down)."""
        backoff = _Backoff()
        while True:
            self._logs_waiting.clear()
            delay = await self._guarded_round(backoff)
            await self._round_finished()
            if delay is not None:
                await asyncio.sleep(delay)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.sync_interval):
                    await self._logs_waiting.wait()

    async def _guarded_round(self, backoff: _Backoff) -> float | None:
        """One round; None when it went through, else how long to back off."""
        try:
            async with asyncio.timeout(SYNC_ROUND_BUDGET_S):
                await self._sync_round()
        except (BlelockError, TimeoutError) as exc:
            delay = backoff.after(exc)
            text = exc.one_line() if isinstance(exc, BlelockError) else "the round timed out"
            self.last_sync_error = text
            if isinstance(exc, CloudUnavailable | CloudTimeout) or not isinstance(
                exc, BlelockError
            ):
                self._cloud_seen(reachable=False)
            logger.warning(
                "background sync failed", extra={"error": text, "retry_in_s": round(delay, 1)}
            )
            return delay
        except Exception as exc:
            logger.exception("background sync failed unexpectedly")
            return backoff.after(exc)
        backoff.reset()
        return None

    async def _sync_round(self) -> None:
        """Each vendor's upkeep in turn; one vendor's cloud failing does not stop the other's
        (the first failure is raised after both had their turn, for the backoff)."""
        store = self._store
        if store is None:
            return
        contacted = False
        failure: BaseException | None = None
        for upkeep in (self._noke_upkeep, self._keyless_upkeep):
            try:
                contacted = await upkeep(store) or contacted
            except BlelockError as exc:
                failure = failure or exc
        if contacted and failure is None:
            self._cloud_seen(reachable=True)
            self.last_sync_error = None
        if failure is not None:
            raise failure

    async def _noke_upkeep(self, store: Store) -> bool:
        cloud = self._cloud
        if cloud is None:
            return False
        contacted = await self._refresh_keys(store, cloud)
        if self.settings.noke_mobile_key is not None and await store.outbox.pending_count():
            uploaded = await drain_outbox(cloud, store.outbox)
            logger.info("uploaded lock logs", extra={"records": uploaded})
            contacted = True
        return contacted

    async def _keyless_upkeep(self, store: Store) -> bool:
        """When this kiosk is a Keyless operating device: upload the kept audit entries, and
        sync its keys when one expires within the horizon; whether the platform was called."""
        try:
            keyless = await store.keyless()
            if await keyless.device() is None:
                return False
            keys = await keyless.list_keys()
        except BlelockError:
            return False  # the data key's trouble is reported by the Nokē key health
        due = self._clock.now_utc() + dt.timedelta(hours=self.settings.key_refresh_horizon_hours)
        contacted = False
        if not keys or any(key.not_after <= due for key in keys):
            report = await sync_keyless(self.settings, store)
            logger.info(
                "synced Keyless keys",
                extra={"operating": report.operating_keys, "offline": report.offline_keys},
            )
            contacted = True
        if await store.keyless_outbox.pending_count():
            async with KeylessUploader.open(self.settings, store) as uploader:
                uploaded = await drain_outbox(uploader, store.keyless_outbox)
            logger.info("uploaded Keyless audit entries", extra={"records": uploaded})
            contacted = True
        return contacted

    async def _refresh_keys(self, store: Store, cloud: NokeCloud) -> bool:
        """Refresh the cached keys that expire within the horizon; whether the cloud was
        called. A store whose data key cannot be opened is reported, and uploads go on."""
        try:
            keys = await store.keys.list_keys()
        except BlelockError as exc:
            self._key_health = KeyHealth(0, 0, 0, 0, None, exc.one_line())
            return False
        now = self._clock.now_utc()
        horizon = dt.timedelta(hours=self.settings.key_refresh_horizon_hours)
        live = [k for k in keys if k.revoked_at is None]
        due = sorted({k.lock_id for k in live if k.expires_at - now <= horizon})
        if due:
            summary = await refresh_offline_keys(cloud, store.keys, macs=due)
            logger.info(
                "refreshed offline keys",
                extra={
                    "locks": len(due),
                    "refreshed": summary.refreshed + summary.unchanged,
                    "revoked": summary.revoked,
                },
            )
            keys = await store.keys.list_keys()
            live = [k for k in keys if k.revoked_at is None]
        self._key_health = KeyHealth(
            cached=len(keys),
            expiring_soon=sum(1 for k in live if now < k.expires_at <= now + horizon),
            expired=sum(1 for k in live if k.expires_at <= now),
            revoked=len(keys) - len(live),
            next_expiry=min((k.expires_at for k in live), default=None),
            error=None,
        )
        return bool(due)

    # --- reports ------------------------------------------------------------------------

    async def pending_logs(self) -> int:
        if self._store is None:
            raise RuntimeError("the runner is not started")
        store = self._store
        return await store.outbox.pending_count() + await store.keyless_outbox.pending_count()

    async def _set_aside(self) -> int:
        store = self._store
        if store is None:
            return 0
        batches = [*await store.outbox.failed(), *await store.keyless_outbox.failed()]
        return sum(batch.records for batch in batches)

    async def health(self) -> Health:
        jobs = [j for j in self._jobs.values() if not j.done.is_set()]
        return Health(
            stopping=not self._accepting,
            adapter_up=self.adapter_up,
            last_scan_at=self.last_scan_at,
            locks_in_range=len(self.locks_in_range()),
            cloud_reachable=self.cloud_reachable,
            cloud_checked_at=self.cloud_checked_at,
            last_sync_error=self.last_sync_error,
            last_sync_at=self.last_sync_at,
            uploads_configured=self._cloud is not None
            and self.settings.noke_mobile_key is not None,
            outbox_depth=await self.pending_logs(),
            set_aside=await self._set_aside(),
            keys=self._key_health,
            jobs_running=sum(1 for j in jobs if j.state is JobState.RUNNING),
            jobs_queued=sum(1 for j in jobs if j.state is JobState.QUEUED),
            max_connections=self.settings.max_connections,
            connections_in_use=self._slots_in_use,
            peak_connections=self.peak_connections,
        )
