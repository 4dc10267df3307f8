"""The kiosk's long-running core, composed: a live view of nearby locks (:mod:`.view`), lock
operations run as jobs (:mod:`.queue`), background upkeep (:mod:`.upkeep`) and health
(:mod:`.health`), all on one asyncio loop over one opened store.

What a lock can do comes from the vendor plugins (:mod:`blelock.vendors`): their operations,
budgets and options. Nothing here names a vendor. A lock id is given to the vendor named, else
to the vendor whose lock the scan heard with it, else to the only vendor whose id format
accepts it and that has the operation; an id several vendors could own is refused, naming them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from blelock import access, jobs, vendors
from blelock.access.store import GrantStore
from blelock.clock import Clock, SystemClock
from blelock.config import Settings
from blelock.errors import (
    BlelockError,
    CloudJobRunning,
    CloudTimeout,
    CloudUnavailable,
    ConfigError,
    UsageError,
    lock_context,
)
from blelock.model import VisitResult
from blelock.protocol.dfu_package import DfuPackage, read_package
from blelock.service.health import Health, VendorHealth, VendorStatus, cloud_reachable, sum_keys
from blelock.service.logs import logger
from blelock.service.queue import Job, JobQueue, JobState, LockBusy, Result, ServiceStopping
from blelock.service.upkeep import Backoff, Upkeep
from blelock.service.view import LiveView, SeenLock
from blelock.store import Store
from blelock.transport.scan import scan
from blelock.vendors.base import (
    Facts,
    KeptClients,
    Mode,
    OperationRequest,
    OptionValue,
    VendorContext,
    VendorPlugin,
)

__all__ = [
    "SCAN_WINDOW_S",
    "Health",
    "Job",
    "JobState",
    "LockBusy",
    "Result",
    "Runner",
    "SeenLock",
    "ServiceStopping",
    "VendorHealth",
    "result_of",
]

SCAN_WINDOW_S = 5.0
"""One scan window, after which the view is updated: fresh enough for someone walking up to a
kiosk, and restarting discovery every few seconds costs BlueZ nothing."""
CLOUD_JOB_BUDGET_S = 360.0
"""A key made for a phone: the vendor's own job may take minutes (its wait gives up at 300 s)."""
DRAIN_GRACE_S = 5.0
"""Added to the longest running job's own budget when SIGTERM drains in-flight work."""


def result_of(visit: VisitResult) -> Result:
    """A job's result: the neutral fields, then the vendor's own details."""
    return {
        "online": visit.online,
        "logs_kept": visit.logs_kept,
        "battery_mv": visit.battery_mv,
        **visit.details,
    }


class Runner:
    """Use as ``async with Runner(settings) as runner:``; leaving drains in-flight jobs."""

    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, scan_window: float = SCAN_WINDOW_S
    ) -> None:
        self.settings = settings
        self._clock = clock or SystemClock()
        self._scan_window = scan_window
        self.plugins: Mapping[str, VendorPlugin] = vendors.plugins()
        """Every registered vendor plugin, by name."""
        self._statuses = {name: VendorStatus(self._clock) for name in self.plugins}
        self.view = LiveView(self._clock, scan_window)
        self._queue = JobQueue(settings, self._clock, on_done=self._job_done)
        self._upkeep: Upkeep | None = None
        self._background: list[asyncio.Task[None]] = []
        self._accepting = False
        self._scanned = asyncio.Condition()
        self.scans_completed = 0
        self._exit = contextlib.AsyncExitStack()
        self._store: Store | None = None
        self._grants: GrantStore | None = None
        self._clients = KeptClients()
        """Cloud clients for every visit and upkeep round: made once, closed with the runner."""
        self.adapter_up: bool | None = None
        self.last_scan_at: dt.datetime | None = None

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
        self._store = await self._exit.enter_async_context(jobs.open_store(self.settings))
        await self._exit.enter_async_context(self._clients)
        self._grants = await self._exit.enter_async_context(
            access.open_grants(self.settings, self._store)
        )
        self._upkeep = Upkeep(
            self.settings,
            self._store,
            self.plugins,
            self._statuses,
            self._clock,
            self._clients,
            grants=self._grants,
        )
        self._accepting = True
        self._background = [
            asyncio.create_task(self._scan_loop(), name="blelock-scan"),
            asyncio.create_task(self._upkeep.run(), name="blelock-sync"),
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
        if timeout is None:
            budgets = [job.budget_s for job in self._queue.unfinished()]
            timeout = max(budgets, default=0.0) + DRAIN_GRACE_S
        return await self._queue.drain(timeout)

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

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the runner is not started")
        return self._store

    @property
    def grants(self) -> GrantStore:
        if self._grants is None:
            raise RuntimeError("the runner is not started")
        return self._grants

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def clients(self) -> KeptClients:
        """The cloud clients every visit and upkeep round shares (``blelock agent`` too)."""
        return self._clients

    def radio_slot(
        self, lock_id: str, operation: str
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """The lock's gate and a connection slot, for a visit that is not a job of the queue
        (a CLI command the agent socket of ``blelock serve`` runs)."""
        return self._queue.radio_slot(lock_id, operation)

    def access_context(self, plugin: VendorPlugin) -> VendorContext:
        """What a vendor's access translation is given (constraints, reconcile)."""
        return jobs.context(
            plugin, self.settings, self.store, clock=self._clock, clients=self._clients
        )

    def wake_upkeep(self) -> None:
        """A grant was asked for or revoked: reconcile soon."""
        if self._upkeep is not None:
            self._upkeep.wake()

    # --- submitting work ----------------------------------------------------------------

    def operation_names(self) -> list[str]:
        """Every operation some vendor supports, in registry order."""
        names: dict[str, None] = {}
        for plugin in self.plugins.values():
            names.update(dict.fromkeys(plugin.operations))
        return list(names)

    def resolve(
        self, lock_id: str, vendor: str | None = None, operation: str | None = None
    ) -> tuple[VendorPlugin, str]:
        """The plugin that owns ``lock_id`` and the id in its form: the vendor named, else the
        one whose lock the scan heard with that id, else the only one whose id format accepts
        it (and that has ``operation``). Several → refused, naming them."""
        if vendor is not None:
            plugin = vendors.plugin(vendor)
            return plugin, plugin.parse_lock_id(lock_id)
        parsers = jobs.candidates(lock_id)  # raises the first refusal when no format fits
        heard = self.view.owner((plugin.name, canonical) for plugin, canonical in parsers)
        if heard is not None:
            return next((p, c) for p, c in parsers if p.name == heard)
        matches = jobs.candidates(lock_id, operation)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            able = [p.name for p in self.plugins.values() if operation in p.operations]
            raise UsageError(
                f"no vendor can {operation or 'open'} a lock named {lock_id!r}",
                hint=f"{operation} is for locks of: {', '.join(able) or 'no vendor'}"
                if operation
                else "check the lock's id in /v1/locks",
            )
        names = ", ".join(plugin.name for plugin, _ in matches)
        raise UsageError(
            f"{lock_id!r} could be a lock of {names}, and none such was heard nearby",
            hint=f'say which with "vendor" ({names.replace(", ", " or ")})',
        )

    async def resolve_heard(
        self, lock_id: str, vendor: str | None = None, operation: str | None = None
    ) -> tuple[VendorPlugin, str]:
        """:meth:`resolve`, after letting the scan hear an id several vendors could own (a MAC
        is Nokē's or Nuki's) that no scan window has heard yet: up to one scan timeout, so a
        request that comes before the first window is not refused for being early."""
        if vendor is None and len(jobs.candidates(lock_id, operation)) > 1:
            ids = [(plugin.name, canonical) for plugin, canonical in jobs.candidates(lock_id)]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.timeouts.scan):
                    while self.view.owner(ids) is None:
                        await self.wait_for_scans(self.scans_completed + 1)
        return self.resolve(lock_id, vendor, operation)

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
        if not await asyncio.to_thread(_inside, folder, path):
            raise UsageError(
                f"package {name!r} points outside the firmware folder",
                hint="copy the package itself into serve_firmware_dir (no links out of it)",
            )
        return await asyncio.to_thread(read_package, path)

    def submit(
        self,
        operation: str,
        lock_id: str,
        *,
        vendor: str | None = None,
        mode: Mode = "auto",
        options: Mapping[str, OptionValue] | None = None,
        package: DfuPackage | None = None,
    ) -> Job:
        """Queue one operation on one lock and return its job at once. Refusals (stopping,
        unknown or ambiguous lock, an operation, mode or option its vendor does not have, a
        full queue) raise here and change nothing."""
        if not self._accepting:
            raise ServiceStopping("the service is stopping and takes no new operations")
        plugin, canonical = self.resolve(lock_id, vendor, operation)
        with lock_context(canonical, operation):
            request = jobs.check_request(
                plugin, OperationRequest(operation, mode, dict(options or {}), package)
            )
        spec = plugin.operations[request.operation]
        store = self.store

        async def work(job: Job) -> Result:
            ctx = jobs.context(
                plugin,
                self.settings,
                store,
                found=self.view.fresh(plugin.name, canonical),
                clock=self._clock,
                progress=job.progress,
                clients=self._clients,
                radio_done=job.release_radio,
                radio_needed=job.need_radio,
            )
            try:
                visit = await jobs.execute(ctx, canonical, request)
            except (CloudUnavailable, CloudTimeout):
                self._statuses[plugin.name].cloud_seen(reachable=False)
                raise
            # A visit that kept nothing, or uploaded what it kept itself, leaves the upkeep
            # nothing to do: a round per visit would only repeat its upload.
            job.upkeep_due = visit.logs_kept > 0 and not visit.logs_uploaded
            if visit.battery_mv is not None:
                self.view.note_battery(plugin.name, canonical, visit.battery_mv)
            if visit.online:
                self._statuses[plugin.name].cloud_seen(reachable=True)
            return result_of(visit)

        return self._queue.submit(
            canonical,
            plugin.name,
            request.operation,
            work,
            budget_s=spec.budget(self.settings),
            long_running=spec.long_running,
            slot_when_needed=spec.slot_when_needed,
        )

    def phone_key_vendor(self, vendor: str | None) -> VendorPlugin:
        """The vendor named, or the only one here that gives keys to phones."""
        offering = [plugin for plugin in self.plugins.values() if plugin.phone_keys]
        if vendor is not None:
            plugin = vendors.plugin(vendor)
            if not plugin.phone_keys:
                raise UsageError(
                    f"{plugin.title} gives no keys to phones",
                    hint=f"phone keys come from: {', '.join(p.name for p in offering) or 'none'}",
                )
            return plugin
        if len(offering) != 1:
            names = ", ".join(plugin.name for plugin in offering)
            raise UsageError(
                "no vendor here gives keys to phones"
                if not offering
                else f"several vendors give keys to phones ({names})",
                hint='say which with "vendor"' if offering else None,
            )
        return offering[0]

    def submit_cloud(
        self,
        plugin: VendorPlugin,
        lock_id: str,
        operation: str,
        call: Callable[[VendorContext], Awaitable[Facts]],
    ) -> Job:
        """Queue work that only asks the vendor's cloud (no radio, no connection slot): a
        phone's key made or taken away. Answered at once with the job to poll."""
        if not self._accepting:
            raise ServiceStopping("the service is stopping and takes no new operations")
        store = self.store

        async def work(job: Job) -> Result:
            ctx = jobs.context(
                plugin, self.settings, store, clock=self._clock, progress=job.progress
            )
            try:
                facts = await call(ctx)
            except CloudJobRunning:
                self._statuses[plugin.name].cloud_seen(reachable=True)  # it answered each poll
                raise
            except (CloudUnavailable, CloudTimeout):
                self._statuses[plugin.name].cloud_seen(reachable=False)
                raise
            self._statuses[plugin.name].cloud_seen(reachable=True)
            return dict(facts)

        return self._queue.submit(
            lock_id, plugin.name, operation, work, budget_s=CLOUD_JOB_BUDGET_S,
            long_running=True, radio=False,
        )  # fmt: skip

    def job(self, job_id: str) -> Job | None:
        return self._queue.job(job_id)

    def jobs(self) -> list[Job]:
        """Every job remembered, oldest first."""
        return self._queue.jobs()

    async def wait(self, job: Job) -> Job:
        """The job, once finished (every job has a budget, so this returns)."""
        return await self._queue.wait(job)

    def _job_done(self, job: Job) -> None:
        if self._upkeep is not None and job.upkeep_due:
            self._upkeep.wake()  # the visit may have kept records: upload soon

    @property
    def peak_connections(self) -> int:
        return self._queue.peak_connections

    # --- the live view ------------------------------------------------------------------

    def locks_in_range(self) -> list[SeenLock]:
        return self.view.in_range()

    async def wait_for_scans(self, count: int) -> None:
        """Until ``count`` scan windows have completed since start."""
        async with self._scanned:
            await self._scanned.wait_for(lambda: self.scans_completed >= count)

    async def _scan_loop(self) -> None:
        """Scan window after window for every vendor's locks; when the adapter fails
        (unplugged, powered off, BlueZ restarted), say so in health, back off, scan again."""
        backoff = Backoff()
        recognisers = list(self.plugins.values())
        while True:
            try:
                heard = await scan(self.settings, recognisers, duration=self._scan_window)
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
            self.last_scan_at = self._clock.now_utc()
            self.view.record(heard)
            async with self._scanned:
                self.scans_completed += 1
                self._scanned.notify_all()

    async def _scan_failed(self, backoff: Backoff, exc: BaseException, text: str) -> None:
        self.adapter_up = False
        delay = backoff.after(exc)
        logger.warning("scan failed", extra={"error": text, "retry_in_s": round(delay, 1)})
        await asyncio.sleep(delay)

    # --- background upkeep --------------------------------------------------------------

    @property
    def sync_rounds(self) -> int:
        """Background rounds finished, successful or not."""
        return 0 if self._upkeep is None else self._upkeep.rounds

    async def wait_for_sync_rounds(self, count: int) -> None:
        """Until ``count`` background rounds have finished since start."""
        if self._upkeep is None:
            raise RuntimeError("the runner is not started")
        await self._upkeep.wait_for_rounds(count)

    # --- reports ------------------------------------------------------------------------

    async def pending_logs(self) -> int:
        """Records waiting for upload, over every vendor's outbox stream."""
        return sum([await self.store.outbox(name).pending_count() for name in self.plugins])

    async def vendor_health(self) -> dict[str, VendorHealth]:
        report: dict[str, VendorHealth] = {}
        for name, plugin in self.plugins.items():
            status, outbox = self._statuses[name], self.store.outbox(name)
            report[name] = VendorHealth(
                active=status.active,
                cloud_reachable=status.cloud_reachable,
                cloud_checked_at=status.cloud_checked_at,
                last_sync_error=status.last_sync_error,
                outbox_depth=await outbox.pending_count(),
                set_aside=sum(batch.records for batch in await outbox.failed()),
                keys=status.keys,
                uploads_configured=plugin.uploads_configured(self.settings),
            )
        return report

    async def health(self) -> Health:
        per_vendor = await self.vendor_health()
        unfinished = self._queue.unfinished()
        upkeep = self._upkeep
        checked = [v.cloud_checked_at for v in per_vendor.values() if v.cloud_checked_at]
        return Health(
            stopping=not self._accepting,
            adapter_up=self.adapter_up,
            last_scan_at=self.last_scan_at,
            locks_in_range=len(self.locks_in_range()),
            cloud_reachable=cloud_reachable(per_vendor.values()),
            cloud_checked_at=max(checked, default=None),
            last_sync_error=None if upkeep is None else upkeep.last_sync_error,
            last_sync_at=None if upkeep is None else upkeep.last_sync_at,
            uploads_configured=any(v.uploads_configured and v.active for v in per_vendor.values()),
            outbox_depth=sum(v.outbox_depth for v in per_vendor.values()),
            set_aside=sum(v.set_aside for v in per_vendor.values()),
            keys=sum_keys(v.keys for v in per_vendor.values()),
            jobs_running=sum(1 for j in unfinished if j.state is JobState.RUNNING),
            jobs_queued=sum(1 for j in unfinished if j.state is JobState.QUEUED),
            max_connections=self.settings.max_connections,
            connections_in_use=self._queue.connections_in_use,
            peak_connections=self._queue.peak_connections,
            vendors=per_vendor,
            **await self._grant_health(),
        )

    async def _grant_health(self) -> dict[str, Any]:
        if self._grants is None:
            return {}
        try:
            counts = await self._grants.counts()
        except BlelockError as exc:
            return {"grants": None, "grants_error": exc.one_line()}
        report = None if self._upkeep is None else self._upkeep.last_reconcile
        problem = report.problems[0] if report is not None and report.problems else None
        return {"grants": counts, "grants_error": problem}


def _inside(folder: Path, path: Path) -> bool:
    """``path`` resolves (symlinks followed) to a file inside ``folder``."""
    return path.resolve(strict=True).is_relative_to(folder.resolve(strict=True))
