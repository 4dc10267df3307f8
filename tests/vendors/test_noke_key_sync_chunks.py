"""The fleet key sync in bounded chunks: the company's locks from ``/lock/``, their keys a chunk
of locks per ``/keys/`` request, and what a plain ``blelock sync`` issues with a default
tracking key. Against the simulated Nokē cloud over real HTTP and a real store."""

from __future__ import annotations

import asyncio
import gc

import pytest

from blelock.config import Settings
from blelock.errors import CloudRejected, UnknownLock
from blelock.jobs import context, open_store
from blelock.model import MacAddress, parse_mac
from blelock.vendors.noke import jobs
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.keys import KeyStore, KeySyncSummary
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from blelock.vendors.noke.values import ListedKeys
from simulators.world import RunningWorld, WorldSpec
from tests.conftest import FAST, settings_for

ISSUED = ("tech-1", "tech-2")


@pytest.fixture
def world_spec() -> WorldSpec:
    return WorldSpec(locks=7, seed=23, latency=FAST, offline_tracking_keys=ISSUED)


def macs_of(running: RunningWorld) -> list[MacAddress]:
    return sorted(parse_mac(lock.mac) for lock in running.world.locks)


async def sync(settings: Settings, *, chunk: int = 3) -> KeySyncSummary:
    async with open_store(settings) as store, NokeCloud.from_settings(settings) as cloud:
        keys = jobs.key_store(context(NOKE, settings, store))
        return await jobs.refresh_offline_keys(cloud, keys, chunk=chunk)


async def test_the_whole_company_is_synced_a_chunk_at_a_time(running_world: RunningWorld) -> None:
    settings = settings_for(running_world)
    cloud = running_world.world.cloud
    assert await sync(settings) == KeySyncSummary(added=14, refreshed=0, revoked=0, unchanged=0)
    # One listing, then ceil(7 / 3) key requests: never the whole fleet's keys at once.
    assert (cloud.requests["lock"], cloud.requests["keys"]) == (1, 3)
    assert await sync(settings) == KeySyncSummary(added=0, refreshed=0, revoked=0, unchanged=14)


async def test_a_sync_cut_short_keeps_the_chunks_it_stored(
    running_world: RunningWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(running_world)
    macs = macs_of(running_world)
    asked: list[list[MacAddress]] = []
    real = NokeCloud.listed_offline_keys

    async def third_request_fails(cloud: NokeCloud, locks: list[MacAddress]) -> object:
        asked.append(list(locks))
        if len(asked) == 3:
            raise CloudRejected("the cloud went away (test)", transient=False)
        return await real(cloud, locks)

    monkeypatch.setattr(NokeCloud, "listed_offline_keys", third_request_fails)
    with pytest.raises(CloudRejected, match="went away"):
        await sync(settings)
    assert asked == [macs[0:3], macs[3:6], macs[6:7]]
    async with open_store(settings) as store:
        keys = jobs.key_store(context(NOKE, settings, store))
        held = await keys.list_keys()
        # The two chunks stored before the failure are whole and open; nothing else is there.
        assert sorted((k.lock_id, k.tracking_key) for k in held) == [
            (mac, tracking) for mac in macs[:6] for tracking in ISSUED
        ]
        for mac in macs[:6]:
            assert len((await keys.usable(mac)).offline_key) == 16
    monkeypatch.undo()
    assert await sync(settings) == KeySyncSummary(added=2, refreshed=0, revoked=0, unchanged=12)


async def test_two_chunks_are_fetched_at_a_time_and_stored_in_order(
    running_world: RunningWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(running_world)
    first_chunk = macs_of(running_world)[:1]
    in_flight, most_in_flight, stored = 0, 0, []
    second_started = asyncio.Event()
    real_fetch = NokeCloud.listed_offline_keys
    real_apply = KeyStore.apply_listed

    async def counting(cloud: NokeCloud, locks: list[MacAddress]) -> ListedKeys:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        if in_flight == 2:
            second_started.set()
        try:
            if locks == first_chunk:
                # Held until the second fetch begins: the next chunk is read from the store in
                # a thread meanwhile, and a fast simulated cloud could otherwise answer the
                # first before it, so the overlap would be left to chance. A sync that never
                # fetches two at a time fails here, after the timeout, instead of hanging.
                async with asyncio.timeout(30):
                    await second_started.wait()
            return await real_fetch(cloud, locks)
        finally:
            in_flight -= 1

    async def noting(
        keys: KeyStore, listed: ListedKeys, *, scope_macs: list[MacAddress]
    ) -> KeySyncSummary:
        stored.append(list(scope_macs))
        return await real_apply(keys, listed, scope_macs=scope_macs)

    monkeypatch.setattr(NokeCloud, "listed_offline_keys", counting)
    monkeypatch.setattr(KeyStore, "apply_listed", noting)
    assert await sync(settings, chunk=1) == KeySyncSummary(14, 0, 0, 0)
    assert most_in_flight == jobs.SYNC_FETCHES_AHEAD == 2
    assert stored == [[mac] for mac in macs_of(running_world)]


async def test_the_first_failure_is_the_one_raised_when_fetches_side_by_side_both_fail(
    running_world: RunningWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(running_world)
    failures = iter(["the first chunk failed (test)", "the second chunk failed (test)"])

    async def failing(cloud: NokeCloud, locks: list[MacAddress]) -> ListedKeys:
        raise CloudRejected(next(failures), transient=False)

    monkeypatch.setattr(NokeCloud, "listed_offline_keys", failing)
    async with open_store(settings) as store, NokeCloud.from_settings(settings) as cloud:
        keys = jobs.key_store(context(NOKE, settings, store))
        with pytest.raises(CloudRejected, match="the first chunk failed"):
            await jobs.refresh_offline_keys(cloud, keys, macs=macs_of(running_world), chunk=3)
    assert next(failures, None) is None  # the second fetch ran, and failed, beside the first


async def test_a_sync_sets_the_long_lived_objects_aside_only_while_it_runs(
    running_world: RunningWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(running_world)
    frozen_while_fetching: list[int] = []
    real = NokeCloud.listed_offline_keys

    async def noting(cloud: NokeCloud, locks: list[MacAddress]) -> object:
        frozen_while_fetching.append(gc.get_freeze_count())
        if len(frozen_while_fetching) == 2:
            raise CloudRejected("the cloud went away (test)", transient=False)
        return await real(cloud, locks)

    monkeypatch.setattr(NokeCloud, "listed_offline_keys", noting)
    assert gc.get_freeze_count() == 0
    with pytest.raises(CloudRejected):
        await sync(settings)
    # Set aside while the sync ran; given back to the collector when it failed, too (a third
    # chunk's fetch may have begun beside the failing one).
    assert len(frozen_while_fetching) >= 2 and min(frozen_while_fetching) > 0
    assert gc.get_freeze_count() == 0
    # Frozen by someone else before: left frozen (theirs to undo).
    monkeypatch.undo()
    gc.freeze()
    try:
        await sync(settings)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_a_lock_the_company_no_longer_has_loses_its_keys(
    running_world: RunningWorld,
) -> None:
    settings = settings_for(running_world)
    await sync(settings)
    gone = macs_of(running_world)[4]
    del running_world.world.cloud.locks[gone]
    assert await sync(settings) == KeySyncSummary(added=0, refreshed=0, revoked=2, unchanged=12)
    async with open_store(settings) as store:
        keys = await jobs.key_store(context(NOKE, settings, store)).list_keys()
    assert {k.tracking_key for k in keys if k.lock_id == gone and k.revoked_at} == set(ISSUED)


async def test_a_plain_sync_issues_the_default_tracking_key_on_a_bounded_count_of_locks(
    running_world: RunningWorld,
) -> None:
    settings = settings_for(
        running_world,
        BLELOCK_NOKE__DEFAULT_TRACKING_KEY="tech-default",
        BLELOCK_NOKE__DEFAULT_KEY_LOCKS="4",
    )
    async with open_store(settings) as store:
        counts = await NOKE.sync_keys(context(NOKE, settings, store), None, {})
    assert counts["added"] == 14 + 4
    issued = {
        mac
        for mac, lock in running_world.world.cloud.locks.items()
        if "tech-default" in lock.offline_keys
    }
    assert issued == set(macs_of(running_world)[:4])  # the first four, in MAC order


async def test_an_explicit_tracking_key_is_not_joined_by_the_default(
    running_world: RunningWorld,
) -> None:
    settings = settings_for(running_world, BLELOCK_NOKE__DEFAULT_TRACKING_KEY="tech-default")
    mac = macs_of(running_world)[0]
    async with open_store(settings) as store:
        ctx = context(NOKE, settings, store)
        await NOKE.sync_keys(ctx, [mac], {"tracking_key": ["tech-9"]})
    keys = set(running_world.world.cloud.locks[mac].offline_keys)
    assert keys == {*ISSUED, "tech-9"}


async def test_the_simulated_cloud_answers_a_chunk_as_asked(running_world: RunningWorld) -> None:
    settings = settings_for(running_world)
    first, second, *_ = macs_of(running_world)
    async with NokeCloud.from_settings(settings) as cloud:
        # Each lock once, in the order asked (not the fleet's order, not repeated).
        assert [lock.mac for lock in await cloud.locks([second, first, second])] == [
            second,
            first,
        ]
        grants = await cloud.offline_keys([second, first])
        assert [g.lock_id for g in grants] == [second] * 2 + [first] * 2
        assert await cloud.lock_macs() == [parse_mac(m) for m in running_world.world.cloud.locks]
        with pytest.raises(UnknownLock):
            await cloud.offline_keys([first, MacAddress("00:11:22:33:44:55")])
