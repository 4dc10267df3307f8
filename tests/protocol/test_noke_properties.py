"""Nokē protocol properties: round trips, both roles, decoders that fail only politely."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blelock.errors import ProtocolError
from blelock.protocol.exchange import AwaitNotification, Write
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.advert import noke_sighting

keys = st.binary(min_size=16, max_size=16)
sessions = st.binary(min_size=20, max_size=20)
times = st.integers(min_value=0, max_value=2**32 - 1)


@given(
    keys,
    sessions,
    st.sampled_from(["unlock", "unshackle"]),
    st.booleans(),
    times,
    st.integers(0, 255),
)
def test_lock_accepts_exactly_what_the_cloud_made_for_it(
    key: bytes, session: bytes, action: str, setup: bool, now: int, batch: int
) -> None:
    packets = noke.split_commands(
        noke.cloud_command_string(key, session, action, unix_time=now, batch_id=batch, setup=setup)
    )
    lock = noke.LockSession(key, session, can_unshackle=True)
    verdicts = [lock.accept(p, now=0) for p in packets]
    assert all(isinstance(v, noke.Command) for v in verdicts)
    last = verdicts[-1]
    assert isinstance(last, noke.Command)
    assert last.command is noke.CommandType.UNLOCK and last.unix_time == now
    assert (last.argument == noke.UNSHACKLE_ARGUMENT) == (action == "unshackle")
    assert lock.accept(packets[-1], now=0) is noke.ResultCode.INVALID_PERMISSION  # replay


@given(keys, keys, sessions, sessions)
def test_other_lock_or_stale_session_is_refused(
    key: bytes, other_key: bytes, session: bytes, other_session: bytes
) -> None:
    packet = noke.split_commands(
        noke.cloud_command_string(key, session, "unlock", unix_time=1, batch_id=1, setup=False)
    )[0]
    if other_key != key:
        assert noke.LockSession(other_key, session, can_unshackle=True).accept(packet, now=0) is (
            noke.ResultCode.INVALID_KEY
        )
    if other_session[:16] != session[:16]:
        assert noke.LockSession(key, other_session, can_unshackle=True).accept(packet, now=0) is (
            noke.ResultCode.INVALID_KEY
        )


@given(keys, sessions, st.integers(0, 19), st.integers(1, 255))
def test_any_bit_flip_is_refused(key: bytes, session: bytes, where: int, flip: int) -> None:
    packet = bytearray(
        noke.split_commands(
            noke.cloud_command_string(key, session, "unlock", unix_time=5, batch_id=2, setup=False)
        )[0]
    )
    packet[where] ^= flip
    assert noke.LockSession(key, session, can_unshackle=True).accept(bytes(packet), now=0) is (
        noke.ResultCode.INVALID_KEY
    )


@given(keys, sessions, times, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_server_packets_round_trip(
    key: bytes, session: bytes, now: int, battery: int, counter: int
) -> None:
    packet = noke.seal_server_packet(
        noke.combined_key(key, session),
        noke.RecordType.UNLOCK,
        sequence=7,
        event=0,
        unix_time=now,
        battery_mv=battery,
        counter=counter,
    )
    record = noke.open_server_packet(key, session, packet)
    assert (record.unix_time, record.battery_mv, record.counter, record.sequence) == (
        now,
        battery,
        counter,
        7,
    )
    assert isinstance(noke.decode_notification(packet), noke.ServerPacket)


def test_companion_session_walks_a_batch() -> None:
    key, session = bytes(range(16)), bytes(range(20))
    packets = noke.split_commands(
        noke.cloud_command_string(key, session, "unlock", unix_time=9, batch_id=3, setup=True)
    )
    companion = noke.CompanionSession(packets)
    lock = noke.LockSession(key, session, can_unshackle=False)
    write = noke.WRITE_UUID
    assert companion.next_action() == Write(write, packets[0], expects_notification=True)
    assert companion.next_action() == AwaitNotification()  # one packet in flight
    log = noke.seal_server_packet(
        lock.combined,
        noke.RecordType.KEY,
        sequence=1,
        event=0,
        unix_time=9,
        battery_mv=1,
        counter=1,
    )
    assert companion.receive(log) == [noke.LogKept(log)]
    # A server packet does not advance the batch: the answer is still owed.
    assert companion.next_action() == AwaitNotification()
    assert companion.receive(noke.answer(noke.ResultCode.SUCCESS)) == [
        noke.PacketAccepted(0, False)
    ]
    assert companion.next_action() == Write(write, packets[1], expects_notification=True)
    refusal = companion.receive(noke.answer(noke.ResultCode.INVALID_KEY))
    assert refusal == [noke.Refused(1, noke.ResultCode.INVALID_KEY)]
    assert companion.next_action() is None and not companion.done
    assert companion.server_packets == [log]


@given(st.binary(max_size=40))
def test_decoders_raise_only_protocol_errors(data: bytes) -> None:
    for decode in (
        noke.decode_notification,
        noke.Session.parse,
        lambda d: noke.open_server_packet(bytes(16), bytes(20), d),
    ):
        with contextlib.suppress(ProtocolError):
            decode(data)


@given(st.text(max_size=120))
def test_command_string_parser_raises_only_protocol_errors(text: str) -> None:
    try:
        packets = noke.split_commands(text)
    except ProtocolError:
        return
    assert packets and all(len(p) == 20 for p in packets)


@given(
    st.text(max_size=30),
    st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=8)),
    st.lists(st.text(max_size=40), max_size=3),
    st.text(max_size=20),
)
def test_advert_parser_never_crashes(
    name: str, manufacturer: dict[int, bytes], uuids: list[str], address: str
) -> None:
    sighting = noke_sighting(
        address=address,
        local_name=name,
        manufacturer_data=manufacturer,
        service_uuids=uuids,
        rssi=-50,
    )
    assert sighting is None or len(sighting.lock_id) == 17


def test_bad_packet_in_command_string_is_named() -> None:
    good = "00" * 20
    with pytest.raises(ProtocolError, match="packet 2 of 3"):
        noke.split_commands(f"{good}+{good[:-2]}zz+{good}")


# --- offline unlock: the companion's public algorithm against the lock's (invented) checks ----

NOW = 1_700_000_000


@given(keys, sessions, st.integers(0, noke.OFFLINE_SLOTS - 1), st.integers(-300, 300))
def test_offline_packet_opens_within_the_clock_window(
    lock_key: bytes, session: bytes, slot: int, skew: int
) -> None:
    offline_key, unlock_command = noke.offline_grant_material(lock_key, slot)
    packet = noke.build_offline_unlock(offline_key, unlock_command, session, NOW + skew)
    verdict = noke.LockSession(lock_key, session, can_unshackle=False).accept(packet, now=NOW)
    assert isinstance(verdict, noke.Command)
    assert (verdict.offline_slot, verdict.unix_time) == (slot, NOW + skew)


def _offline_verdict(
    lock_key: bytes,
    grant_key: bytes,
    session: bytes,
    packet_session: bytes,
    *,
    stamp: int | None = NOW,
    revoked: frozenset[int] = frozenset(),
    slot: int = 4,
) -> noke.Command | noke.ResultCode:
    offline_key, unlock_command = noke.offline_grant_material(grant_key, slot)
    packet = noke.build_offline_unlock(offline_key, unlock_command, packet_session, stamp)
    lock = noke.LockSession(lock_key, session, can_unshackle=False, revoked_slots=revoked)
    return lock.accept(packet, now=NOW)


@given(keys, keys, sessions, sessions)
def test_offline_refusals(key: bytes, other: bytes, session: bytes, stale: bytes) -> None:
    if other != key:
        assert _offline_verdict(key, other, session, session) is noke.ResultCode.INVALID_KEY
    if stale[:16] != session[:16]:
        assert _offline_verdict(key, key, session, stale) is noke.ResultCode.INVALID_KEY
    too_old, too_new = NOW - noke.OFFLINE_CLOCK_WINDOW_S - 1, NOW + noke.OFFLINE_CLOCK_WINDOW_S + 1
    assert _offline_verdict(key, key, session, session, stamp=too_old) is (
        noke.ResultCode.OUT_OF_SCHEDULE
    )
    assert _offline_verdict(key, key, session, session, stamp=too_new) is (
        noke.ResultCode.OUT_OF_SCHEDULE
    )
    assert _offline_verdict(key, key, session, session, revoked=frozenset({4})) is (
        noke.ResultCode.INVALID_PERMISSION
    )


def test_online_string_carries_revocations_before_the_action() -> None:
    key, session = bytes(range(16)), bytes(range(20))
    text = noke.cloud_command_string(
        key, session, "unlock", unix_time=NOW, batch_id=5, setup=False, revoke_slots=[3, 7]
    )
    lock = noke.LockSession(key, session, can_unshackle=False)
    verdicts = [lock.accept(p, now=NOW) for p in noke.split_commands(text)]
    assert [(v.command, v.argument) for v in verdicts if isinstance(v, noke.Command)] == [
        (noke.CommandType.REMOVE_OFFLINE_KEY, 3),
        (noke.CommandType.REMOVE_OFFLINE_KEY, 7),
        (noke.CommandType.UNLOCK, 0),
    ]
