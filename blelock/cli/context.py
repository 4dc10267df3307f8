"""What several commands share: settings from the command line, and the opened local store."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from blelock.config import Settings, load_settings

if TYPE_CHECKING:  # the store (sqlite3, cryptography) loads only for commands that use it
    from blelock.store.keys import KeyStore
    from blelock.store.outbox import Outbox

DATABASE_FILE = "blelock.db"


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {"BLELOCK_DATA_DIR": args.data_dir} if getattr(args, "data_dir", None) else {}
    return load_settings(Path(args.config) if args.config else None, os.environ | overrides)


@dataclass(frozen=True, slots=True)
class Store:
    keys: KeyStore
    outbox: Outbox


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    from blelock.clock import SystemClock
    from blelock.store.db import Database
    from blelock.store.keys import KeyStore
    from blelock.store.outbox import Outbox

    database = await Database.open(settings.store_dir / DATABASE_FILE)
    try:
        data_key = await database.unlock(settings.data_key_dir, os.environ)
        keys = KeyStore(
            database,
            data_key,
            SystemClock(),
            lifetime=timedelta(days=settings.offline_key_lifetime_days),
        )
        yield Store(keys=keys, outbox=Outbox(database))
    finally:
        await database.close()


__all__ = ["Store", "open_store", "settings_from"]
