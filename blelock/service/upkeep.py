"""The kiosk's background upkeep, round after round over every vendor plugin set up here:
refresh the keys due within the horizon, upload what its outbox stream keeps, report its keys.

After a failed round it backs off (ARCHITECTURE (d)); a visit's end wakes it early, unless it
is backing off (the cloud is still down).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import uuid
from collections.abc import Mapping

from blelock import access, jobs, sync
from blelock.access.reconcile import ReconcileReport
from blelock.access.store import GrantStore
from blelock.clock import Clock
from blelock.config import Settings
from blelock.errors import (
    AuthFailed,
    BlelockError,
    CloudTimeout,
    CloudUnavailable,
    ConfigError,
    RateLimited,
    StoreError,
)
from blelock.model import KeyHealth
from blelock.service.health import VendorStatus
from blelock.service.logs import log_context, logger
from blelock.store import Store
from blelock.vendors.base import KeptClients, VendorContext, VendorPlugin

__all__ = ["BACKOFF_MAX_S", "BACKOFF_MIN_S", "SYNC_ROUND_BUDGET_S", "Backoff", "Upkeep"]

SYNC_ROUND_BUDGET_S = 15 * 60.0
"""One vendor's share of a round (key refresh + a full drain): the HTTP calls carry their own
timeouts; this only bounds a drain of a very long outbox over a very slow link."""
BACKOFF_MIN_S = 2.0
"""First retry after a failed background round: long enough to ride out a blip."""
BACKOFF_MAX_S = 600.0
"""Ten minutes: a kiosk offline for a day still retries often enough to catch the network."""


class Backoff:
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


def _text(exc: BaseException) -> str:
    if isinstance(exc, BlelockError):
        return exc.one_line()
    if isinstance(exc, TimeoutError):
        return "the round timed out"
    return f"internal error ({type(exc).__name__})"


class Upkeep:
    """The background loop; ``statuses`` (vendor → what it learnt) is shared with health."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        plugins: Mapping[str, VendorPlugin],
        statuses: Mapping[str, VendorStatus],
        clock: Clock,
        clients: KeptClients | None = None,
        grants: GrantStore | None = None,
    ) -> None:
        self._grants = grants
        self._owner = f"kiosk-{uuid.uuid4().hex[:12]}"
        self.last_reconcile: ReconcileReport | None = None
        """What the last round's grant reconcile did (None before one ran)."""
        self._settings = settings
        self._store = store
        self._clients = clients
        self._plugins = plugins
        self._statuses = statuses
        self._clock = clock
        self._wake = asyncio.Event()
        self._finished = asyncio.Condition()
        self.rounds = 0
        """Rounds finished, successful or not."""
        self.last_sync_at: dt.datetime | None = None
        self.last_sync_error: str | None = None

    def wake(self) -> None:
        """Run the next round now (a visit may have kept records), unless backing off."""
        self._wake.set()

    async def wait_for_rounds(self, count: int) -> None:
        async with self._finished:
            await self._finished.wait_for(lambda: self.rounds >= count)

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            self._wake.clear()
            delay = await self._guarded_round(backoff)
            async with self._finished:
                self.rounds += 1
                self.last_sync_at = self._clock.now_utc()
                self._finished.notify_all()
            if delay is not None:
                await asyncio.sleep(delay)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.sync_interval):
                    await self._wake.wait()

    async def _guarded_round(self, backoff: Backoff) -> float | None:
        """One round; None when it went through, else how long to back off."""
        try:
            await self.round()
        except Exception as exc:
            delay = backoff.after(exc)
            text = _text(exc)
            self.last_sync_error = text
            if isinstance(exc, BlelockError | TimeoutError):
                logger.warning(
                    "background sync failed", extra={"error": text, "retry_in_s": round(delay, 1)}
                )
            else:
                logger.error(
                    "background sync failed unexpectedly",
                    extra={"error": text, "retry_in_s": round(delay, 1)},
                )
            return delay
        backoff.reset()
        return None

    async def round(self) -> None:
        """Each vendor's upkeep in turn; one vendor failing does not stop the others (the first
        failure is raised after all had their turn, for the backoff)."""
        contacted = False
        failure: BaseException | None = None
        for name, plugin in self._plugins.items():
            status = self._statuses[name]
            ctx = jobs.context(
                plugin, self._settings, self._store, clock=self._clock, clients=self._clients
            )
            with log_context(vendor=name):
                try:
                    async with asyncio.timeout(SYNC_ROUND_BUDGET_S):
                        contacted = await self._vendor_round(ctx, status) or contacted
                except Exception as exc:
                    if not isinstance(exc, BlelockError | TimeoutError):
                        logger.exception("vendor upkeep failed unexpectedly")
                    status.last_sync_error = _text(exc)
                    if isinstance(exc, CloudUnavailable | CloudTimeout | TimeoutError):
                        status.cloud_seen(reachable=False)
                    failure = failure or exc
        if self._grants is not None:
            try:
                await self._reconcile(self._grants)
            except Exception as exc:
                if not isinstance(exc, BlelockError | TimeoutError):
                    logger.exception("grant reconcile failed unexpectedly")
                failure = failure or exc
        if contacted and failure is None:
            self.last_sync_error = None
        if failure is not None:
            raise failure

    async def _reconcile(self, grants: GrantStore) -> None:
        """Drive the vendors to the grants that are due (the same reconciler `blelock sync`
        runs; several kiosks sharing a grant database take turns by leases)."""
        with log_context(step="grants"):
            async with asyncio.timeout(SYNC_ROUND_BUDGET_S):
                report = await access.reconcile(
                    grants,
                    lambda plugin: jobs.context(plugin, self._settings, self._store,
                                                clock=self._clock, clients=self._clients),
                    self._settings,
                    self._clock,
                    owner=self._owner,
                )  # fmt: skip
            self.last_reconcile = report
            if report.changed or report.problems:
                logger.info(
                    "reconciled grants",
                    extra={
                        "grants": report.grants,
                        "applied": report.applied + report.found,
                        "removed": report.removed,
                        "problems": len(report.problems),
                    },
                )

    async def _vendor_round(self, ctx: VendorContext, status: VendorStatus) -> bool:
        """Whether the vendor's cloud was called (and answered)."""
        plugin = ctx.plugin
        status.active = await plugin.active(ctx)
        if not status.active:
            status.keys = None
            return False
        horizon = dt.timedelta(hours=self._settings.key_refresh_horizon_hours)
        contacted = False
        try:
            try:
                contacted = await plugin.refresh_keys(ctx, horizon)
            except StoreError as exc:
                # The store's data key cannot be opened: reported as the keys' trouble (below),
                # and the records waiting go up all the same (uploading needs no data key).
                logger.warning("key refresh failed", extra={"error": exc.one_line()})
            else:
                if contacted:
                    logger.info("refreshed offline keys")
            if await ctx.outbox.pending_count() and plugin.uploads_configured(self._settings):
                uploaded = await sync.upload(ctx)
                logger.info("uploaded lock logs", extra={"records": uploaded})
                contacted = True
        finally:
            status.keys = await self._key_health(ctx)
        if contacted:
            status.cloud_seen(reachable=True)
            status.last_sync_error = None
        return contacted

    async def _key_health(self, ctx: VendorContext) -> KeyHealth:
        horizon = dt.timedelta(hours=self._settings.key_refresh_horizon_hours)
        try:
            keys = await ctx.plugin.list_keys(ctx)
        except BlelockError as exc:
            return KeyHealth(0, 0, 0, 0, None, exc.one_line())
        return sync.key_health(keys, self._clock.now_utc(), horizon)
