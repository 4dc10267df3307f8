"""What several commands share: settings from the command line, and the opened local store."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from blelock.clock import SystemClock
from blelock.config import Settings, load_settings
from blelock.model import MacAddress, OfflineGrant
from blelock.store.db import Database
from blelock.store.keys import CachedKey, KeyInfo, KeyStore, KeySyncSummary
from blelock.store.outbox import Outbox

DATABASE_FILE = "blelock.db"


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {"BLELOCK_DATA_DIR": args.data_dir} if getattr(args, "data_dir", None) else {}
    return load_settings(Path(args.config) if args.config else None, os.environ | overrides)


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


@dataclass(frozen=True, slots=True)
class Store:
    keys: LazyKeyStore
    outbox: Outbox


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:

    database = await Database.open(settings.store_dir / DATABASE_FILE)
    try:
        yield Store(keys=LazyKeyStore(database, settings), outbox=Outbox(database))
    finally:
        await database.close()


__all__ = ["LazyKeyStore", "Store", "open_store", "settings_from"]
