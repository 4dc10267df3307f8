"""Visits as Nokē's own mobile libraries do them (research/noke-fidelity.md): connected until the
lock's SHUTDOWN, the session's records uploaded right after an online visit (outbox first),
short notifications ignored, unstamped offline packets, adverts under any company id, 0x66."""

from __future__ import annotations

import logging

import httpx
import pytest

from blelock.jobs import context, open_store
from blelock.model import LockState, MacAddress, parse_mac
from blelock.protocol.exchange import AwaitNotification
from blelock.sync import upload
from blelock.vendors.noke import jobs
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.advert import noke_sighting
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from blelock.vendors.noke.values import Action, Outcome
from simulators.world import RunningWorld
from tests.conftest import closed_port_url, settings_for

KEY = bytes(range(16))
SESSION = bytes(range(100, 120))


def mac_of(running: RunningWorld, index: int = 0) -> MacAddress:
    return parse_mac(running.world.locks[index].mac)


async def unlock(running: RunningWorld, index: int = 0, **overrides: str) -> Outcome:
    settings = settings_for(running, **overrides)
    async with open_store(settings) as store:
        return await jobs.visit(
            context(NOKE, settings, store), mac_of(running, index), Action.UNLOCK
        )


async def pending(running: RunningWorld) -> int:
    async with open_store(settings_for(running)) as store:
        return await store.outbox("noke").pending_count()


# --- the visit ------------------------------------------------------------------------------


async def test_a_record_sent_after_the_last_success_reaches_the_cloud(
    running_world: RunningWorld,
) -> None:
    lock = running_world.world.locks[0]
    lock.habits.trailing_records = 1
    outcome = await unlock(running_world)
    assert len(outcome.logs) == 3  # setup, unlock, and the late RELOCKED record
    late_session, late_packet = lock.server_records[-1]
    uploaded = running_world.world.cloud.uploaded
    assert (lock.mac, late_session, late_packet) in uploaded
    actions = [entry.action for entry in running_world.world.cloud.activity]
    assert actions == ["setup", "unlocked", "locked"]


async def test_a_lock_that_never_says_shutdown_holds_the_visit_only_for_the_bound(
    running_world: RunningWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = running_world.world.locks[0]
    lock.habits.sends_shutdown = False
    # The linger is short; each answer still has the usual timeout (a loaded machine's
    # answers must not run into the bound meant for the missing SHUTDOWN).
    monkeypatch.setattr("blelock.vendors.noke.visit.SHUTDOWN_WAIT_S", 0.2)
    outcome = await unlock(running_world)
    assert outcome.attempts == 1 and lock.unlocks == 1 and len(outcome.logs) == 2


async def test_a_short_notification_is_ignored_and_logged(
    running_world: RunningWorld, caplog: pytest.LogCaptureFixture
) -> None:
    running_world.world.locks[0].habits.short_notifications = 1
    with caplog.at_level(logging.WARNING, logger="blelock.vendors.noke"):
        outcome = await unlock(running_world)
    assert outcome.packets_sent == 2 and running_world.world.locks[0].unlocks == 1
    assert "ignored a 4-byte notification" in caplog.text


async def test_an_online_visit_uploads_its_records_at_once(running_world: RunningWorld) -> None:
    outcome = await unlock(running_world)
    assert outcome.uploaded == len(outcome.logs) == 2
    assert await pending(running_world) == 0
    cloud = running_world.world.cloud
    assert len(cloud.uploaded) == 2 and not cloud.locks[mac_of(running_world)].setup_pending


async def test_the_upload_at_once_goes_through_the_outbox_first(
    running_world: RunningWorld,
) -> None:
    """The cloud stores the upload but its answer is lost: the records stay kept, and the next
    sync's retry (same idempotency key) is recognised as a replay — nothing lost or doubled."""
    switch, cloud = running_world.switches["noke"], running_world.world.cloud
    switch.set(lose_answers=1)
    outcome = await unlock(running_world)
    assert outcome.uploaded == 0 and running_world.world.locks[0].unlocks == 1
    assert await pending(running_world) == 2 and len(cloud.uploaded) == 2
    settings = settings_for(running_world)
    async with open_store(settings) as store:
        assert await upload(context(NOKE, settings, store)) == 2
    assert cloud.uploads_replayed == 1 and cloud.records_duplicate == 0
    assert await pending(running_world) == 0


async def test_an_offline_visit_leaves_its_records_for_the_next_sync(
    running_world: RunningWorld,
) -> None:
    settings = settings_for(running_world)
    async with open_store(settings) as store, NokeCloud.from_settings(settings) as cloud:
        keys = jobs.key_store(context(NOKE, settings, store))
        await jobs.refresh_offline_keys(cloud, keys, macs=[mac_of(running_world)], issue_for=["t"])
    uploads = running_world.world.cloud.requests["upload"]
    outcome = await unlock(running_world, BLELOCK_NOKE_URL=closed_port_url())
    assert outcome.offline and outcome.uploaded == 0
    assert running_world.world.cloud.requests["upload"] == uploads
    assert await pending(running_world) == 1


# --- the exchange, sans I/O ----------------------------------------------------------------


def test_the_exchange_waits_for_shutdown_only_when_asked_to_linger() -> None:
    exchange = noke.CompanionSession([bytes(20)])
    exchange.next_action()
    exchange.receive(noke.answer(noke.ResultCode.SUCCESS))
    assert exchange.done and exchange.next_action() is None
    exchange.linger()
    assert isinstance(exchange.next_action(), AwaitNotification)
    late = bytes([noke.Destination.SERVER]) + bytes(19)
    assert exchange.receive(late) == [noke.LogKept(late)]
    (asleep,) = exchange.receive(noke.shutdown_notice(3, timed_out=False))
    assert asleep == noke.LockAsleep(1, after_last=True)
    assert exchange.asleep and exchange.next_action() is None
    assert exchange.server_packets == [late]


def test_a_notification_shorter_than_20_bytes_is_an_event_not_a_failure() -> None:
    exchange = noke.CompanionSession([bytes(20)])
    exchange.next_action()
    assert exchange.receive(b"\x51\x60\x00") == [noke.NotificationIgnored(b"\x51\x60\x00")]
    assert isinstance(exchange.next_action(), AwaitNotification)  # the answer is still owed
    with pytest.raises(noke.RemoteProtocolError):
        exchange.receive(bytes(21))  # longer is still malformed


def test_result_0x66_is_library_error_299() -> None:
    assert noke.ResultCode.BATTERY_DATA.library_code == 299
    assert noke.ResultCode.INVALID_DATA.library_code == 265


# --- offline packets and adverts ------------------------------------------------------------


@pytest.mark.parametrize("stamped", [True, False], ids=["android", "ios-unstamped"])
def test_the_lock_accepts_offline_packets_with_and_without_the_time(stamped: bool) -> None:
    offline_key, unlock_command = noke.offline_grant_material(KEY, 4)
    now = 1_700_000_000
    packet = noke.build_offline_unlock(
        offline_key, unlock_command, SESSION, now if stamped else None
    )
    checks = noke.LockSession(KEY, SESSION, can_unshackle=False)
    accepted = checks.accept(packet, now=now + 10)
    assert isinstance(accepted, noke.Command) and accepted.offline_slot == 4
    assert checks.accept(packet, now=now + 10) is noke.ResultCode.INVALID_PERMISSION  # replay


def test_an_unstamped_packet_still_has_to_be_the_slots_own() -> None:
    offline_key, unlock_command = noke.offline_grant_material(KEY, 4)
    tampered = bytearray(unlock_command)
    tampered[10] ^= 1
    packet = noke.build_offline_unlock(offline_key, bytes(tampered), SESSION, None)
    checks = noke.LockSession(KEY, SESSION, can_unshackle=False)
    assert checks.accept(packet, now=0) is noke.ResultCode.INVALID_KEY
    revoked = noke.LockSession(KEY, SESSION, can_unshackle=False, revoked_slots={4})
    good = noke.build_offline_unlock(offline_key, unlock_command, SESSION, None)
    assert revoked.accept(good, now=0) is noke.ResultCode.INVALID_PERMISSION


@pytest.mark.parametrize("company", [0x038B, 0xFFFF, 0x0059])
def test_adverts_are_read_whatever_the_company_id(company: int) -> None:
    sighting = noke_sighting(
        address="C7:E6:B0:C6:75:38",
        local_name="NOKE4I_C7E6B0C67538",
        manufacturer_data={company: bytes([3 << 5, 3, 14, 0, 1])},
        service_uuids=[noke.SERVICE_UUID],
        rssi=-50,
    )
    assert sighting is not None
    assert (sighting.firmware, sighting.state) == ("4I-3.14", LockState.LOCKED)


async def test_a_harness_presses_codes_and_flips_habits_over_http(
    running_world: RunningWorld,
) -> None:
    lock = running_world.world.locks[0]
    lock.quick_clicks["0110"] = 1
    base = f"{running_world.cloud_url}_sim/noke/locks/{lock.mac}"
    async with httpx.AsyncClient() as harness:
        pressed = await harness.post(f"{base}/press", json={"code": "0110"})
        assert pressed.json() == {"opened": True, "quick_click_unlocks": 1}
        again = await harness.post(f"{base}/press", json={"code": "0110"})
        assert again.json()["opened"] is False  # its one use is spent
        habits = await harness.post(f"{base}/habits", json={"trailing_records": 2})
        assert habits.json()["trailing_records"] == 2 and lock.habits.trailing_records == 2
        refused = await harness.post(f"{base}/habits", json={"trailing_records": "many"})
        assert refused.status_code == 400 and lock.habits.trailing_records == 2
