"""Round trips and properties of the Nuki protocol: any split of a frame into notifications
reassembles to it; every payload decodes to what was encoded; the code rules."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blelock.errors import RemoteProtocolError
from blelock.vendors.nuki import protocol as nuki

KEY = bytes(range(32))
moments = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),
    max_value=dt.datetime(2099, 12, 31),
    timezones=st.just(dt.UTC),
).map(lambda m: m.replace(microsecond=0))
times = st.times().map(lambda t: t.replace(second=0, microsecond=0))
limits = st.builds(
    nuki.TimeLimit, st.none() | moments, st.none() | moments, st.integers(0, 127), times, times
)
names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)


@given(st.binary(max_size=200), st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_any_split_of_an_encrypted_frame_reassembles(payload: bytes, cuts: list[int]) -> None:
    frame = nuki.seal(KEY, 7, nuki.Command.LOG_ENTRY, payload, bytes(24))
    frames = nuki.Reassembler(encrypted=True)
    out: list[bytes] = []
    at = 0
    for size in cuts * (len(frame) // sum(cuts) + 1):
        if at >= len(frame):
            break
        out += frames.feed(frame[at : at + size])
        at += size
    assert out == [frame] and frames.pending == 0
    assert nuki.open_sealed(KEY, out[0]).message == nuki.Message(nuki.Command.LOG_ENTRY, payload)


def test_two_frames_in_one_notification_are_both_taken() -> None:
    a = nuki.seal(KEY, 1, nuki.Command.STATUS, b"\x01", bytes(24))
    b = nuki.seal(KEY, 1, nuki.Command.STATUS, b"\x00", bytes([1]) * 24)
    frames = nuki.Reassembler(encrypted=True)
    assert frames.feed(a + b[:10]) == [a] and frames.feed(b[10:]) == [b]


@given(
    st.integers(0, 0xFFFF), st.integers(0, 999_999), names, st.booleans(), st.none() | moments,
    st.integers(0, 0xFFFF), st.booleans(), limits,
)  # fmt: skip
def test_keypad_code_entries_round_trip(
    code_id: int, code: int, name: str, enabled: bool, created: dt.datetime | None,
    count: int, limited: bool, limit: nuki.TimeLimit,
) -> None:  # fmt: skip
    entry = nuki.KeypadCode(code_id, code, name, enabled, created, None, count, limited, limit)
    assert nuki.KeypadCode.decode(entry.encode()) == entry


@given(st.integers(0, 2**32 - 1), st.integers(0, 3), names, st.booleans(), limits)
def test_authorization_entries_round_trip(
    auth_id: int, id_type: int, name: str, enabled: bool, limit: nuki.TimeLimit
) -> None:
    entry = nuki.AuthorizationEntry(
        auth_id, id_type, name, enabled, not enabled, None, None, 3, True, limit
    )
    assert nuki.AuthorizationEntry.decode(entry.encode()) == entry


@given(st.integers(0, 2**32 - 1), st.none() | moments, names, st.binary(max_size=8))
def test_log_entries_round_trip(index: int, at: dt.datetime | None, name: str, data: bytes) -> None:
    entry = nuki.LogEntry(index, at, 2, name, nuki.LogEntryType.LOCK_ACTION, data)
    assert nuki.LogEntry.decode(entry.encode()) == entry


def test_states_battery_and_config_round_trip() -> None:
    now = dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)
    states = nuki.KeyturnerStates(2, 3, 0, now, 120, False, 86)
    assert nuki.KeyturnerStates.decode(states.encode()) == states
    battery = nuki.BatteryReport(120, 5800, False, 1, 5800, 5650, 0, 21, 700, 140)
    assert nuki.BatteryReport.decode(battery.encode()) == battery
    config = nuki.LockConfig(
        7, "Door", 47.0, 15.5, True, True, now, 60, 1, True, "3.9.2", "3.2", 37
    )
    decoded = nuki.LockConfig.decode(config.encode())
    assert decoded.name == "Door" and decoded.firmware == "3.9.2" and decoded.timezone_id == 37


def test_a_short_payload_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="KEYPAD_CODE"):
        nuki.KeypadCode.decode(bytes(10))


@pytest.mark.parametrize("bad", ["123456", "103456", "34567", "3456789", "abcdef", ""])
def test_code_rules_refuse(bad: str) -> None:
    with pytest.raises(ValueError, match="keypad code"):
        nuki.check_code(bad)


def test_code_rules_accept_and_weekday_bits() -> None:
    assert nuki.check_code("345678") == 345678 and nuki.check_code("213456") == 213456
    assert nuki.weekday_bit(dt.date(2026, 3, 30)) == 0x40  # a Monday
    assert nuki.weekday_bit(dt.date(2026, 3, 29)) == 0x01  # a Sunday


def test_a_keypad_code_read_from_the_lock_does_not_show_its_code() -> None:
    """A listing's entry may reach a log line or a traceback through its repr: the code is a
    secret (the same holds for the pairing's key in Credentials)."""
    entry = nuki.KeypadCode(1, 345678, "cleaner", True, None, None, 0, False, nuki.TimeLimit())
    assert "345678" not in repr(entry) and "cleaner" in repr(entry)
    creds = nuki.Credentials(2, bytes(range(32)), 7)
    assert bytes(range(32)).hex() not in repr(creds) and str(bytes(range(32))) not in repr(creds)


def test_keyturner_states_in_the_published_layout() -> None:
    """KEYTURNER_STATES byte for byte (pyNukiBT's struct of the Smart Lock API): nuki state,
    lock state, trigger, DateTime, UTC offset (s16), battery byte (bit 0 critical, bits 2-7
    percent / 2), config update count, lock 'n' go timer, last action, its trigger and
    completion, door sensor, night mode (u16), accessory battery; older firmware ends after
    the door sensor and still decodes."""
    now = dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)
    states = nuki.KeyturnerStates(2, 3, 0, now, 120, False, 86)
    published = bytes.fromhex("020300ea07031d011e007800ac000000000000000000")
    assert states.encode() == published
    assert nuki.KeyturnerStates.decode(published[:19]) == states


def test_pairing_refuses_a_name_the_lock_cannot_hold() -> None:
    with pytest.raises(ValueError, match="at most 32 bytes"):
        nuki.PairingExchange(nuki.PAIRING_CHAR, nuki.generate_keypair(), app_id=1, name="é" * 17)
