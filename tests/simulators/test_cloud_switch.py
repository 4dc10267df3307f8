"""Issue 17 item 7: each simulated cloud has a runtime switch (down, slow, back) that keeps its
state, and a fault that loses the cloud's answer after it stored an upload."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from blelock.cloud._http import RetryPolicy
from blelock.errors import CloudUnavailable
from blelock.model import LogRecord
from blelock.store.db import Database
from blelock.store.outbox import Outbox
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.outbox import drain_outbox
from simulators.world import RunningWorld, WorldSpec, build_world, world_state
from tests.conftest import FAST

ONCE = RetryPolicy(attempts=1, base_s=0.001, cap_s=0.001)


@pytest.fixture
def world_spec() -> WorldSpec:
    return WorldSpec(locks=2, keyless_locks=1, seed=23, latency=FAST)


def _cloud(running: RunningWorld) -> NokeCloud:
    world = running.world
    return NokeCloud(
        running.cloud_url, world.cloud.api_key, mobile_key=world.cloud.mobile_key, retry=ONCE
    )


def _records(running: RunningWorld, count: int) -> list[LogRecord]:
    mac = running.world.locks[0].mac
    return [LogRecord(mac, "ab" * 20, 1_790_000_000 + n, f"{n:02x}" * 20) for n in range(count)]


async def _flip(url: str, **wanted: object) -> dict[str, object]:
    async with httpx.AsyncClient() as client:
        answer = await client.post(url + "_sim/cloud", json=wanted)
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


async def test_a_cloud_switched_down_and_back_keeps_its_state(
    running_world: RunningWorld, tmp_path: Path
) -> None:
    async with await Database.open(tmp_path / "blelock.db") as db:
        outbox = Outbox(db, "noke")
        await outbox.append(_records(running_world, 2))
        async with _cloud(running_world) as cloud:
            assert await drain_outbox(cloud, outbox) == 2
        assert running_world.world.cloud.records_received == 2

        assert (await _flip(running_world.cloud_url, mode="down"))["mode"] == "down"
        await outbox.append(_records(running_world, 4)[2:])
        async with _cloud(running_world) as cloud:
            with pytest.raises(CloudUnavailable):
                await drain_outbox(cloud, outbox)
        assert await outbox.pending_count() == 2  # kept for later
        assert running_world.switches["noke"].state.dropped >= 1
        # The Keyless cloud has its own switch: still up while Nokē's is down.
        assert running_world.keyless_url is not None
        async with httpx.AsyncClient() as client:
            state = (await client.get(running_world.keyless_url + "_sim/cloud")).json()
        assert state["mode"] == "up" and state["cloud"] == "keyless"

        await _flip(running_world.cloud_url, mode="slow", delay_s=0.01)
        await _flip(running_world.cloud_url, mode="up")
        async with _cloud(running_world) as cloud:
            assert await drain_outbox(cloud, outbox) == 2
        # Nothing the cloud held before the outage was forgotten.
        state = world_state(running_world.world)
        assert running_world.world.cloud.records_received == 4 and len(state["uploaded"]) == 4


async def test_a_lost_answer_after_the_cloud_stored_the_upload_is_replayed_once(
    running_world: RunningWorld, tmp_path: Path
) -> None:
    cloud_state = running_world.world.cloud
    async with await Database.open(tmp_path / "blelock.db") as db:
        outbox = Outbox(db, "noke")
        await outbox.append(_records(running_world, 3))
        await _flip(running_world.cloud_url, lose_answers=1)
        async with _cloud(running_world) as cloud:
            with pytest.raises(CloudUnavailable):
                await drain_outbox(cloud, outbox)  # stored there; the answer never came
        assert cloud_state.records_received == 3 and await outbox.pending_count() == 3
        assert running_world.switches["noke"].state.answers_lost == 1
        async with _cloud(running_world) as cloud:  # the retry, with the same key
            assert await drain_outbox(cloud, outbox) == 3
        assert await outbox.pending_count() == 0
    assert cloud_state.uploads_replayed == 1  # recognised as the same upload
    assert cloud_state.records_received == 3 and cloud_state.records_duplicate == 0
    assert len(cloud_state.uploaded) == 3  # uploaded once


async def test_the_switch_refuses_what_it_does_not_know(running_world: RunningWorld) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(running_world.cloud_url + "_sim/cloud", json={"mode": "off"})
    assert answer.status_code == 400 and "mode 'off'" in answer.json()["error"]


def test_the_same_seed_gives_the_same_world() -> None:
    """Lock ids, MACs and keys come from the seed. What cannot be the same: the ports (free
    ones, picked at start), the clouds' API keys (fresh secrets each run) and the cloud's
    state, which lives in the process (a restart starts with an empty cloud)."""
    spec = WorldSpec(locks=3, keyless_locks=2, seed=99)
    first, second = build_world(spec), build_world(spec)
    assert [(lock.mac, lock.key) for lock in first.locks] == [
        (lock.mac, lock.key) for lock in second.locks
    ]
    assert first.keyless is not None and second.keyless is not None
    assert [(lock.mac, lock.locking_device_id) for lock in first.keyless.locks] == [
        (lock.mac, lock.locking_device_id) for lock in second.keyless.locks
    ]
    assert [lock.lock_key_id for lock in first.keyless.locks] == [
        lock.lock_key_id for lock in second.keyless.locks
    ]
