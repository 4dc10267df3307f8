"""The companion's jobs, composed from Settings: open the local store, visit a Nokē lock,
update a lock's firmware. The CLI and the kiosk service both run these; neither re-assembles
a visit from its parts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import timedelta

from blelock.clock import SystemClock
from blelock.cloud.noke import NokeCloud
from blelock.config import Settings
from blelock.dfu import DfuOutcome, update_firmware
from blelock.errors import lock_context
from blelock.model import Action, MacAddress, OfflineGrant, Outcome
from blelock.protocol.dfu_package import DfuPackage
from blelock.store.db import Database
from blelock.store.keyless import KeylessStore
from blelock.store.keys import CachedKey, KeyInfo, KeyStore, KeySyncSummary
from blelock.store.outbox import VISIT_RECORDS, Outbox
from blelock.transport.ble import open_link
from blelock.transport.scan import Found, find_lock, find_update_target
from blelock.vendors.noke import NokeVisit, VisitMode

__all__ = ["DATABASE_FILE", "KEYLESS", "LazyKeyStore", "Store", "open_store", "update", "visit"]

DATABASE_FILE = "blelock.db"
KEYLESS = "keyless"
"""The Keyless outbox's vendor name."""


class LazyKeyStore:
    """The offline-key cache, unlocked with the data key on first use: reading and uploading
    logs, and online unlocks, need no data key, so a lost key never strands pending records."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        self._keys: KeyStore | None = None

    async def _unlocked(self) -> KeyStore:

        if self._keys is None:
            data_key = await self._database.unlock(self._settings.data_key_dir, os.environ)
            lifetime = timedelta(days=self._settings.offline_key_lifetime_days)
            self._keys = KeyStore(self._database, data_key, SystemClock(), lifetime=lifetime)
        return self._keys

    async def usable(self, lock_id: MacAddress, tracking_key: str | None = None) -> CachedKey:
        return await (await self._unlocked()).usable(lock_id, tracking_key)

    async def apply_sync(
        self, grants: Sequence[OfflineGrant], *, scope_macs: Collection[MacAddress] | None
    ) -> KeySyncSummary:
        return await (await self._unlocked()).apply_sync(grants, scope_macs=scope_macs)

    async def list_keys(self) -> list[KeyInfo]:
        return await (await self._unlocked()).list_keys()


class Store:
    """The opened local store: each vendor's outbox, and key stores unlocked on first use."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.keys = LazyKeyStore(database, settings)
        self.outbox = Outbox(database)
        self.keyless_outbox = Outbox(database, KEYLESS)
        self._settings = settings
        self._keyless: KeylessStore | None = None

    async def keyless(self) -> KeylessStore:
        """The Keyless device identity, keys and certificates (needs the data key)."""
        if self._keyless is None:
            data_key = await self.database.unlock(self._settings.data_key_dir, os.environ)
            self._keyless = KeylessStore(self.database, data_key, SystemClock())
        return self._keyless


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:

    database = await Database.open(settings.store_dir / DATABASE_FILE)
    try:
        yield Store(database, settings)
    finally:
        await database.close()


async def visit(
    mac: MacAddress,
    action: Action,
    settings: Settings,
    *,
    tracking_key: str | None = None,
    found: Found | None = None,
    mode: VisitMode = "auto",
) -> Outcome:
    """Find the lock (unless a scan just did), then run one Nokē visit."""

    # Without an API key an unattended "auto" unlock can still use the offline key.
    needs_cloud = mode == "online" or (
        mode == "auto" and (settings.noke_api_key is not None or action is not Action.UNLOCK)
    )
    cloud = NokeCloud.from_settings(settings) if needs_cloud else None
    if cloud is None and mode == "auto":
        mode = "offline"
    try:
        async with open_store(settings) as store:
            await store.outbox.reserve(VISIT_RECORDS, lock_id=mac)  # before the lock is touched
            if found is None:
                with lock_context(mac, "scan"):
                    found = await find_lock(mac, settings)
            device, name = found.device, found.sighting.name
            noke_visit = NokeVisit(
                mac,
                lambda: open_link(device, settings, name=name),
                cloud,
                settings.timeouts,
                offline_keys=store.keys,
                logs=store.outbox,
            )
            return await noke_visit.run(action, tracking_key=tracking_key, mode=mode)
    finally:
        if cloud is not None:
            await cloud.aclose()


async def update(
    mac: MacAddress,
    package: DfuPackage,
    settings: Settings,
    *,
    prn: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> DfuOutcome:
    """Both steps, from wherever the lock is now; ``on_progress`` gets the bytes confirmed."""

    with lock_context(mac, "scan"):
        target = await find_update_target(mac, settings)
    if target.lock is not None:
        await visit(mac, Action.FIRMWARE_UPDATE, settings, found=target.lock, mode="online")
        with lock_context(mac, "find the bootloader"):
            target = await find_update_target(mac, settings, bootloader_only=True)
    device = target.bootloader
    assert device is not None  # find_update_target found one or the other
    return await update_firmware(
        mac,
        lambda: open_link(device, settings, name="Nokē bootloader"),
        package,
        prn=prn,
        on_progress=None if on_progress is None else lambda p: on_progress(p.confirmed),
    )
