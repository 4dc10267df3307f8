"""Fixtures for the store: a fake clock, a fresh store directory, an opened database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_fakes import FakeClock

from blelock.store.crypto import DataKey
from blelock.store.db import Database
from blelock.vendors.noke.schema import MIGRATIONS as NOKE_MIGRATIONS


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture
async def db(store_dir: Path) -> AsyncIterator[Database]:
    # With the Nokē plugin's tables: the offline-key cache tested here lives in them.
    database = await Database.open(store_dir / "blelock.db", {"noke": NOKE_MIGRATIONS})
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def data_key(db: Database, key_dir: Path) -> DataKey:
    return await db.unlock(key_dir, {})
