"""Offline: sync before leaving, open every lock without signal, upload exactly once after.

Whole flows over the simulated world (bleak + radio, the cloud over real HTTP) and a real
store in the test's temporary directory.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from blelock.cloud._http import RetryPolicy
from blelock.config import Settings
from blelock.errors import (
    CloudError,
    CloudUnavailable,
    LockRefused,
    OfflineKeyExpired,
    OfflineKeyRevoked,
)
from blelock.jobs import context, open_store
from blelock.model import MacAddress, parse_mac
from blelock.store import Store
from blelock.vendors.base import Mode
from blelock.vendors.noke import jobs
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.jobs import refresh_offline_keys
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from blelock.vendors.noke.values import Action, Outcome
from blelock.vendors.outbox import drain_outbox
from simulators.world import RunningWorld
from tests.conftest import closed_port_url, settings_for

TECH = "tech-7"


def key_store(settings: Settings, store: Store) -> jobs.LazyKeyStore:
    return jobs.key_store(context(NOKE, settings, store))


async def visit(
    mac: MacAddress, action: Action, settings: Settings, *, mode: Mode = "auto"
) -> Outcome:
    """One Nokē visit with the store open, as a command runs it."""
    async with open_store(settings) as store:
        return await jobs.visit(context(NOKE, settings, store), mac, action, mode=mode)


@dataclass
class Field:
    running: RunningWorld
    online: Settings
    offline: Settings
    """Same store, but the cloud is unreachable."""

    def mac(self, index: int) -> MacAddress:
        return parse_mac(self.running.world.locks[index].mac)

    def cloud(self) -> NokeCloud:
        quick = RetryPolicy(base_s=0.001, cap_s=0.002)  # the retries, not their waiting
        return NokeCloud.from_settings(self.online, retry=quick)


@pytest.fixture
def field(running_world: RunningWorld) -> Field:
    return Field(
        running_world,
        settings_for(running_world),
        settings_for(running_world, BLELOCK_NOKE_URL=closed_port_url()),
    )


async def sync_keys(
    field: Field,
    macs: list[MacAddress] | None = None,
    *,
    issue: bool = True,
    settings: Settings | None = None,
) -> object:
    settings = settings or field.online
    async with open_store(settings) as store, field.cloud() as cloud:
        return await refresh_offline_keys(
            cloud,
            key_store(settings, store),
            macs=macs or [field.mac(0), field.mac(1)],
            issue_for=[TECH] if issue else [],
        )


async def upload(field: Field) -> int:
    async with open_store(field.online) as store, field.cloud() as cloud:
        return await drain_outbox(cloud, store.outbox("noke"))


async def test_unlock_without_signal_uses_the_cached_key(field: Field) -> None:
    await sync_keys(field)
    lock = field.running.world.locks[0]
    outcome = await visit(field.mac(0), Action.UNLOCK, field.offline)
    assert outcome.offline and outcome.packets_sent == 1
    assert (lock.offline_unlocks, lock.unlocks) == (1, 0)


async def test_offline_can_be_forced_while_online(field: Field) -> None:
    await sync_keys(field)
    before = field.running.world.cloud.requests["unlock"]
    outcome = await visit(field.mac(1), Action.UNLOCK, field.online, mode="offline")
    assert outcome.offline
    assert field.running.world.cloud.requests["unlock"] == before
    assert field.running.world.locks[1].offline_unlocks == 1


async def test_every_log_reaches_the_cloud_exactly_once(field: Field) -> None:
    await sync_keys(field)
    world = field.running.world
    online = await visit(field.mac(0), Action.UNLOCK, field.online)
    # An online visit uploads its records at once (after keeping them), as the vendor's
    # libraries do; offline visits leave theirs for the next sync.
    assert online.uploaded == len(online.logs) == 2
    await visit(field.mac(0), Action.UNLOCK, field.offline)
    await visit(field.mac(1), Action.UNLOCK, field.offline)
    offline_records = sum(len(lock.server_records) for lock in world.locks) - online.uploaded
    async with open_store(field.online) as store:
        assert await store.outbox("noke").pending_count() == offline_records
    assert await upload(field) == offline_records
    assert await upload(field) == 0
    delivered = {(r.mac, r.session, r.response) for r in world.cloud.uploaded.values()}
    given = {
        (lock.mac, session, packet)
        for lock in world.locks
        for session, packet in lock.server_records
    }
    assert delivered == given and world.cloud.records_duplicate == 0
    assert not world.cloud.locks[world.locks[0].mac].setup_pending  # its key record arrived


async def test_revocation_is_honest_about_the_lock_and_the_cache(field: Field) -> None:
    world = field.running.world
    await sync_keys(field)
    world.cloud.locks[world.locks[0].mac].revoke_offline_key(TECH)  # the office revokes it

    # Not synced yet: as on real locks, the revoked key still opens (noke.md §9.4).
    assert (await visit(field.mac(0), Action.UNLOCK, field.offline)).offline

    # A sync tells the companion, which stops offering the key, and says why.
    await sync_keys(field, [field.mac(0)], issue=False)
    with pytest.raises(OfflineKeyRevoked) as caught:
        await visit(field.mac(0), Action.UNLOCK, field.offline)
    assert TECH in caught.value.message and "revoked" in caught.value.message

    # An online unlock carries the revocation to the lock itself.
    await visit(field.mac(0), Action.UNLOCK, field.online)
    assert world.locks[0].revoked_slots == {0}


async def test_the_lock_refuses_a_revoked_key_once_it_heard(field: Field) -> None:
    world = field.running.world
    await sync_keys(field)
    stale = field.offline.model_copy(update={"data_dir": field.offline.store_dir / "stale"})
    async with open_store(stale) as store, field.cloud() as cloud:  # a second, unsynced phone
        await refresh_offline_keys(cloud, key_store(stale, store), macs=[field.mac(0)])
    world.cloud.locks[world.locks[0].mac].revoke_offline_key(TECH)
    await visit(field.mac(0), Action.UNLOCK, field.online)  # the lock hears of it
    with pytest.raises(LockRefused) as caught:
        await visit(field.mac(0), Action.UNLOCK, stale)
    assert caught.value.reason is noke.ResultCode.INVALID_PERMISSION


async def test_a_lock_whose_clock_drifted_refuses_the_stamp(field: Field) -> None:
    await sync_keys(field)
    field.running.world.locks[0].clock_drift_s = 3600
    with pytest.raises(LockRefused) as caught:
        await visit(field.mac(0), Action.UNLOCK, field.offline)
    assert caught.value.reason is noke.ResultCode.OUT_OF_SCHEDULE


async def test_an_expired_key_is_refused_before_the_lock_sees_it(field: Field) -> None:
    # Synced under a lifetime shorter than a second: expired by the time we are at the lock.
    await sync_keys(
        field, settings=field.online.with_section("noke", offline_key_lifetime_days=1e-9)
    )
    lock = field.running.world.locks[0]
    with pytest.raises(OfflineKeyExpired) as caught:
        await visit(field.mac(0), Action.UNLOCK, field.offline)
    assert "expired" in caught.value.message and lock.offline_unlocks == 0


async def test_unshackle_never_goes_offline(field: Field) -> None:
    await sync_keys(field)
    with pytest.raises(CloudUnavailable):
        await visit(field.mac(0), Action.UNSHACKLE, field.offline)
    assert field.running.world.locks[0].unshackles == 0


@pytest.mark.parametrize("fault", ["fail_with_500", "garbage_json", "rate_limit"])
async def test_a_failing_cloud_leaves_pending_records_untouched(field: Field, fault: str) -> None:
    world = field.running.world
    await sync_keys(field)
    await visit(field.mac(0), Action.UNLOCK, field.offline)  # online ones upload at once
    setattr(world.cloud.faults, fault, -1)
    world.cloud.faults.retry_after_s = 0
    async with open_store(field.online) as store, field.cloud() as cloud:
        before = await store.outbox("noke").pending(None)
        with pytest.raises(CloudError, match="attempts"):
            await drain_outbox(cloud, store.outbox("noke"))
        assert await store.outbox("noke").pending(None) == before
    setattr(world.cloud.faults, fault, 0)
    assert await upload(field) == len(before)
    assert len(world.cloud.uploaded) == len(before) and world.cloud.records_duplicate == 0
