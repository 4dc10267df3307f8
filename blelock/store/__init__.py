"""The local store: one SQLite file holding each vendor's outbox stream, sealed secrets and the
tables vendor plugins bring.

``db`` opens and migrates the file and runs queries in its writer thread; ``crypto`` seals
secrets under the data key; ``outbox`` keeps what the locks gave until their cloud has it.
:class:`Store` is the opened whole that a command or the kiosk holds. Nothing here knows about
Bluetooth, HTTP or any vendor.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from blelock.store.db import Database
from blelock.store.outbox import Outbox

if TYPE_CHECKING:
    from blelock.config import Settings
    from blelock.store.crypto import DataKey

__all__ = ["DATABASE_FILE", "Store", "open_store"]

DATABASE_FILE = "blelock.db"
T = TypeVar("T")


class Store:
    """The opened store: an outbox stream per vendor, the data key unlocked on first use (reading
    and uploading logs need none, so a lost key never strands pending records), and whatever
    adapter a plugin keeps over the database (made once per opened store)."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self._settings = settings
        self._outboxes: dict[str, Outbox] = {}
        self._data_key: DataKey | None = None
        self._adapters: dict[str, Any] = {}

    def outbox(self, vendor: str) -> Outbox:
        if vendor not in self._outboxes:
            self._outboxes[vendor] = Outbox(self.database, vendor)
        return self._outboxes[vendor]

    async def data_key(self) -> DataKey:
        if self._data_key is None:
            self._data_key = await self.database.unlock(self._settings.data_key_dir, os.environ)
        return self._data_key

    def adapter(self, name: str, make: Callable[[Store], T]) -> T:
        """The plugin's object kept for this store under ``name`` (made on first use)."""
        if name not in self._adapters:
            self._adapters[name] = make(self)
        made: T = self._adapters[name]
        return made


@contextlib.asynccontextmanager
async def open_store(
    settings: Settings, migrations: Mapping[str, Sequence[str]] | None = None
) -> AsyncIterator[Store]:
    """The store in the settings' data dir; ``migrations``: each plugin's schema scripts."""
    database = await Database.open(settings.store_dir / DATABASE_FILE, migrations)
    try:
        yield Store(database, settings)
    finally:
        await database.close()
