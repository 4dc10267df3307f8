"""The simulated Smart Lock against the protocol's client side: pairing, lock actions, and
every refusal the issue lists, with the error code a real lock gives."""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct

import pytest

from blelock.vendors.nuki import protocol as nuki
from simulators.nuki_lock import MAX_AUTHORIZATIONS, MAX_KEYPAD_CODES, SimNukiLock
from tests.nuki.helpers import Clock, command, converse, pair

E = nuki.ErrorCode
PIN = 4321


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lock(clock: Clock) -> SimNukiLock:
    return SimNukiLock("54:D2:72:AA:BB:01", 0x2A3B4C5D, security_pin=PIN, clock=clock)


def test_pairing_then_unlock_with_accepted_states_complete(lock: SimNukiLock) -> None:
    creds = pair(lock)
    assert creds.auth_id == 1 and not lock.pairing_mode
    answers, refused = command(lock, creds, [nuki.lock_action(nuki.LockAction.UNLOCK, 0x1234)])
    assert refused is None
    kinds = [m.command for m in answers]
    assert kinds == [
        nuki.Command.STATUS,
        nuki.Command.KEYTURNER_STATES,
        nuki.Command.KEYTURNER_STATES,
        nuki.Command.STATUS,
    ]
    assert answers[0].payload == b"\x01" and answers[-1].payload == b"\x00"
    states = [nuki.KeyturnerStates.decode(m.payload).lock_state for m in answers[1:3]]
    assert states == [nuki.LockState.UNLOCKING, nuki.LockState.UNLOCKED]
    assert lock.lock_state is nuki.LockState.UNLOCKED and lock.lock_actions == 1


def test_not_in_pairing_mode(lock: SimNukiLock) -> None:
    lock.pairing_mode = False
    lock.on_connect()
    exchange = nuki.PairingExchange(lock.pairing_char, nuki.generate_keypair(), app_id=1, name="x")
    converse(lock, exchange)
    assert exchange.refused is not None and exchange.refused.code == E.P_NOT_PAIRING


class _WrongAuthenticator(nuki.PairingExchange):
    """A client whose authenticator is keyed wrong."""

    def receive(self, notification: bytes) -> list[object]:  # type: ignore[override]
        events = list(super().receive(notification))
        if self._step == "authenticator" and self._pending:
            frame = nuki.encode_plain(nuki.Command.AUTHORIZATION_AUTHENTICATOR, bytes(32))
            self._queue(frame)
        return events


def test_bad_authenticator(lock: SimNukiLock) -> None:
    lock.on_connect()
    exchange = _WrongAuthenticator(lock.pairing_char, nuki.generate_keypair(), app_id=1, name="x")
    converse(lock, exchange)
    assert exchange.refused is not None and exchange.refused.code == E.P_BAD_AUTHENTICATOR
    assert lock.authorizations == {} and lock.pairing_mode


class _ForgedLaterStep(nuki.PairingExchange):
    """A client whose authenticator is right but whose later pairing frame is forged:
    ``forge`` names the step whose frame gets a zeroed HMAC."""

    forge = "data"

    def receive(self, notification: bytes) -> list[object]:  # type: ignore[override]
        events = list(super().receive(notification))
        if self._step == self.forge and self._pending:
            frame = b"".join(write.data for write in self._pending)
            message = nuki.decode_plain(frame)
            forged = bytes(32) + message.payload[32:]
            self._queue(nuki.encode_plain(message.command, forged))
        return events


class _ForgedConfirmation(_ForgedLaterStep):
    forge = "confirmation"


@pytest.mark.parametrize("client", [_ForgedLaterStep, _ForgedConfirmation])
def test_a_forged_authorization_data_or_confirmation_is_refused(
    lock: SimNukiLock, client: type[nuki.PairingExchange]
) -> None:
    """The lock checks every HMAC of the pairing, not only the first: a forged
    AUTHORIZATION_DATA or AUTHORIZATION_ID_CONFIRMATION pairs nobody."""
    lock.on_connect()
    exchange = client(lock.pairing_char, nuki.generate_keypair(), app_id=1, name="x")
    converse(lock, exchange)
    assert exchange.refused is not None and exchange.refused.code == E.P_BAD_AUTHENTICATOR
    assert lock.authorizations == {} and lock.pairing_mode


def test_too_many_authorizations(lock: SimNukiLock) -> None:
    creds = pair(lock)
    template = lock.authorizations[creds.auth_id]
    for auth_id in range(2, MAX_AUTHORIZATIONS + 1):
        lock.authorizations[auth_id] = template
    lock.pairing_mode = True
    lock.on_connect()
    exchange = nuki.PairingExchange(lock.pairing_char, nuki.generate_keypair(), app_id=2, name="y")
    converse(lock, exchange)
    assert exchange.refused is not None and exchange.refused.code == E.P_MAX_USER


def test_unknown_auth_id_gets_not_authorized(lock: SimNukiLock) -> None:
    creds = pair(lock)
    stranger = nuki.Credentials(99, creds.key, creds.app_id)
    _, refused = command(lock, stranger, [nuki.keyturner_states()])
    assert refused is not None and refused.code == E.NOT_AUTHORIZED


def test_a_frame_under_the_wrong_key_gets_not_authorized(lock: SimNukiLock) -> None:
    creds = pair(lock)
    forged = nuki.Credentials(creds.auth_id, bytes(32), creds.app_id)
    _, refused = command(lock, forged, [nuki.keyturner_states()])
    assert refused is not None and refused.code == E.NOT_AUTHORIZED


def test_bad_nonce(lock: SimNukiLock) -> None:
    creds = pair(lock)
    stale = nuki.Request(
        nuki.Command.LOCK_ACTION,
        lambda challenge: bytes([1]) + struct.pack("<I", 0) + b"\x00" + bytes(32),
    )
    _, refused = command(lock, creds, [stale])
    assert refused is not None and refused.code == E.BAD_NONCE
    assert lock.lock_actions == 0


def test_a_replayed_frame_is_refused(lock: SimNukiLock) -> None:
    creds = pair(lock)
    lock.on_connect()
    frame = nuki.seal(
        creds.key, creds.auth_id, nuki.Command.REQUEST_DATA, b"\x0c\x00", bytes(range(24))
    )
    first = lock.on_write(nuki.USDIO_CHAR, frame)
    again = lock.on_write(nuki.USDIO_CHAR, frame)
    frames = nuki.Reassembler(encrypted=True)
    (answer,) = [f for _, n in first for f in frames.feed(n)]
    assert nuki.open_sealed(creds.key, answer).message.command == nuki.Command.KEYTURNER_STATES
    (refusal,) = [f for _, n in again for f in frames.feed(n)]
    message = nuki.open_sealed(creds.key, refusal).message
    assert message.command == nuki.Command.ERROR_REPORT and message.payload[0] == E.BAD_NONCE


def test_disabled_authorization(lock: SimNukiLock) -> None:
    creds = pair(lock)
    lock.authorizations[creds.auth_id].enabled = False
    _, refused = command(lock, creds, [nuki.lock_action(nuki.LockAction.UNLOCK, 0)])
    assert refused is not None and refused.code == E.DISABLED


def test_time_not_allowed_for_a_time_limited_authorization(lock: SimNukiLock, clock: Clock) -> None:
    creds = pair(lock)
    auth = lock.authorizations[creds.auth_id]
    auth.time_limited = True
    # Friday 27 March 2026, 11:00 in Berlin: a Monday-only grant does not open.
    auth.limit = nuki.TimeLimit(weekdays=0x40)
    _, refused = command(lock, creds, [nuki.lock_action(nuki.LockAction.UNLOCK, 0)])
    assert refused is not None and refused.code == E.TIME_NOT_ALLOWED
    auth.limit = nuki.TimeLimit(weekdays=0x04)  # Friday
    _, refused = command(lock, creds, [nuki.lock_action(nuki.LockAction.UNLOCK, 0)])
    assert refused is None


def test_bad_pin_then_lockout(lock: SimNukiLock, clock: Clock) -> None:
    creds = pair(lock)
    for _ in range(3):
        _, refused = command(lock, creds, [nuki.verify_security_pin(1111, ultra=False)])
        assert refused is not None and refused.code == E.BAD_PIN
    _, refused = command(lock, creds, [nuki.verify_security_pin(PIN, ultra=False)])
    assert refused is not None and refused.code == E.TOO_MANY_PIN_ATTEMPTS
    clock.now += dt.timedelta(minutes=6)
    _, refused = command(lock, creds, [nuki.verify_security_pin(PIN, ultra=False)])
    assert refused is None


def _add(code: str, name: str = "guest") -> nuki.Request:
    return nuki.add_keypad_code(int(code), name, False, nuki.TimeLimit(), PIN, ultra=False)


def test_keypad_codes_invalid_duplicate_and_full(lock: SimNukiLock, clock: Clock) -> None:
    creds = pair(lock)
    answers, refused = command(lock, creds, [_add("345678")])
    assert refused is None and answers[-1].command == nuki.Command.KEYPAD_CODE_ID
    _, refused = command(lock, creds, [_add("345678", "again")])
    assert refused is not None and refused.code == E.CODE_ALREADY_EXISTS
    for bad in ("123456", "305678", "34567"):
        _, refused = command(lock, creds, [_add(bad)])
        assert refused is not None and refused.code == E.CODE_INVALID, bad
    for n in range(MAX_KEYPAD_CODES - 1):
        digits = f"{n:04d}".translate(str.maketrans("0", "9"))
        lock.codes[1000 + n] = type(lock.codes[1])(1000 + n, int("99" + digits), "x", clock())
    _, refused = command(lock, creds, [_add("456789")])
    assert refused is not None and refused.code == E.TOO_MANY_ENTRIES


def test_keypad_code_list_update_remove(lock: SimNukiLock) -> None:
    creds = pair(lock)
    command(lock, creds, [_add("345678"), _add("456789", "cleaner")])
    answers, _ = command(lock, creds, [nuki.list_keypad_codes(0, 100, PIN, ultra=False)])
    codes = [
        nuki.KeypadCode.decode(m.payload) for m in answers if m.command == nuki.Command.KEYPAD_CODE
    ]
    assert [(c.code, c.name) for c in codes] == [(345678, "guest"), (456789, "cleaner")]
    limit = nuki.TimeLimit(weekdays=0x7C, from_time=dt.time(9), until_time=dt.time(17))
    update = nuki.update_keypad_code(2, 456789, "cleaner", True, True, limit, PIN, ultra=False)
    _, refused = command(lock, creds, [update])
    assert refused is None and lock.codes[2].limit == limit and lock.codes[2].time_limited
    clash = nuki.update_keypad_code(2, 345678, "cleaner", True, True, limit, PIN, ultra=False)
    _, refused = command(lock, creds, [clash])
    assert refused is not None and refused.code == E.CODE_ALREADY_EXISTS
    _, refused = command(lock, creds, [nuki.remove_keypad_code(1, PIN, ultra=False)])
    assert refused is None and set(lock.codes) == {2}


def test_authorization_entries_list_update_remove(lock: SimNukiLock) -> None:
    creds = pair(lock)
    lock.pairing_mode = True
    other = pair(lock, name="cleaner")
    answers, _ = command(lock, creds, [nuki.list_authorizations(0, 100, PIN, ultra=False)])
    entries = [
        nuki.AuthorizationEntry.decode(m.payload)
        for m in answers
        if m.command == nuki.Command.AUTHORIZATION_ENTRY
    ]
    assert [e.name for e in entries] == ["tech", "cleaner"]
    update = nuki.update_authorization(
        other.auth_id, "cleaner", False, False, False, nuki.TimeLimit(), PIN, ultra=False
    )
    assert command(lock, creds, [update])[1] is None
    assert not lock.authorizations[other.auth_id].enabled
    assert (
        command(lock, creds, [nuki.remove_authorization(other.auth_id, PIN, ultra=False)])[1]
        is None
    )
    _, refused = command(lock, creds, [nuki.remove_authorization(77, PIN, ultra=False)])
    assert refused is not None and refused.code == E.INVALID_AUTH_ID


def test_the_log_keeps_the_last_1000(lock: SimNukiLock) -> None:
    creds = pair(lock)
    for _ in range(1003):
        lock.enter_code("999999")
    answers, _ = command(
        lock, creds, [nuki.request_log_entries(0, 50, PIN, newest_first=True, ultra=False)]
    )
    count = next(m for m in answers if m.command == nuki.Command.LOG_ENTRY_COUNT)
    # logging enabled, count u16, door sensor enabled, door sensor logging (pyNukiBT's layout)
    assert struct.unpack("<BHBB", count.payload) == (1, 1000, 0, 0)
    entries = [
        nuki.LogEntry.decode(m.payload) for m in answers if m.command == nuki.Command.LOG_ENTRY
    ]
    assert len(entries) == 50 and entries[0].index == 1003
    assert lock.log[0].index == 4


def test_drifting_clock_and_update_time(lock: SimNukiLock, clock: Clock) -> None:
    creds = pair(lock)
    lock.clock_drift_s = -3600.0
    assert lock.now() == clock() - dt.timedelta(hours=1)
    _, refused = command(lock, creds, [nuki.update_time(clock(), PIN, ultra=False)])
    assert refused is None and lock.now() == clock()


def test_ultra_pairs_with_its_pin_and_refuses_a_wrong_one(clock: Clock) -> None:
    ultra = SimNukiLock("54:D2:72:AA:BB:02", 7, security_pin=654321, ultra=True, clock=clock)
    ultra.on_connect()
    wrong = nuki.PairingExchange(
        ultra.pairing_char, nuki.generate_keypair(), app_id=5, name="x", ultra=True,
        security_pin=111111,
    )  # fmt: skip
    converse(ultra, wrong)
    assert wrong.refused is not None and wrong.refused.code == E.BAD_PIN
    creds = pair(ultra, pin=654321)
    assert creds.ultra
    _, refused = command(ultra, creds, [nuki.verify_security_pin(654321, ultra=True)])
    assert refused is None
    with pytest.raises(ValueError, match="security PIN"):
        nuki.PairingExchange(
            ultra.pairing_char, nuki.generate_keypair(), app_id=5, name="x", ultra=True
        )


def test_a_day_window_is_lock_local_across_daylight_saving(lock: SimNukiLock, clock: Clock) -> None:
    """09:00-17:00 in Berlin, added in winter (UTC+1), used after the change to summer time
    (UTC+2) on 29 March 2026: a fixed offset would accept 17:30 and refuse 09:30."""
    creds = pair(lock)
    window = nuki.TimeLimit(from_time=dt.time(9), until_time=dt.time(17))
    add = nuki.add_keypad_code(345678, "cleaner", True, window, PIN, ultra=False)
    assert command(lock, creds, [add])[1] is None
    clock.now = dt.datetime(2026, 3, 30, 15, 30, tzinfo=dt.UTC)  # 17:30 CEST
    assert not lock.enter_code("345678")
    clock.now = dt.datetime(2026, 3, 30, 7, 30, tzinfo=dt.UTC)  # 09:30 CEST
    assert lock.enter_code("345678")
    refused, accepted = (e.data[2] for e in list(lock.log)[-2:])
    assert refused == E.TIME_NOT_ALLOWED and accepted == 0


def test_states_battery_and_config_on_one_connection(lock: SimNukiLock) -> None:
    creds = pair(lock)
    requests = [nuki.keyturner_states(), nuki.battery_report(), nuki.read_config()]
    answers, refused = command(lock, creds, requests)
    assert refused is None
    assert [m.command for m in answers] == [
        nuki.Command.KEYTURNER_STATES,
        nuki.Command.BATTERY_REPORT,
        nuki.Command.CONFIG,
    ]
    config = nuki.LockConfig.decode(answers[2].payload)
    assert config.nuki_id == lock.nuki_id and config.timezone_id == 37
    states = nuki.KeyturnerStates.decode(answers[0].payload)
    assert states.timezone_offset_min == 60  # 27 March 2026 in Berlin: still winter time


def test_the_lock_notifies_in_pieces_of_20_bytes(lock: SimNukiLock) -> None:
    creds = pair(lock)
    lock.on_connect()
    frame = nuki.seal(
        creds.key, creds.auth_id, nuki.Command.REQUEST_DATA, b"\x0c\x00", bytes([9]) * 24
    )
    notes = [note for _, note in lock.on_write(nuki.USDIO_CHAR, frame)]
    assert len(notes) > 1 and all(len(note) <= 20 for note in notes)
    assert all(len(note) == 20 for note in notes[:-1])
    # Written in pieces too (a central at ATT MTU 23), the lock reassembles before it reads.
    again = nuki.seal(
        creds.key, creds.auth_id, nuki.Command.REQUEST_DATA, b"\x0c\x00", bytes([8]) * 24
    )
    answered = [
        n for piece in nuki.fragment(again, 7) for n in lock.on_write(nuki.USDIO_CHAR, piece)
    ]
    frames = nuki.Reassembler(encrypted=True)
    (whole,) = [f for _, n in answered for f in frames.feed(n)]
    assert nuki.open_sealed(creds.key, whole).message.command == nuki.Command.KEYTURNER_STATES


def test_an_authorization_put_in_the_table_directly_is_served(lock: SimNukiLock) -> None:
    """The bridge and tests fill the lock's table without pairing: its nonce ledger starts
    on first use (it raised KeyError)."""
    creds = pair(lock)
    lock.authorizations[7] = dataclasses.replace(lock.authorizations[creds.auth_id], auth_id=7)
    answers, refused = command(lock, nuki.Credentials(7, creds.key, 1), [nuki.keyturner_states()])
    assert refused is None and answers[-1].command == nuki.Command.KEYTURNER_STATES
