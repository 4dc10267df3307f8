"""Grant stores for the access tests: the local SQLite store of each test."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator

import pytest

from blelock.access import open_grants
from blelock.access.store import GrantStore
from blelock.config import Settings, load_settings
from blelock.store import open_store
from tests.access._fake import FakeAccess, FakeCloud, FakePlugin, SteppedClock

MONDAY = dt.datetime(2026, 3, 23, 6, 0, tzinfo=dt.UTC)
"""A Monday, the week before Europe's spring-forward (2026-03-29)."""


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        environ={
            "BLELOCK_DATA_DIR": os.environ["BLELOCK_DATA_DIR"],
            "BLELOCK_KEY_DIR": os.environ["BLELOCK_KEY_DIR"],
            "BLELOCK_ACCESS_TIMEZONE": "Europe/Oslo",
        },
        read_file=False,
    )


@pytest.fixture
async def grants(settings: Settings) -> AsyncIterator[GrantStore]:
    async with open_store(settings) as store, open_grants(settings, store) as opened:
        yield opened


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud()


@pytest.fixture
def fake(cloud: FakeCloud) -> FakePlugin:
    return FakePlugin(FakeAccess(cloud))


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock(MONDAY)
