"""A cloud that answers but cannot give commands (500, 429, garbage) is as good as unreachable:
an unlock falls back to the cached offline key; without one, the hint names `--offline`."""

from __future__ import annotations

import pytest

from blelock.config import Settings
from blelock.errors import CloudRejected, OfflineKeyMissing
from blelock.jobs import context, open_store, run_operation
from blelock.model import MacAddress, VisitResult, parse_mac
from blelock.vendors.base import Mode, OperationRequest
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.jobs import key_store, refresh_offline_keys
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from simulators.world import RunningWorld
from tests.conftest import settings_for


async def visit(
    mac: MacAddress, operation: str, settings: Settings, *, mode: Mode = "auto"
) -> VisitResult:
    """An unlock as `blelock unlock` runs it (room for its records is made first)."""
    return await run_operation(settings, mac, OperationRequest(operation, mode), vendor="noke")


FAULTS = ["fail_with_500", "rate_limit", "garbage_json"]


async def _sync(running: RunningWorld) -> None:
    settings = settings_for(running)
    mac = parse_mac(running.world.locks[0].mac)
    async with open_store(settings) as store, NokeCloud.from_settings(settings) as cloud:
        await refresh_offline_keys(
            cloud, key_store(context(NOKE, settings, store)), macs=[mac], issue_for=["tech-7"]
        )


@pytest.mark.parametrize("fault", FAULTS)
async def test_an_unlock_falls_back_to_the_offline_key(
    running_world: RunningWorld, fault: str
) -> None:
    await _sync(running_world)
    cloud = running_world.world.cloud
    cloud.faults.retry_after_s = 0
    setattr(cloud.faults, fault, -1)
    lock = running_world.world.locks[0]
    outcome = await visit(parse_mac(lock.mac), "unlock", settings_for(running_world))
    assert not outcome.online and cloud.faulted[fault] >= 1
    assert (lock.offline_unlocks, lock.unlocks) == (1, 0)


@pytest.mark.parametrize("fault", FAULTS)
async def test_online_only_says_offline_would_do(running_world: RunningWorld, fault: str) -> None:
    await _sync(running_world)
    cloud = running_world.world.cloud
    cloud.faults.retry_after_s = 0
    setattr(cloud.faults, fault, -1)
    lock = running_world.world.locks[0]
    with pytest.raises(CloudRejected) as caught:
        await visit(parse_mac(lock.mac), "unlock", settings_for(running_world), mode="online")
    assert "--offline" in caught.value.one_line()
    assert lock.offline_unlocks + lock.unlocks == 0


async def test_without_an_offline_key_the_error_says_why(running_world: RunningWorld) -> None:
    running_world.world.cloud.faults.fail_with_500 = -1
    lock = running_world.world.locks[0]
    with pytest.raises(OfflineKeyMissing, match="could not give commands"):
        await visit(parse_mac(lock.mac), "unlock", settings_for(running_world))
    assert lock.offline_unlocks + lock.unlocks == 0
