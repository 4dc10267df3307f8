"""The Keyless jobs against the simulated world: activation, key sync, online and offline
opens, audit upload with no gap and no duplicate, re-keying across two offline visits."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence

import pytest

from blelock.errors import (
    AuthFailed,
    CloudRejected,
    CloudUnavailable,
    ConfigError,
    LockRefused,
    UnknownLock,
    UnsendableRecord,
)
from blelock.jobs import context, open_store
from blelock.model import LogRecord
from blelock.vendors.base import KeptClients
from blelock.vendors.keyless import jobs as keyless_jobs
from blelock.vendors.keyless import protocol as keyless
from blelock.vendors.keyless.cloud import KeylessMobile
from blelock.vendors.keyless.jobs import (
    CSR_LOG,
    KeylessUploader,
    activate,
    keyless_store,
    open_lock,
    set_lock_time,
    sync_keyless,
)
from blelock.vendors.keyless.plugin import PLUGIN
from blelock.vendors.keyless.visit import AUDIT_LOG
from blelock.vendors.outbox import drain_outbox, refuses_the_batch
from simulators.world import RunningWorld, WorldSpec
from tests.conftest import FAST, closed_port_url, settings_for
from tests.store.store_fakes import FakeClock


@pytest.fixture
def world_spec() -> WorldSpec:
    return WorldSpec(locks=1, seed=5, latency=FAST, keyless_locks=2)


def keyless_of(running: RunningWorld):  # type: ignore[no-untyped-def]
    assert running.world.keyless is not None
    return running.world.keyless


async def test_activate_sync_open_and_upload(running_world: RunningWorld) -> None:
    world = keyless_of(running_world)
    settings = settings_for(running_world)
    lock = world.locks[0]
    async with open_store(settings) as store:
        with pytest.raises(ConfigError, match="not a Keyless operating device"):
            await sync_keyless(settings, store)
        device_id = await activate(settings, store, world.invitation_code)
        assert device_id in world.platform.operating_devices
        report = await sync_keyless(settings, store)
        assert report.operating_keys == 2 * len(world.locks)  # OPEN and UPDATE_TIME per lock
        route = "GET /mobile/locking-device/{locking_device_id}/certificate"
        asked = world.platform.requests[route]
        outcome, online = await open_lock(lock.locking_device_id, settings, store)
        assert online and lock.opens == 1 and outcome.key_id is not None
        # The sync before the visit asks about this lock's certificate only, not every lock's.
        assert world.platform.requests[route] == asked + 1
        # Online, what the visit kept went up at once; nothing waits in the outbox.
        assert outcome.audit_collected == 1 and await store.outbox("keyless").pending_count() == 0
    received = world.platform.audit_entries(lock.locking_device_id)
    assert [entry.sequence_number for entry in received] == [1]


async def test_a_cold_online_open_preloads_the_link_library_while_syncing_a_kept_one_does_not(
    running_world: RunningWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = keyless_of(running_world)
    settings = settings_for(running_world)
    lock = world.locks[0].locking_device_id
    asked: list[tuple[str, int]] = []  # (modules, certificate requests the platform had then)
    route = "GET /mobile/locking-device/{locking_device_id}/certificate"

    def preload_recorded(modules: Sequence[str]) -> None:
        asked.extend((name, world.platform.requests[route]) for name in modules)

    monkeypatch.setattr(keyless_jobs.preload, "in_background", preload_recorded)
    async with open_store(settings) as store:
        await activate(settings, store, world.invitation_code)
        await sync_keyless(settings, store)
        await open_lock(lock, settings, store, mode="offline")
        assert asked == []  # offline: no sync to hide it behind
        before = world.platform.requests[route]
        assert (await open_lock(lock, settings, store))[1]
        # Asked for before the sync's requests went out, so its import runs while they wait.
        assert asked == [("blelock.transport.ble", before)]
        async with KeptClients() as clients:  # a resident process imported it all already
            assert (await open_lock(lock, settings, store, clients=clients))[1]
        assert len(asked) == 1


async def test_an_online_open_logs_in_once_and_kept_clients_log_in_again_only_when_due(
    running_world: RunningWorld,
) -> None:
    world = keyless_of(running_world)
    settings = settings_for(running_world)
    lock = world.locks[0].locking_device_id
    login = "POST /mobile/login"
    async with open_store(settings) as store:
        await activate(settings, store, world.invitation_code)
        await sync_keyless(settings, store)
        before = world.platform.requests[login]
        # Its sync, its upload: one client, one token.
        assert (await open_lock(lock, settings, store))[1]
        assert world.platform.requests[login] == before + 1
        async with KeptClients() as clients:
            for _ in range(3):
                assert (await open_lock(lock, settings, store, clients=clients))[1]
            assert world.platform.requests[login] == before + 2
            # The upkeep's syncs and drains: a client of their own (they retry), kept as well.
            for _ in range(2):
                await sync_keyless(settings, store, clients=clients)
                async with KeylessUploader.open(settings, store, clients=clients) as uploader:
                    await drain_outbox(uploader, store.outbox("keyless"))
            assert world.platform.requests[login] == before + 3
    assert len(world.platform.audit_entries(lock)) == 4


async def test_the_sync_before_a_visit_asks_for_its_four_lists_at_once(
    running_world: RunningWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = keyless_of(running_world)
    settings = settings_for(running_world)
    lists = ("platform_ca", "revocations", "operating_keys", "offline_keys")
    asked: list[str] = []
    all_asked = asyncio.Event()

    def held(name: str) -> Callable[..., Awaitable[object]]:
        real = getattr(KeylessMobile, name)

        async def ask(mobile: KeylessMobile) -> object:
            asked.append(name)
            if len(asked) == len(lists):
                all_asked.set()
            # One after another, the first would wait here for ever: the test fails instead.
            await asyncio.wait_for(all_asked.wait(), timeout=10)
            return await real(mobile)

        return ask

    async with open_store(settings) as store:
        await activate(settings, store, world.invitation_code)
        for name in lists:
            monkeypatch.setattr(KeylessMobile, name, held(name))
        outcome, online = await open_lock(world.locks[0].locking_device_id, settings, store)
    assert online and outcome.key_id is not None
    assert sorted(asked) == sorted(lists)


async def test_a_fleet_sync_asks_for_its_locks_certificates_together(
    running_world: RunningWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = keyless_of(running_world)
    settings = settings_for(running_world)
    locks = {lock.locking_device_id for lock in world.locks}
    assert len(locks) == 2
    asked: list[str] = []
    both_asked = asyncio.Event()
    real = KeylessMobile.certificate

    async def held(mobile: KeylessMobile, locking_device_id: str) -> bytes | None:
        asked.append(locking_device_id)
        if len(asked) == len(locks):
            both_asked.set()
        await asyncio.wait_for(both_asked.wait(), timeout=10)  # one at a time: fails here
        return await real(mobile, locking_device_id)

    async with open_store(settings) as store:
        await activate(settings, store, world.invitation_code)
        monkeypatch.setattr(KeylessMobile, "certificate", held)
        report = await sync_keyless(settings, store)
    assert set(asked) == locks and report.operating_keys == 2 * len(locks)


async def test_a_list_the_platform_fails_to_give_fails_the_sync_by_itself(
    running_world: RunningWorld,
) -> None:
    world = keyless_of(running_world)
    settings = settings_for(running_world)
    lock = world.locks[0]
    async with open_store(settings) as store:
        await activate(settings, store, world.invitation_code)
        await sync_keyless(settings, store)
        world.platform.faults.fail_with_500 = -1
        # Not a group of four errors: the one a caller (and its fallback) knows.
        with pytest.raises(CloudRejected, match="HTTP 500"):
            await open_lock(lock.locking_device_id, settings, store, mode="online")
        _, went_online = await open_lock(lock.locking_device_id, settings, store)
    assert not went_online and lock.opens == 1


async def test_the_upkeep_syncs_again_only_when_a_key_is_due(running_world: RunningWorld) -> None:
    world = keyless_of(running_world)
    settings = settings_for(running_world)
    horizon = dt.timedelta(hours=72)
    async with open_store(settings) as store:
        await activate(settings, store, world.invitation_code)
        await sync_keyless(settings, store)
        keys = await (await keyless_store(store)).list_keys()
        shortest = min(keys, key=lambda key: key.not_after - key.not_before)
        life = shortest.not_after - shortest.not_before
        assert life < horizon, "the platform's UPDATE_TIME grants last minutes"
        requests = sum(world.platform.requests.values())
        # Just synced: a grant for minutes is not due again as soon as it came.
        fresh = context(PLUGIN, settings, store, clock=FakeClock(shortest.not_before))
        assert not await PLUGIN.refresh_keys(fresh, horizon)
        assert sum(world.platform.requests.values()) == requests
        # Past half its life, it is.
        later = shortest.not_before + life / 2 + dt.timedelta(seconds=1)
        assert await PLUGIN.refresh_keys(
            context(PLUGIN, settings, store, clock=FakeClock(later)), horizon
        )
        assert sum(world.platform.requests.values()) > requests


async def test_offline_opens_keep_entries_until_the_network_is_back(
    running_world: RunningWorld,
) -> None:
    world = keyless_of(running_world)
    online = settings_for(running_world)
    offline = settings_for(running_world, BLELOCK_KEYLESS_URL=closed_port_url())
    lock = world.locks[1]
    async with open_store(online) as store:
        await activate(online, store, world.invitation_code)
        await sync_keyless(online, store)
        for _ in range(3):
            _, went_online = await open_lock(lock.locking_device_id, offline, store)
            assert not went_online
        with pytest.raises(CloudUnavailable):
            await open_lock(lock.locking_device_id, offline, store, mode="online")
        assert lock.opens == 3 and await store.outbox("keyless").pending_count() == 3
        async with KeylessUploader.open(online, store) as uploader:
            assert await drain_outbox(uploader, store.outbox("keyless")) == 3
            # A second drain of the same entries (a lost acknowledgement) changes nothing.
            await uploader.upload(
                [r for r in await store.outbox("keyless").pending()], idempotency_key=None
            )
    sequences = [e.sequence_number for e in world.platform.audit_entries(lock.locking_device_id)]
    assert sequences == [1, 2, 3] and world.platform.duplicate_submissions == 0


async def test_re_keying_across_two_offline_visits(running_world: RunningWorld) -> None:
    world = keyless_of(running_world)
    online = settings_for(running_world)
    offline = settings_for(running_world, BLELOCK_KEYLESS_URL=closed_port_url())
    lock = world.locks[0]
    old_key = lock.lock_key_id
    async with open_store(online) as store:
        await activate(online, store, world.invitation_code)
        await sync_keyless(online, store)
        # Visit one, no network: the lock makes a CSR; it waits in the outbox.
        first, _ = await open_lock(lock.locking_device_id, offline, store, rekey=True)
        assert first.csr is not None and lock.pending_key is not None
        pending = await store.outbox("keyless").pending()
        assert [r.context for r in pending].count(CSR_LOG) == 1
        # Back in coverage: the CSR goes up, the platform certifies it, a sync brings it down.
        async with KeylessUploader.open(online, store) as uploader:
            await drain_outbox(uploader, store.outbox("keyless"))
        report = await sync_keyless(online, store)
        assert report.certificates_pending == 1
        # Visit two, no network again: the certificate is installed and the lock opens.
        second, _ = await open_lock(lock.locking_device_id, offline, store)
        assert second.certificate_installed is not None
        assert lock.lock_key_id != old_key and lock.opens == 2
        record = await (await keyless_store(store)).lock(lock.locking_device_id)
        assert record is not None and record.pending_certificate is None
        # A sync before the platform heard of the install must not undo it in the store: the
        # next visit would try to install again and the lock would refuse the whole visit.
        await sync_keyless(online, store)
        third, _ = await open_lock(lock.locking_device_id, offline, store)
        assert third.certificate_installed is None and lock.opens == 3
        # Entries signed by the new key tell the platform the re-keying is complete.
        async with KeylessUploader.open(online, store) as uploader:
            await drain_outbox(uploader, store.outbox("keyless"))
    platform_lock = world.platform.locking_devices[lock.locking_device_id]
    assert platform_lock.certificate is not None and platform_lock.pending_certificate is None
    assert platform_lock.certificate.lock_key_id == lock.lock_key_id


async def test_set_time_corrects_a_drifted_lock(running_world: RunningWorld) -> None:
    world = keyless_of(running_world)
    settings = settings_for(running_world)
    lock = world.locks[1]
    lock.clock_drift_s = -7200
    async with open_store(settings) as store:
        await activate(settings, store, world.invitation_code)
        outcome, online = await set_lock_time(lock.locking_device_id, settings, store)
    assert online and outcome.time_set is not None
    assert abs(lock.clock_drift_s) < 5


async def test_set_time_sets_a_fast_lock_back_with_the_platform_statement(
    running_world: RunningWorld,
) -> None:
    world = keyless_of(running_world)
    online = settings_for(running_world)
    offline = settings_for(running_world, BLELOCK_KEYLESS_URL=closed_port_url())
    lock = world.locks[0]
    lock.clock_drift_s = 7200  # two hours fast: more than the tolerance to go back
    async with open_store(online) as store:
        await activate(online, store, world.invitation_code)
        # Raises the lock's floor to its (fast) time: going back now crosses it.
        await open_lock(lock.locking_device_id, online, store, mode="online")
        # Offline: refused by the lock, with the hint that it needs the platform; unchanged.
        with pytest.raises(LockRefused) as caught:
            await set_lock_time(lock.locking_device_id, offline, store)
        assert caught.value.reason is keyless.ResultCode.TIME_REFUSED
        assert caught.value.hint is not None and "needs the platform" in caught.value.hint
        assert lock.clock_drift_s == 7200
        # Online: the visit fetches the statement for the lock's nonce, and the lock goes back.
        outcome, went_online = await set_lock_time(lock.locking_device_id, online, store)
    assert went_online and outcome.time_set is not None
    assert abs(lock.clock_drift_s) < 5
    route = "POST /mobile/locking-device/{locking_device_id}/time-statement"
    assert world.platform.requests[route] == 1


class RefusingMobile:
    async def submit_csr(
        self, locking_device_id: str, csr_der: bytes, endorsement: bytes = b""
    ) -> None:
        raise AuthFailed("no permission on this locking device", status=403)


async def test_a_certificate_request_refused_for_the_lock_is_set_aside_not_fatal() -> None:
    uploader = KeylessUploader(RefusingMobile())  # type: ignore[arg-type]
    request = keyless.encode_rekey_payload(b"\x30\x82", bytes(70))
    record = LogRecord("6f1c2a3e-8b7d-4c5e-9f00-112233445566", CSR_LOG, 1, request.hex())
    with pytest.raises(UnknownLock) as caught:
        await uploader.upload([record])
    assert refuses_the_batch(caught.value)  # the drain sets it aside and goes on


async def test_a_record_that_cannot_be_sent_is_set_aside_not_retried_forever() -> None:
    uploader = KeylessUploader(RefusingMobile())  # type: ignore[arg-type]
    for bad in (
        LogRecord("6f1c2a3e-8b7d-4c5e-9f00-112233445566", "firmware", 1, "00"),  # unknown kind
        LogRecord("6f1c2a3e-8b7d-4c5e-9f00-112233445566", AUDIT_LOG, 1, "not hex"),
    ):
        with pytest.raises(UnsendableRecord) as caught:
            await uploader.upload([bad])
        assert refuses_the_batch(caught.value) and bad.lock_id in caught.value.message


async def test_an_open_holds_the_radio_only_between_its_sync_and_its_upload(
    running_world: RunningWorld,
) -> None:
    """A kiosk's connection slot is for the radio: an online open asks for it after the sync
    before the visit (cloud calls), and says its radio is done once the link is closed, before
    the audit entries it kept are uploaded."""
    world = keyless_of(running_world)
    settings = settings_for(running_world)
    lock = world.locks[0]
    route = "GET /mobile/locking-device/{locking_device_id}/certificate"
    seen: list[tuple[str, bool, int, int]] = []

    def note(step: str) -> None:
        connected = running_world.world.radio.is_connected(lock.mac)
        received = len(world.platform.audit_entries(lock.locking_device_id))
        seen.append((step, connected, world.platform.requests[route], received))

    async def radio_needed() -> None:
        note("needed")

    async with open_store(settings) as store:
        await activate(settings, store, world.invitation_code)
        outcome, online = await open_lock(
            lock.locking_device_id,
            settings,
            store,
            radio_needed=radio_needed,
            radio_done=lambda: note("done"),
        )
    assert online and lock.opens == 1 and outcome.audit_collected == 1
    # Needed once the sync had asked for the certificate, before any link; done with the link
    # closed and nothing uploaded yet.
    assert seen == [("needed", False, 1, 0), ("done", False, 1, 0)]
    assert len(world.platform.audit_entries(lock.locking_device_id)) == 1
