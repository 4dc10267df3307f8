"""Nuki locks in the kiosk: listed in /v1/locks, opened through the open routes the plugin's
operations give (nothing in the service names Nuki)."""

from __future__ import annotations

import asyncio

import pytest

from blelock.jobs import open_store
from blelock.model import parse_mac
from blelock.vendors.nuki import jobs
from simulators.world import WorldSpec
from tests.conftest import FAST
from tests.service.test_api import (
    AUTH,
    HANG_GUARD_S,
    kiosk,
    listed_once_heard,
    service_settings,
)


async def test_nuki_in_the_kiosk(monkeypatch: pytest.MonkeyPatch) -> None:
    async with kiosk(WorldSpec(locks=1, seed=5, latency=FAST, nuki_locks=1), monkeypatch) as k:
        nuki = k.running.world.nuki
        assert nuki is not None
        lock = nuki.locks[0]
        settings = service_settings(k.running)
        async with open_store(settings) as store:
            await jobs.pair(parse_mac(lock.mac), settings, store)
        async with asyncio.timeout(HANG_GUARD_S):
            # Pairing held the lock connected (not advertising) through the first windows.
            listed = await listed_once_heard(k, [lock.mac])
        (entry,) = [e for e in listed if e["vendor"] == "nuki"]
        assert entry["lock_id"] == lock.mac
        unlocked = await k.client.post(f"/v1/locks/{lock.mac}/unlock", json={}, headers=AUTH)
        assert unlocked.status_code == 200, unlocked.text
        assert unlocked.json()["state"] == "done"
        locked = await k.client.post(
            f"/v1/locks/{lock.mac}/lock", json={"vendor": "nuki"}, headers=AUTH
        )
        assert locked.status_code == 200, locked.text
        assert lock.lock_actions == 2 and lock.lock_state.name == "LOCKED"
