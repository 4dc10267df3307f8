"""/activity/, /lock/ and /keys/ revoke against the simulated Core API over real HTTP.

Activity is built by the cloud from the records it received: online unlocks at the instant the
cloud issued their commands, offline unlocks and quick clicks over the range the cloud can
bound (its last contact with the lock before, to when the phone received the record).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from blelock.errors import UsageError
from blelock.jobs import context, open_store
from blelock.model import LogRecord, MacAddress, parse_mac
from blelock.vendors.noke import jobs
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from blelock.vendors.noke.values import Action, Outcome
from simulators.world import RunningWorld
from tests.conftest import closed_port_url, settings_for

HOUR = 3600


def mac_of(running: RunningWorld, index: int = 0) -> MacAddress:
    return parse_mac(running.world.locks[index].mac)


@pytest.fixture
async def cloud(running_world: RunningWorld) -> AsyncIterator[NokeCloud]:
    async with NokeCloud.from_settings(settings_for(running_world)) as client:
        yield client


async def unlock(
    running: RunningWorld, index: int, *, tracking_key: str | None = None, offline: bool = False
) -> Outcome:
    overrides = {"BLELOCK_NOKE_URL": closed_port_url()} if offline else {}
    settings = settings_for(running, **overrides)
    async with open_store(settings) as store:
        return await jobs.visit(
            context(NOKE, settings, store),
            mac_of(running, index),
            Action.UNLOCK,
            tracking_key=tracking_key,
            mode="offline" if offline else "auto",
        )


def phone_record(
    running: RunningWorld, index: int, event: noke.RecordEvent, received_at: int, detail: int = 0
) -> LogRecord:
    """What a phone uploads from a session of its own (no commands from the cloud)."""
    lock = running.world.locks[index]
    session = os.urandom(noke.SESSION_SIZE)
    kind = (
        noke.RecordType.LOG
        if event is noke.RecordEvent.QUICK_CLICK_UNLOCKED
        else (noke.RecordType.UNLOCK)
    )
    packet = noke.seal_server_packet(
        noke.combined_key(lock.key, session),
        kind,
        sequence=1,
        event=event,
        unix_time=received_at,
        battery_mv=2890,
        counter=1,
        detail=detail,
    )
    return LogRecord(lock.mac, session.hex(), received_at, packet.hex())


def at(unix: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix, dt.UTC)


async def test_an_online_unlock_is_exact_and_carries_its_tracking_key(
    running_world: RunningWorld, cloud: NokeCloud
) -> None:
    await unlock(running_world, 0, tracking_key="tech-7")  # uploads its records at once
    issued = running_world.world.cloud.commands_issued[-1].unix_time
    entries = await cloud.activity(lock_macs=[mac_of(running_world, 0)])
    assert [e.action for e in entries] == ["unlocked", "setup"]  # newest first
    opened = entries[0]
    assert opened.range_date_start == opened.range_date_end == at(issued)
    assert opened.tracking_key == "tech-7" and opened.recorded_time is not None


async def test_offline_unlocks_and_quick_clicks_get_the_range_the_cloud_can_bound(
    running_world: RunningWorld, cloud: NokeCloud
) -> None:
    mac = mac_of(running_world, 0)
    await cloud.offline_keys([mac], issue_for=["linda"])
    await unlock(running_world, 0)  # the cloud's last contact before what follows
    # Its last contact: the unlock's command batch, or the upload of its records right after,
    # which lands a wall-clock second later now and then.
    contact = max(when for when, _ in running_world.world.cloud.locks[mac].contacts)
    slot = running_world.world.cloud.locks[mac].offline_keys["linda"].slot
    later = contact + 2 * HOUR
    await cloud.upload(
        [
            phone_record(running_world, 0, noke.RecordEvent.OFFLINE_UNLOCKED, later, slot),
            phone_record(running_world, 0, noke.RecordEvent.QUICK_CLICK_UNLOCKED, later + HOUR),
        ]
    )
    entries = {e.action: e for e in await cloud.activity(lock_macs=[mac])}
    offline, quick = entries["offline_unlocked"], entries["quick_click_unlocked"]
    assert (offline.range_date_start, offline.range_date_end) == (at(contact), at(later))
    assert offline.tracking_key == "linda"
    # The offline session is itself a contact: the quick click happened after it.
    assert (quick.range_date_start, quick.range_date_end) == (at(later), at(later + HOUR))
    assert quick.tracking_key == ""
    never = await cloud.activity(lock_macs=[mac_of(running_world, 2)])
    assert never == []


async def test_every_filter_narrows_the_activity(
    running_world: RunningWorld, cloud: NokeCloud
) -> None:
    first, second = mac_of(running_world, 0), mac_of(running_world, 1)
    await unlock(running_world, 0, tracking_key="bob")
    start = running_world.world.cloud.commands_issued[-1].unix_time
    await unlock(running_world, 1, tracking_key="linda")
    await cloud.upload(
        [phone_record(running_world, 1, noke.RecordEvent.QUICK_CLICK_UNLOCKED, start + 5 * HOUR)]
    )
    everything = await cloud.activity()
    assert len(everything) == 5  # two setups, two unlocks, one quick click
    assert {e.lock_mac for e in await cloud.activity(lock_macs=[second])} == {second}
    bobs = await cloud.activity(tracking_keys=["bob"])  # the setup came in bob's unlock too
    assert [(e.lock_mac, e.action) for e in bobs] == [(first, "unlocked"), (first, "setup")]
    assert {e.action for e in await cloud.activity(actions=["setup"])} == {"setup"}
    both = await cloud.activity(actions=["unlocked", "quick_click_unlocked"], lock_macs=[second])
    assert [e.action for e in both] == ["quick_click_unlocked", "unlocked"]
    # before / after keep what may have happened in the window (a range that overlaps it).
    late = await cloud.activity(after=at(start + HOUR))
    assert [e.action for e in late] == ["quick_click_unlocked"]
    early = await cloud.activity(before=at(start + HOUR), lock_macs=[first])
    assert {e.action for e in early} == {"setup", "unlocked"}
    window = await cloud.activity(after=at(start + HOUR), before=at(start + 2 * HOUR))
    assert [e.action for e in window] == ["quick_click_unlocked"]  # its range covers it
    assert await cloud.activity(tracking_keys=["nobody"]) == []


async def test_bad_activity_filters_are_refused_on_both_sides(
    running_world: RunningWorld, cloud: NokeCloud
) -> None:
    with pytest.raises(UsageError, match="after is later than before"):
        await cloud.activity(after=at(2 * HOUR), before=at(HOUR))
    with pytest.raises(UsageError, match="time zone"):
        await cloud.activity(before=dt.datetime(2026, 1, 1))
    headers = {"Authorization": f"Bearer {running_world.world.cloud.api_key}"}
    async with httpx.AsyncClient(base_url=running_world.cloud_url, headers=headers) as raw:
        for body in (
            {"before": "yesterday"},
            {"after": "2018-05-23T20:08:34Z", "before": "2018-05-21T23:22:16Z"},
            {"lock_macs": ["not a mac"]},
        ):
            answer = (await raw.post("activity/", json=body)).json()
            assert (answer["result"], answer["error_code"]) == ("failure", 3), body


async def test_lock_info_for_one_several_or_all(
    running_world: RunningWorld, cloud: NokeCloud
) -> None:
    world = running_world.world
    macs = [mac_of(running_world, i) for i in range(3)]
    assert {lock.mac for lock in await cloud.locks()} == set(macs)
    assert [lock.mac for lock in await cloud.locks(macs[:2])] == macs[:2]
    (fresh,) = await cloud.locks([macs[0]])
    assert (fresh.status, fresh.flags, fresh.internal_battery) == ("awaiting setup", ("setup",), 0)
    await unlock(running_world, 0)
    (ready,) = await cloud.locks([macs[0]])
    lock = world.locks[0]
    assert ready.status == "ready" and ready.flags == () and ready.setup_count == 1
    assert ready.internal_battery == lock.battery_mv  # from the lock's latest record, in mV
    assert (ready.hw_version, ready.fw_version) == (lock.hardware, "{}.{}".format(*lock.firmware))
    assert ready.serial == world.cloud.locks[macs[0]].serial


async def test_offline_keys_are_revoked_in_the_docs_three_forms(
    running_world: RunningWorld, cloud: NokeCloud
) -> None:
    macs = [mac_of(running_world, i) for i in range(3)]
    await cloud.offline_keys(macs, issue_for=["bob", "linda", "steve"])
    assert await cloud.revoke_offline_keys([macs[0]], ["bob"]) == {macs[0]: 2}  # specific
    assert await cloud.revoke_offline_keys([macs[1]]) == {macs[1]: 0}  # every key of a lock
    left = await cloud.revoke_offline_keys(tracking_keys=["linda"])  # a key on every lock
    assert left == {macs[0]: 1, macs[2]: 2}
    holders = {(grant.lock_id, grant.tracking_key) for grant in await cloud.offline_keys(macs)}
    assert holders == {(macs[0], "steve"), (macs[2], "bob"), (macs[2], "steve")}
    (info,) = await cloud.locks([macs[1]])
    assert "keys" in info.flags  # the lock has not heard of it yet
    with pytest.raises(UsageError, match="the locks, the tracking keys, or both"):
        await cloud.revoke_offline_keys()


async def test_a_revoked_key_opens_until_an_online_unlock_carries_the_revocation(
    running_world: RunningWorld, cloud: NokeCloud
) -> None:
    mac = mac_of(running_world, 0)
    settings = settings_for(running_world)
    async with open_store(settings) as store:
        keys = jobs.key_store(context(NOKE, settings, store))
        await jobs.refresh_offline_keys(cloud, keys, macs=[mac], issue_for=["bob"])
    await cloud.revoke_offline_keys([mac], ["bob"])
    assert (await unlock(running_world, 0, offline=True)).offline  # still opens: honest
    await unlock(running_world, 0)  # online: carries the revocation to the lock
    assert "keys" not in (await cloud.locks([mac]))[0].flags
    with pytest.raises(Exception, match="0x63"):
        await unlock(running_world, 0, offline=True)
