"""Nokē jobs composed from the plugin's context: one visit (the cloud's commands, or a cached
offline key), a firmware update (the cloud's fwupdate command, then Secure DFU), and the
offline-key sync.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from blelock.collector import long_lived_set_aside
from blelock.errors import BlelockError, lock_context
from blelock.model import MacAddress
from blelock.store import Store
from blelock.transport.ble import open_link
from blelock.transport.scan import find_update_target, sighted
from blelock.vendors.base import Mode, VendorContext
from blelock.vendors.noke.keys import CachedKey, FleetListing, KeyInfo, KeyStore, KeySyncSummary
from blelock.vendors.noke.settings import noke_settings
from blelock.vendors.noke.values import Action, ListedKeys, OfflineGrant, Outcome
from blelock.vendors.noke.visit import NokeVisit
from blelock.vendors.outbox import KeptForUpload

if TYPE_CHECKING:
    from blelock.dfu import DfuOutcome
    from blelock.protocol.dfu_package import DfuPackage
    from blelock.vendors.noke.cloud import NokeCloud

__all__ = [
    "BOOTLOADER_NAMES",
    "LazyKeyStore",
    "cloud_client",
    "key_store",
    "refresh_offline_keys",
    "update",
    "visit",
    "visit_client",
]

BOOTLOADER_NAMES = ("NOKE_FW", "N3P_FW")
"""What a Nokē lock's bootloader advertises as its name (noke.md §1.2): Nokē's apps look for it
by name, not by address."""

_log = logging.getLogger("blelock.vendors.noke")


class LazyKeyStore:
    """The offline-key cache, unlocked with the data key on first use: reading and uploading
    logs, and online unlocks, need no data key, so a lost key never strands pending records."""

    def __init__(self, store: Store, lifetime: timedelta) -> None:
        self._store = store
        self._lifetime = lifetime
        self._keys: KeyStore | None = None

    async def _unlocked(self) -> KeyStore:
        if self._keys is None:
            from blelock.clock import SystemClock

            data_key = await self._store.data_key()
            self._keys = KeyStore(
                self._store.database, data_key, SystemClock(), lifetime=self._lifetime
            )
        return self._keys

    async def usable(self, lock_id: MacAddress, tracking_key: str | None = None) -> CachedKey:
        return await (await self._unlocked()).usable(lock_id, tracking_key)

    async def apply_sync(
        self, grants: Sequence[OfflineGrant], *, scope_macs: Collection[MacAddress] | None
    ) -> KeySyncSummary:
        return await (await self._unlocked()).apply_sync(grants, scope_macs=scope_macs)

    async def apply_listed(
        self, listed: ListedKeys, *, scope_macs: Collection[MacAddress] | None
    ) -> KeySyncSummary:
        return await (await self._unlocked()).apply_listed(listed, scope_macs=scope_macs)

    async def list_keys(self) -> list[KeyInfo]:
        return await (await self._unlocked()).list_keys()

    async def locks_held(self) -> list[MacAddress]:
        return await (await self._unlocked()).locks_held()

    def fleet_listing(self) -> FleetListing:
        return FleetListing(self._store.database)

    async def revoke_unlisted(self, listing: FleetListing) -> KeySyncSummary:
        return await (await self._unlocked()).revoke_unlisted(listing)


def cloud_client(ctx: VendorContext) -> contextlib.AbstractAsyncContextManager[NokeCloud]:
    """The Core API client: the context's kept one (the kiosk keeps one for its life), else a
    new one closed on exit. ConfigError when no API key is configured. (Imported here: an
    offline visit needs no HTTP library.)"""
    from blelock.vendors.noke.cloud import NokeCloud

    return ctx.client("noke.cloud", lambda: NokeCloud.from_settings(ctx.settings))


def visit_client(ctx: VendorContext) -> contextlib.AbstractAsyncContextManager[NokeCloud]:
    """As :func:`cloud_client`, but each call tried once: a technician stands at the lock, and
    what a visit could not upload waits in the outbox for the next sync."""
    from blelock.cloud._http import AT_THE_LOCK
    from blelock.vendors.noke.cloud import NokeCloud

    return ctx.client(
        "noke.visit", lambda: NokeCloud.from_settings(ctx.settings, retry=AT_THE_LOCK)
    )


def key_store(ctx: VendorContext) -> LazyKeyStore:
    lifetime = timedelta(days=noke_settings(ctx.settings).offline_key_lifetime_days)
    return ctx.store.adapter("noke.keys", lambda store: LazyKeyStore(store, lifetime))


async def visit(
    ctx: VendorContext,
    mac: MacAddress,
    action: Action,
    *,
    tracking_key: str | None = None,
    mode: Mode = "auto",
) -> Outcome:
    """Find the lock (unless a scan just did), then run one Nokē visit; after an online one,
    upload what the outbox holds at once (one try; the next sync sends what is left)."""
    settings = ctx.settings
    # Without an API key an unattended "auto" unlock can still use the offline key.
    needs_cloud = mode == "online" or (
        mode == "auto"
        and (noke_settings(settings).api_key is not None or action is not Action.UNLOCK)
    )
    if not needs_cloud and mode == "auto":
        mode = "offline"
    async with contextlib.AsyncExitStack() as stack:
        cloud = await stack.enter_async_context(visit_client(ctx)) if needs_cloud else None
        uploads = cloud is not None and bool(noke_settings(settings).mobile_key)
        # Records that go up right after the visit are leased as they are kept: one commit.
        logs = await stack.enter_async_context(KeptForUpload(ctx.outbox)) if uploads else None
        found = await sighted(mac, settings, [ctx.plugin], ctx.sighting)
        device, name = found.device, found.sighting.name
        noke_visit = NokeVisit(
            mac,
            lambda: open_link(device, settings, name=name),
            cloud,
            settings.timeouts,
            offline_keys=key_store(ctx),
            logs=logs or ctx.outbox,
            # The link is closed before the records are kept: neither the keeping nor the
            # upload needs a connection slot.
            radio_done=ctx.radio_done,
        )
        outcome = await noke_visit.run(action, tracking_key=tracking_key, mode=mode)
        if cloud is not None and logs is not None and not outcome.offline:
            uploaded = await _upload_now(ctx, cloud, logs)
            outcome = dataclasses.replace(
                outcome, uploaded=uploaded or 0, drained=uploaded is not None
            )
        return outcome


async def _upload_now(ctx: VendorContext, cloud: NokeCloud, logs: KeptForUpload) -> int | None:
    """After an online visit, what the outbox holds goes up at once, as Nokē's libraries upload
    a session's records right after it (a lock's setup fails on the vendor's side otherwise).
    The records were kept in the outbox first, so a failure here loses nothing: it waits for
    the next sync, and the visit itself has succeeded either way (None: it failed)."""
    try:
        async with asyncio.timeout(ctx.settings.timeouts.cloud):
            return await logs.upload(cloud)
    except (BlelockError, TimeoutError) as exc:
        what = exc.one_line() if isinstance(exc, BlelockError) else "timed out"
        _log.info("the visit's records wait for the next sync: %s", what)
        return None


async def update(
    ctx: VendorContext,
    mac: MacAddress,
    package: DfuPackage,
    *,
    prn: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> DfuOutcome:
    """Both steps, from wherever the lock is now; ``on_progress`` gets the bytes confirmed."""
    from blelock.dfu import update_firmware  # not on the unlock path: a DFU driver, unused there

    settings = ctx.settings
    with lock_context(mac, "scan"):
        target = await find_update_target(
            mac, settings, ctx.plugin, bootloader_names=BOOTLOADER_NAMES
        )
    if target.lock is not None:
        # The bootloader is connected to next: the job's connection slot stays held.
        entering = dataclasses.replace(
            ctx, found=target.lock, listening=None, radio_done=lambda: None
        )
        await visit(entering, mac, Action.FIRMWARE_UPDATE, mode="online")
        with lock_context(mac, "find the bootloader"):
            target = await find_update_target(
                mac, settings, ctx.plugin, bootloader_only=True, bootloader_names=BOOTLOADER_NAMES
            )
    device = target.bootloader
    assert device is not None  # find_update_target found one or the other
    return await update_firmware(
        mac,
        lambda: open_link(device, settings, name="Nokē bootloader"),
        package,
        prn=prn,
        on_progress=None if on_progress is None else lambda p: on_progress(p.confirmed),
    )


SYNC_CHUNK_LOCKS = 2500
"""Locks per ``/keys/`` request of a sync: what is in memory at once (one chunk's answer and
grants, ~5 keys a lock) stays the same whatever the size of the fleet."""

SYNC_FETCHES_AHEAD = 2
"""Chunks whose keys are being fetched while the last fetched is stored. Two: while the cloud
builds one answer the companion reads the other, so neither side waits on the other's turn
(one ahead left each idle about half of a fleet's sync); more would only hold more answers."""


async def refresh_offline_keys(
    cloud: NokeCloud,
    keys: LazyKeyStore,
    *,
    macs: Sequence[MacAddress] | None = None,
    issue_for: Sequence[str] = (),
    default_issue: tuple[str, int] | None = None,
    chunk: int = SYNC_CHUNK_LOCKS,
) -> KeySyncSummary:
    """Fetch (issuing where asked) and store the keys of ``macs`` (None: every lock the
    company's ``/lock/`` lists), ``chunk`` locks a request, the next chunk fetched while the
    last is stored; keys the cloud no longer lists are marked revoked in the cache (with
    ``macs`` None, also those of locks the company no longer has).

    ``issue_for``: tracking keys to issue keys for on every lock synced; ``default_issue``
    (tracking key, most locks): issue for it on the first locks synced. Each chunk is stored
    in one transaction: a sync cut short keeps the chunks it finished, the rest as they were.
    """
    with (
        lock_context(macs[0] if macs and len(macs) == 1 else None, "sync offline keys"),
        long_lived_set_aside(),
    ):
        if macs is not None:
            scope = sorted(set(macs))
            listed = [scope[start : start + chunk] for start in range(0, len(scope), chunk)]
            return await _sync_chunks(cloud, keys, _each(listed), issue_for, default_issue)
        # The whole company: its listing is streamed into the store and read back from there
        # in MAC order, so memory stays flat whatever the size of the fleet. In MAC order: each
        # chunk's rows are then neighbours in the cache's primary key, so a fleet's writes
        # touch each page of it once instead of every chunk touching all of them.
        listing = keys.fleet_listing()
        try:
            await cloud.list_lock_macs(listing)
            total = await _sync_chunks(cloud, keys, listing.chunks(chunk), issue_for, default_issue)
            # Locks the company no longer lists: their keys are revoked too.
            return _plus(total, await keys.revoke_unlisted(listing))
        finally:
            await listing.drop()


async def _each(chunks: list[list[MacAddress]]) -> AsyncIterator[list[MacAddress]]:
    for locks in chunks:
        yield locks


async def _sync_chunks(
    cloud: NokeCloud,
    keys: LazyKeyStore,
    chunks: AsyncIterator[list[MacAddress]],
    issue_for: Sequence[str],
    default_issue: tuple[str, int] | None,
) -> KeySyncSummary:
    """Fetch and store the keys of each chunk, up to :data:`SYNC_FETCHES_AHEAD` chunks fetched
    while the last is stored; each chunk is one transaction, stored in the order listed."""
    tracking, left = default_issue or ("", 0)

    async def fetch(locks: list[MacAddress]) -> ListedKeys:
        nonlocal left
        # Taken before the first await: fetches run side by side, and the first locks listed
        # are the ones the default key is issued for.
        first, left = locks[:left], max(0, left - len(locks))
        if issue_for:
            await cloud.issue_offline_keys(locks, issue_for)
        if first:
            await cloud.issue_offline_keys(first, [tracking])
        return await cloud.listed_offline_keys(locks)

    total = KeySyncSummary(0, 0, 0, 0)
    ahead: collections.deque[tuple[list[MacAddress], asyncio.Task[ListedKeys]]] = (
        collections.deque()
    )

    async def fill() -> None:
        while len(ahead) < SYNC_FETCHES_AHEAD:
            locks = await anext(chunks, None)
            if locks is None:
                return
            ahead.append((locks, asyncio.create_task(fetch(locks))))

    try:
        await fill()
        while ahead:
            locks, fetched = ahead.popleft()
            listed = await fetched
            await fill()
            total = _plus(total, await keys.apply_listed(listed, scope_macs=locks))
    finally:
        # A sync cut short: the fetches still under way are stopped and waited for; their
        # outcomes (a second failure, say) must not replace the one that cut it short.
        for _locks, fetched in ahead:
            fetched.cancel()
        await asyncio.gather(*(fetched for _locks, fetched in ahead), return_exceptions=True)
    return total


def _plus(a: KeySyncSummary, b: KeySyncSummary) -> KeySyncSummary:
    return KeySyncSummary(
        a.added + b.added,
        a.refreshed + b.refreshed,
        a.revoked + b.revoked,
        a.unchanged + b.unchanged,
    )
