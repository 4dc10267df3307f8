"""Whole Nokē visits over the simulated world: bleak + sim radio, the cloud over real HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from blelock.config import Settings, load_settings
from blelock.errors import (
    AuthFailed,
    CloudRejected,
    CloudUnavailable,
    ConfigError,
    DeviceNotFound,
    LinkError,
    LinkLost,
    LockRefused,
    OfflineKeyMissing,
)
from blelock.jobs import context, open_store
from blelock.model import MacAddress, parse_mac
from blelock.transport.ble import open_link
from blelock.transport.scan import find_lock, scan
from blelock.vendors.base import Mode
from blelock.vendors.noke import jobs
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from blelock.vendors.noke.settings import noke_settings
from blelock.vendors.noke.values import Action, Outcome
from blelock.vendors.noke.visit import NokeVisit
from simulators.faults import LinkFaults
from simulators.noke_lock import MechanicalFaults
from simulators.world import RunningWorld, WorldSpec
from tests.conftest import closed_port_url, settings_environment, settings_for


def mac_of(running: RunningWorld, index: int) -> MacAddress:
    return parse_mac(running.world.locks[index].mac)


async def visit(
    mac: MacAddress, action: Action, settings: Settings, *, mode: Mode = "auto"
) -> Outcome:
    """One Nokē visit with the store open, as a command runs it."""
    async with open_store(settings) as store:
        return await jobs.visit(context(NOKE, settings, store), mac, action, mode=mode)


async def test_scan_finds_every_lock_with_its_hardware(running_world: RunningWorld) -> None:
    found = await scan(settings_for(running_world), [NOKE], duration=2, expect=3)
    seen = {f.sighting.lock_id: f.sighting.hardware for f in found}
    assert seen == {lock.mac: lock.hardware for lock in running_world.world.locks}


async def test_unlock_opens_and_keeps_every_record(running_world: RunningWorld) -> None:
    lock = running_world.world.locks[0]
    outcome = await visit(mac_of(running_world, 0), Action.UNLOCK, settings_for(running_world))
    assert outcome.attempts == 1 and not outcome.offline
    assert outcome.battery_mv == lock.battery_mv
    assert (lock.setups, lock.unlocks) == (1, 1)  # a new lock is set up by its first unlock
    assert outcome.packets_sent == 2
    assert [(r.context, r.payload) for r in outcome.logs] == lock.server_records
    assert not lock.refusals


async def test_unshackle_an_hd_padlock(running_world: RunningWorld) -> None:
    lock = running_world.world.locks[0]
    assert lock.hardware == "4I"
    outcome = await visit(mac_of(running_world, 0), Action.UNSHACKLE, settings_for(running_world))
    assert outcome.action is Action.UNSHACKLE
    assert (lock.unshackles, lock.unlocks) == (1, 0)


async def test_unshackle_a_standard_padlock_is_refused_clearly(
    running_world: RunningWorld,
) -> None:
    lock = running_world.world.locks[1]
    assert lock.hardware == "3P"
    with pytest.raises(LockRefused) as caught:
        await visit(mac_of(running_world, 1), Action.UNSHACKLE, settings_for(running_world))
    error = caught.value
    assert error.reason is noke.ResultCode.INVALID_COMMAND
    assert (error.lock_id, error.step) == (lock.mac, "send commands")
    assert "packet 2 of 2" in error.message and error.hint and "HD padlock" in error.hint
    assert lock.unshackles == 0


@pytest.fixture
def world_spec() -> WorldSpec:
    from tests.conftest import FAST

    return WorldSpec(
        locks=4,
        seed=11,
        latency=FAST,
        link_faults={
            2: LinkFaults(drop_link_after_writes=1, drop_link_times=1),
            3: LinkFaults(drop_link_after_writes=1, drop_link_times=-1),
        },
        mechanical_faults={1: MechanicalFaults(jam_unlock=1)},
    )


async def test_link_dropped_mid_command_retries_once_with_a_fresh_session(
    running_world: RunningWorld,
) -> None:
    lock = running_world.world.locks[2]
    outcome = await visit(mac_of(running_world, 2), Action.UNLOCK, settings_for(running_world))
    assert outcome.attempts == 2
    assert lock.connections == 2
    assert not lock.refusals  # the retry never wrote the first session's commands again
    assert lock.unlocks == 1


async def test_link_that_keeps_dropping_gives_up_after_one_retry(
    running_world: RunningWorld,
) -> None:
    lock = running_world.world.locks[3]
    with pytest.raises(LinkLost) as caught:
        await visit(mac_of(running_world, 3), Action.UNLOCK, settings_for(running_world))
    assert caught.value.lock_id == lock.mac and caught.value.step == "send commands"
    assert lock.connections == 2 and lock.unlocks == 0


async def test_jammed_mechanism_is_a_refusal_with_a_hint(running_world: RunningWorld) -> None:
    with pytest.raises(LockRefused) as caught:
        await visit(mac_of(running_world, 1), Action.UNLOCK, settings_for(running_world))
    assert caught.value.reason is noke.ResultCode.FAILED_TO_UNLOCK
    assert caught.value.hint and "shackle" in caught.value.hint


async def test_unknown_lock_is_not_found_in_range(running_world: RunningWorld) -> None:
    settings = settings_for(running_world, BLELOCK_SCAN_TIMEOUT="0.3")
    with pytest.raises(DeviceNotFound) as caught:
        await visit(parse_mac("00:11:22:33:44:55"), Action.UNLOCK, settings)
    assert caught.value.step == "scan" and "0.3 s" in caught.value.message


async def test_out_of_range_lock_is_not_found(running_world: RunningWorld) -> None:
    running_world.world.radio.faults_of(running_world.world.locks[0].mac).out_of_range = True
    settings = settings_for(running_world, BLELOCK_SCAN_TIMEOUT="0.3")
    with pytest.raises(DeviceNotFound):
        await find_lock(mac_of(running_world, 0), settings, [NOKE])


async def test_refused_connections_give_a_link_error(running_world: RunningWorld) -> None:
    running_world.world.radio.faults_of(running_world.world.locks[0].mac).refuse_connections = -1
    settings = settings_for(running_world)
    with pytest.raises(LinkError) as caught:
        await visit(mac_of(running_world, 0), Action.UNLOCK, settings)
    assert caught.value.step == "connect"


async def test_wrong_api_key_is_refused_and_never_shown(running_world: RunningWorld) -> None:
    settings = settings_for(running_world, BLELOCK_NOKE_API_KEY="not-the-key-0123")
    with pytest.raises(AuthFailed) as caught:
        await visit(mac_of(running_world, 0), Action.UNLOCK, settings)
    assert caught.value.step == "get commands from the cloud"
    assert "not-the-key-0123" not in caught.value.one_line()
    assert running_world.world.locks[0].unlocks == 0


async def test_cloud_down_without_an_offline_key_says_both(running_world: RunningWorld) -> None:
    settings = settings_for(running_world, BLELOCK_NOKE_URL=closed_port_url())
    with pytest.raises(OfflineKeyMissing) as caught:
        await visit(mac_of(running_world, 0), Action.UNLOCK, settings)
    assert caught.value.lock_id == running_world.world.locks[0].mac
    assert caught.value.message.startswith("the cloud could not give commands (cannot reach")
    assert isinstance(caught.value.__cause__, CloudUnavailable)
    assert "blelock sync" in (caught.value.hint or "")


async def test_cloud_down_online_only_is_unavailable(running_world: RunningWorld) -> None:
    settings = settings_for(running_world, BLELOCK_NOKE_URL=closed_port_url())
    with pytest.raises(CloudUnavailable):
        await visit(mac_of(running_world, 0), Action.UNLOCK, settings, mode="online")


@pytest.mark.parametrize("fault", ["fail_with_500", "garbage_json"])
async def test_cloud_answering_garbage_is_rejected(running_world: RunningWorld, fault: str) -> None:
    setattr(running_world.world.cloud.faults, fault, 1)
    settings = settings_for(running_world)
    with pytest.raises(CloudRejected):
        await visit(mac_of(running_world, 0), Action.UNLOCK, settings, mode="online")
    assert running_world.world.locks[0].unlocks == 0


# --- command sources that misbehave: the lock must refuse, the companion must say so ----------


@dataclass
class ReplayingSource:
    """Fetches the first command string honestly, then keeps sending that stale one."""

    cloud: NokeCloud
    first: list[bytes] | None = None
    calls: list[str] = field(default_factory=list)

    async def unlock_commands(
        self, mac: MacAddress, session_hex: str, tracking_key: str | None = None
    ) -> list[bytes]:
        self.calls.append(session_hex)
        if self.first is None:
            self.first = await self.cloud.unlock_commands(mac, session_hex, tracking_key)
        return self.first

    unshackle_commands = unlock_commands


@dataclass
class OtherLockSource:
    cloud: NokeCloud
    other: MacAddress

    async def unlock_commands(
        self, mac: MacAddress, session_hex: str, tracking_key: str | None = None
    ) -> list[bytes]:
        return await self.cloud.unlock_commands(self.other, session_hex, tracking_key)

    unshackle_commands = unlock_commands


async def _visit_with(running: RunningWorld, index: int, source_for: object) -> object:
    settings: Settings = settings_for(running)
    mac = mac_of(running, index)
    found = await find_lock(mac, settings, [NOKE])
    async with NokeCloud(
        noke_settings(settings).url, running.world.cloud.api_key, timeouts=settings.timeouts
    ) as cloud:
        source = source_for(cloud)  # type: ignore[operator]
        noke_visit = NokeVisit(
            mac,
            lambda: open_link(found.device, settings, name=found.sighting.name),
            source,
            settings.timeouts,
        )
        return await noke_visit.run(Action.UNLOCK)


async def test_stale_session_command_is_refused_by_the_lock(running_world: RunningWorld) -> None:
    lock = running_world.world.locks[0]
    sources: list[ReplayingSource] = []

    def honest_then_stale(cloud: NokeCloud) -> ReplayingSource:
        first = sources[0].first if sources else None
        sources.append(ReplayingSource(cloud, first=first))
        return sources[-1]

    await _visit_with(running_world, 0, honest_then_stale)
    assert lock.unlocks == 1  # the honest first visit opened it
    with pytest.raises(LockRefused) as caught:
        await _visit_with(running_world, 0, honest_then_stale)
    assert caught.value.reason is noke.ResultCode.INVALID_KEY
    assert sources[1].calls and sources[1].calls[0] != sources[0].calls[0]  # a fresh session
    assert lock.unlocks == 1 and lock.refusals[noke.ResultCode.INVALID_KEY] == 1


async def test_command_for_another_lock_is_refused(running_world: RunningWorld) -> None:
    lock = running_world.world.locks[0]
    other = mac_of(running_world, 2)
    with pytest.raises(LockRefused) as caught:
        await _visit_with(running_world, 0, lambda cloud: OtherLockSource(cloud, other))
    assert caught.value.reason is noke.ResultCode.INVALID_KEY
    assert lock.refusals[noke.ResultCode.INVALID_KEY] == 1 and lock.unlocks == 0


async def test_an_online_visit_without_an_api_key_is_refused_before_the_lock_is_touched(
    running_world: RunningWorld,
) -> None:
    environment = {
        key: value
        for key, value in settings_environment(running_world).items()
        if key != "BLELOCK_NOKE_API_KEY"
    }
    settings = load_settings(environ=environment, read_file=False)
    mac = mac_of(running_world, 0)
    with pytest.raises(ConfigError, match="no Nokē API key"):
        await visit(mac, Action.UNLOCK, settings, mode="online")
    assert running_world.world.radio.stats_of(mac).connections == 0
