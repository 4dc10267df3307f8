"""A simulated Nuki Smart Lock (3.0, or the Ultra): the lock side of
:mod:`blelock.vendors.nuki.protocol` on the simulated radio.

It keeps its own model (authorizations with their keys, keypad codes, the activity log of the
last 1000 entries, the security PIN, its own clock) and refuses what a real lock refuses, with
the error codes the Smart Lock API gives: not in pairing mode, a bad authenticator, a bad or
reused nonce, an unknown or disabled authorization, a time window not met (in the lock's own
timezone, with its weekday mask), a bad security PIN and the lockout after too many, 200
authorizations and 100 keypad codes at most, and a keypad code that is invalid or already
there. It notifies in 20-byte pieces (the vendor's examples) and reassembles what it is
written. ``clock_drift_s`` is a fault switch: the lock's clock runs off until UPDATE_TIME.

Model choices where the vendor publishes nothing: the PIN lockout (3 wrong PINs lock PIN
commands out for 5 minutes), the answer order of listings (a count, the entries, then
COMPLETE), and the Ultra's AUTHORIZATION_INFO (sent empty: its layout is not public).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from blelock.errors import ProtocolError
from blelock.vendors.nuki import protocol as nuki
from simulators.radio import Advertisement, CharacteristicSpec, GattRefused, ServiceSpec

__all__ = ["MAX_AUTHORIZATIONS", "MAX_KEYPAD_CODES", "Refusal", "SimNukiLock"]

MAX_AUTHORIZATIONS = 200
"""Smart Lock 2.0 and later (research §B.3: "more than 200 users")."""
MAX_KEYPAD_CODES = 100
LOG_CAPACITY = 1000
MAX_PIN_ATTEMPTS = 3
PIN_LOCKOUT = dt.timedelta(minutes=5)
_ATT_WRITE_NOT_PERMITTED = 0x03
_ATT_REQUEST_NOT_SUPPORTED = 0x06
E = nuki.ErrorCode
C = nuki.Command


class Refusal(Exception):
    def __init__(self, code: nuki.ErrorCode) -> None:
        super().__init__(code.name)
        self.code = code


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


_zone("Europe/Berlin")  # read at import, not on the event loop of the first visit


def _system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Authorization:
    auth_id: int
    id_type: int
    name: str
    key: bytes = field(repr=False)
    app_id: int
    created: dt.datetime
    enabled: bool = True
    remote_allowed: bool = True
    last_active: dt.datetime | None = None
    lock_count: int = 0
    time_limited: bool = False
    limit: nuki.TimeLimit = field(default_factory=nuki.TimeLimit)


@dataclass
class Code:
    code_id: int
    code: int
    name: str
    created: dt.datetime
    enabled: bool = True
    last_active: dt.datetime | None = None
    lock_count: int = 0
    time_limited: bool = False
    limit: nuki.TimeLimit = field(default_factory=nuki.TimeLimit)


@dataclass
class _Pairing:
    """One connection's pairing, as far as it got."""

    step: str = "idle"
    client_pk: bytes = b""
    key: bytes = b""
    challenge: bytes = b""
    auth_id: int = 0
    uuid: bytes = b""
    pending: Authorization | None = None


@dataclass
class SimNukiLock:
    mac: str
    nuki_id: int
    security_pin: int = field(default=1234, repr=False)
    ultra: bool = False
    timezone: str = "Europe/Berlin"
    name: str = "Nuki"
    pairing_mode: bool = True
    """Pressing the button 5 s; pairing ends it (the world starts a lock in it)."""
    rssi: int = -55
    battery_percent: int = 86
    clock: Callable[[], dt.datetime] = field(default=_system_clock)
    clock_drift_s: float = 0.0
    """A fault switch: how far the lock's clock runs off until UPDATE_TIME sets it."""
    random: Callable[[int], bytes] = field(default=os.urandom, repr=False)

    lock_state: nuki.LockState = nuki.LockState.LOCKED
    authorizations: dict[int, Authorization] = field(default_factory=dict)
    codes: dict[int, Code] = field(default_factory=dict)
    log: collections.deque[nuki.LogEntry] = field(
        default_factory=lambda: collections.deque(maxlen=LOG_CAPACITY)
    )
    logging_enabled: bool = True
    state_changed: bool = False
    """The advert's flag: set by a change nobody connected has read yet."""
    refusals: collections.Counter[nuki.ErrorCode] = field(default_factory=collections.Counter)
    lock_actions: int = 0
    connections: int = 0

    _keys: nuki.KeyPair | None = None
    _time_offset: dt.timedelta = dt.timedelta()
    _next_auth: int = 1
    _next_code: int = 1
    _log_index: int = 0
    _pin_failures: int = 0
    _locked_out_until: dt.datetime | None = None
    _pairing: _Pairing = field(default_factory=_Pairing)
    _gdio: nuki.Reassembler = field(default_factory=lambda: nuki.Reassembler(encrypted=False))
    _usdio: nuki.Reassembler = field(default_factory=lambda: nuki.Reassembler(encrypted=True))
    _challenges: dict[int, bytes] = field(default_factory=dict)
    _nonces: dict[int, nuki.Nonces] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._keys = nuki.generate_keypair(self.random)

    # --- the radio's peripheral -----------------------------------------------------------

    @property
    def address(self) -> str:
        return self.mac

    @property
    def pairing_char(self) -> str:
        return nuki.ULTRA_PAIRING_CHAR if self.ultra else nuki.PAIRING_CHAR

    @property
    def pairing_service(self) -> str:
        return nuki.ULTRA_PAIRING_SERVICE if self.ultra else nuki.PAIRING_SERVICE

    @property
    def local_name(self) -> str:
        return f"Nuki_{self.nuki_id:08X}"

    def advertisement(self) -> Advertisement:
        service_data = {self.pairing_service: b"\x00"} if self.pairing_mode else {}
        return Advertisement(
            local_name=self.local_name,
            manufacturer_data={nuki.APPLE_COMPANY_ID: nuki.ibeacon(self.state_changed)},
            service_uuids=(nuki.KEYTURNER_SERVICE, self.pairing_service),
            service_data=service_data,
            rssi=self.rssi,
        )

    def services(self) -> tuple[ServiceSpec, ...]:
        return (
            ServiceSpec(
                self.pairing_service,
                (CharacteristicSpec(self.pairing_char, ("write", "indicate")),),
            ),
            ServiceSpec(
                nuki.KEYTURNER_SERVICE,
                (CharacteristicSpec(nuki.USDIO_CHAR, ("write", "indicate")),),
            ),
        )

    def on_connect(self) -> None:
        self.connections += 1
        self._pairing = _Pairing()
        self._gdio = nuki.Reassembler(encrypted=False)
        self._usdio = nuki.Reassembler(encrypted=True)
        self._challenges.clear()

    def on_disconnect(self) -> None:
        self._pairing = _Pairing()
        self._challenges.clear()

    def on_subscribe(self, char_uuid: str, enabled: bool) -> None:
        if char_uuid not in (self.pairing_char, nuki.USDIO_CHAR):
            raise GattRefused(_ATT_REQUEST_NOT_SUPPORTED, f"{char_uuid} does not indicate")

    def on_read(self, char_uuid: str) -> bytes:
        raise GattRefused(_ATT_REQUEST_NOT_SUPPORTED, f"{char_uuid} is not readable")

    def on_write(self, char_uuid: str, data: bytes) -> list[tuple[str, bytes]]:
        if char_uuid == self.pairing_char:
            frames = self._gdio.feed(data)
            return [n for frame in frames for n in self._pairing_frame(frame)]
        if char_uuid == nuki.USDIO_CHAR:
            return [n for frame in self._usdio.feed(data) for n in self._user_frame(frame)]
        raise GattRefused(_ATT_WRITE_NOT_PERMITTED, f"{char_uuid} is not writable")

    # --- the lock's clock and its rules -----------------------------------------------------

    def now(self) -> dt.datetime:
        """The lock's own clock (UTC): the world's, off by the drift, as UPDATE_TIME set it."""
        drift = dt.timedelta(seconds=self.clock_drift_s)
        return (self.clock() + drift + self._time_offset).replace(microsecond=0)

    def allowed(self, time_limited: bool, limit: nuki.TimeLimit, at: dt.datetime) -> bool:
        """The lock's reading of a time limit: the date range in UTC, the weekdays and the day
        window on its own wall clock (its timezone's rules, daylight saving included)."""
        if not time_limited:
            return True
        if limit.from_date is not None and at < limit.from_date:
            return False
        if limit.until_date is not None and at > limit.until_date:
            return False
        local = at.astimezone(_zone(self.timezone))
        if not limit.weekdays & (0x40 >> local.weekday()):
            return False
        start, end = limit.from_time, limit.until_time
        if start == end == dt.time(0, 0):
            return True
        wall = local.time().replace(tzinfo=None)
        return start <= wall < end

    def enter_code(self, code: str) -> bool:
        """Someone types ``code`` on the paired keypad: it unlocks if an enabled code matches
        and its time limit allows it now (by the lock's clock); logged either way."""
        now = self.now()
        found = next((c for c in self.codes.values() if str(c.code) == code), None)
        if found is None:
            self._add_log(0, "Keypad", nuki.LogEntryType.KEYPAD_ACTION, bytes([1, 0, 0xE0, 0, 0]))
            return False
        ok = found.enabled and self.allowed(found.time_limited, found.limit, now)
        status = 0 if ok else E.TIME_NOT_ALLOWED
        data = bytes([nuki.LockAction.UNLOCK, 0, status]) + struct.pack("<H", found.code_id)
        self._add_log(0, found.name, nuki.LogEntryType.KEYPAD_ACTION, data)
        if ok:
            found.lock_count += 1
            found.last_active = now
            self.lock_state = nuki.LockState.UNLOCKED
            self.state_changed = True
        return ok

    def _add_log(self, auth_id: int, name: str, kind: nuki.LogEntryType, data: bytes) -> None:
        if not self.logging_enabled and kind is not nuki.LogEntryType.LOGGING:
            return
        self._log_index += 1
        entry = nuki.LogEntry(self._log_index, self.now(), auth_id, name[:32], kind, data)
        self.log.append(entry)

    # --- pairing, unencrypted on GDIO (the Ultra's data encrypted) ---------------------------

    def _pairing_frame(self, frame: bytes) -> list[tuple[str, bytes]]:
        try:
            answers = self._pair(frame)
        except Refusal as refusal:
            self.refusals[refusal.code] += 1
            self._pairing = _Pairing()
            self._gdio = nuki.Reassembler(encrypted=False)
            answers = [nuki.encode_plain(C.ERROR_REPORT, _error(refusal.code, 0))]
        except ProtocolError:
            self.refusals[E.BAD_CRC] += 1
            answers = [nuki.encode_plain(C.ERROR_REPORT, _error(E.BAD_CRC, 0))]
        return [(self.pairing_char, chunk) for a in answers for chunk in nuki.fragment(a)]

    def _pair(self, frame: bytes) -> list[bytes]:
        state = self._pairing
        assert self._keys is not None
        if state.step == "ultra data":
            return [self._ultra_data(frame)]
        message = nuki.decode_plain(frame)
        command, payload = message.command, message.payload
        if command == C.REQUEST_DATA and payload == struct.pack("<H", C.PUBLIC_KEY):
            if not self.pairing_mode:
                raise Refusal(E.P_NOT_PAIRING)
            if len(self.authorizations) >= MAX_AUTHORIZATIONS:
                raise Refusal(E.P_MAX_USER)
            state.step = "public key"
            return [nuki.encode_plain(C.PUBLIC_KEY, self._keys.public)]
        if command == C.PUBLIC_KEY and state.step == "public key" and len(payload) == 32:
            state.client_pk = payload
            state.key = nuki.shared_key(payload, self._keys.secret)
            state.challenge = self.random(32)
            state.step = "authenticator"
            return [nuki.encode_plain(C.CHALLENGE, state.challenge)]
        if command == C.AUTHORIZATION_AUTHENTICATOR and state.step == "authenticator":
            parts = (state.client_pk, self._keys.public, state.challenge)
            if not nuki.authentic(state.key, payload, *parts):
                raise Refusal(E.P_BAD_AUTHENTICATOR)
            if self.ultra:
                state.step = "ultra data"
                self._gdio = nuki.Reassembler(encrypted=True)
                return [nuki.encode_plain(C.AUTHORIZATION_INFO, b"")]
            state.challenge = self.random(32)
            state.step = "data"
            return [nuki.encode_plain(C.CHALLENGE, state.challenge)]
        if command == C.AUTHORIZATION_DATA and state.step == "data" and len(payload) == 101:
            mac, r = payload[:32], payload[32:]
            if not nuki.authentic(state.key, mac, r, state.challenge):
                raise Refusal(E.P_BAD_AUTHENTICATOR)
            id_type, app_id = r[0], struct.unpack_from("<I", r, 1)[0]
            name, client_nonce = r[5:37].split(b"\0", 1)[0].decode(errors="replace"), r[37:69]
            state.auth_id = self._take_auth_id()
            state.uuid = self.random(16)
            state.challenge = self.random(32)
            state.pending = Authorization(
                state.auth_id, id_type, name, state.key, app_id, created=self.now()
            )
            rest = struct.pack("<I", state.auth_id) + state.uuid + state.challenge
            state.step = "confirmation"
            mac = nuki.authenticator(state.key, rest, client_nonce)
            return [nuki.encode_plain(C.AUTHORIZATION_ID, mac + rest)]
        if command == C.AUTHORIZATION_ID_CONFIRMATION and state.step == "confirmation":
            auth_raw = struct.pack("<I", state.auth_id)
            if payload[32:] != auth_raw or not nuki.authentic(
                state.key, payload[:32], auth_raw, state.challenge
            ):
                raise Refusal(E.P_BAD_AUTHENTICATOR)
            assert state.pending is not None
            self._commit(state.pending)
            return [nuki.encode_plain(C.STATUS, bytes([nuki.Status.COMPLETE]))]
        raise Refusal(E.P_BAD_PARAMETER)

    def _ultra_data(self, frame: bytes) -> bytes:
        state = self._pairing
        if nuki.peek_auth_id(frame) != nuki.ULTRA_PAIRING_AUTH_ID:
            raise Refusal(E.P_BAD_PARAMETER)
        try:
            sealed = nuki.open_sealed(state.key, frame)
        except ProtocolError:
            raise Refusal(E.P_BAD_AUTHENTICATOR) from None
        payload = sealed.message.payload
        if sealed.message.command != C.AUTHORIZATION_DATA or len(payload) != 40:
            raise Refusal(E.P_BAD_PARAMETER)
        self._check_pin(struct.unpack_from("<I", payload, 36)[0])
        app_id = struct.unpack_from("<I", payload)[0]
        name = payload[4:36].split(b"\0", 1)[0].decode(errors="replace")
        auth_id = self._take_auth_id()
        uuid = self.random(16)
        self._commit(Authorization(auth_id, 0, name, state.key, app_id, created=self.now()))
        body = struct.pack("<I", auth_id) + uuid
        return nuki.seal(state.key, auth_id, C.AUTHORIZATION_ID, body, self._fresh(auth_id))

    def _take_auth_id(self) -> int:
        auth_id, self._next_auth = self._next_auth, self._next_auth + 1
        return auth_id

    def _commit(self, authorization: Authorization) -> None:
        self.authorizations[authorization.auth_id] = authorization
        self._nonces[authorization.auth_id] = nuki.Nonces(self.random)
        self.pairing_mode = False
        self._pairing = _Pairing()

    # --- encrypted commands on USDIO ---------------------------------------------------------

    def _ledger(self, auth_id: int) -> nuki.Nonces:
        """Every nonce used under this authorization's key, by either side, for good (an
        authorization a test or the bridge put in the table directly gets one too)."""
        return self._nonces.setdefault(auth_id, nuki.Nonces(self.random))

    def _fresh(self, auth_id: int) -> bytes:
        return self._ledger(auth_id).fresh()

    def _user_frame(self, frame: bytes) -> list[tuple[str, bytes]]:
        try:
            auth_id = nuki.peek_auth_id(frame)
        except ProtocolError:
            return self._plain_error(E.BAD_LENGTH)
        auth = self.authorizations.get(auth_id)
        if auth is None:
            return self._plain_error(E.NOT_AUTHORIZED)
        try:
            sealed = nuki.open_sealed(auth.key, frame)
        except ProtocolError:
            return self._plain_error(E.NOT_AUTHORIZED)
        try:
            if self._ledger(auth_id).seen(sealed.nonce):
                raise Refusal(E.BAD_NONCE)  # a replayed frame
            answers = self._command(auth, sealed.message)
        except Refusal as refusal:
            self.refusals[refusal.code] += 1
            answers = [(C.ERROR_REPORT, _error(refusal.code, sealed.message.command))]
        except ProtocolError:
            self.refusals[E.BAD_LENGTH] += 1
            answers = [(C.ERROR_REPORT, _error(E.BAD_LENGTH, sealed.message.command))]
        notes = []
        for command, payload in answers:
            framed = nuki.seal(auth.key, auth_id, command, payload, self._fresh(auth_id))
            notes += [(nuki.USDIO_CHAR, chunk) for chunk in nuki.fragment(framed)]
        return notes

    def _plain_error(self, code: nuki.ErrorCode) -> list[tuple[str, bytes]]:
        self.refusals[code] += 1
        return [(nuki.USDIO_CHAR, nuki.encode_plain(C.ERROR_REPORT, _error(code, 0)))]

    def _check_pin(self, pin: int | None) -> None:
        now = self.now()
        if self._locked_out_until is not None and now < self._locked_out_until:
            raise Refusal(E.TOO_MANY_PIN_ATTEMPTS)
        if pin != self.security_pin:
            self._pin_failures += 1
            if self._pin_failures >= MAX_PIN_ATTEMPTS:
                self._locked_out_until = now + PIN_LOCKOUT
                self._pin_failures = 0
            raise Refusal(E.BAD_PIN)
        self._pin_failures = 0
        self._locked_out_until = None

    def _command(self, auth: Authorization, message: nuki.Message) -> list[tuple[int, bytes]]:
        command = message.command
        if command == C.REQUEST_DATA:
            return self._request_data(auth, message.payload)
        if not auth.enabled:
            raise Refusal(E.DISABLED)
        tail = nuki.split_tail(message, ultra=self.ultra)
        if tail.nonce is not None:
            expected = self._challenges.pop(auth.auth_id, None)
            if expected is None or tail.nonce != expected:
                raise Refusal(E.BAD_NONCE)
        if command in nuki.PIN_COMMANDS:
            self._check_pin(tail.pin)
        handler = _HANDLERS.get(command)
        if handler is None:
            raise Refusal(E.UNKNOWN)
        return handler(self, auth, tail.fields)

    def _request_data(self, auth: Authorization, payload: bytes) -> list[tuple[int, bytes]]:
        if len(payload) != 2:
            raise Refusal(E.BAD_LENGTH)
        (wanted,) = struct.unpack("<H", payload)
        if wanted == C.CHALLENGE:
            nonce = self._challenges[auth.auth_id] = self.random(32)
            return [(C.CHALLENGE, nonce)]
        if not auth.enabled:
            raise Refusal(E.DISABLED)
        if wanted == C.KEYTURNER_STATES:
            self.state_changed = False
            return [(C.KEYTURNER_STATES, self.states().encode())]
        if wanted == C.BATTERY_REPORT:
            return [(C.BATTERY_REPORT, self.battery().encode())]
        raise Refusal(E.BAD_PARAMETER)

    def states(self, lock_state: nuki.LockState | None = None) -> nuki.KeyturnerStates:
        now = self.now()
        offset = now.astimezone(_zone(self.timezone)).utcoffset() or dt.timedelta()
        return nuki.KeyturnerStates(
            nuki_state=1 if self.pairing_mode else 2,
            lock_state=self.lock_state if lock_state is None else lock_state,
            trigger=0,
            current_time=now,
            timezone_offset_min=int(offset.total_seconds() // 60),
            critical_battery=self.battery_percent < 20,
            battery_percent=self.battery_percent,
        )

    def battery(self) -> nuki.BatteryReport:
        voltage = 4800 + self.battery_percent * 12
        return nuki.BatteryReport(
            120, voltage, self.battery_percent < 20, 0, voltage, voltage - 150, 0, 21, 700, 140
        )

    # --- the commands' effects ------------------------------------------------------------

    def _lock_action(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        if len(fields) < 6:
            raise Refusal(E.BAD_LENGTH)
        action = fields[0]
        now = self.now()
        if not self.allowed(auth.time_limited, auth.limit, now):
            raise Refusal(E.TIME_NOT_ALLOWED)
        moves = {
            nuki.LockAction.UNLOCK: (nuki.LockState.UNLOCKING, nuki.LockState.UNLOCKED),
            nuki.LockAction.LOCK: (nuki.LockState.LOCKING, nuki.LockState.LOCKED),
            nuki.LockAction.UNLATCH: (nuki.LockState.UNLATCHING, nuki.LockState.UNLATCHED),
            nuki.LockAction.LOCK_N_GO: (
                nuki.LockState.UNLOCKING,
                nuki.LockState.UNLOCKED_LOCK_N_GO,
            ),
        }
        if action not in moves:
            raise Refusal(E.BAD_PARAMETER)
        moving, final = moves[nuki.LockAction(action)]
        self.lock_state = final
        self.lock_actions += 1
        auth.lock_count += 1
        auth.last_active = now
        self._add_log(
            auth.auth_id, auth.name, nuki.LogEntryType.LOCK_ACTION, bytes([action, 5, 0, 0])
        )
        return [
            (C.STATUS, bytes([nuki.Status.ACCEPTED])),
            (C.KEYTURNER_STATES, self.states(moving).encode()),
            (C.KEYTURNER_STATES, self.states().encode()),
            (C.STATUS, bytes([nuki.Status.COMPLETE])),
        ]

    def config(self) -> nuki.LockConfig:
        offset = self.now().astimezone(_zone(self.timezone)).utcoffset() or dt.timedelta()
        return nuki.LockConfig(
            nuki_id=self.nuki_id,
            name=self.name,
            latitude=47.07,
            longitude=15.44,
            pairing_enabled=True,
            button_enabled=True,
            current_time=self.now(),
            timezone_offset_min=int(offset.total_seconds() // 60),
            dst_mode=1,
            has_keypad=True,
            firmware="4.1.8" if self.ultra else "3.9.2",
            hardware="6.1" if self.ultra else "3.2",
            timezone_id=37 if self.timezone == "Europe/Berlin" else 0xFFFF,
        )

    def _read_config(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        return [(C.CONFIG, self.config().encode())]

    def _verify_pin(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        return [_complete()]

    def _update_time(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        moment = nuki.decode_datetime(fields[:7])
        if moment is None:
            raise Refusal(E.BAD_PARAMETER)
        self._time_offset = moment - (self.now() - self._time_offset)
        return [_complete()]

    def _list_auths(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        offset, count = struct.unpack_from("<HH", fields)
        entries = sorted(self.authorizations.values(), key=lambda a: a.auth_id)
        answers: list[tuple[int, bytes]] = [
            (C.AUTHORIZATION_ENTRY_COUNT, struct.pack("<H", len(entries)))
        ]
        for entry in entries[offset : offset + count]:
            answers.append((C.AUTHORIZATION_ENTRY, _auth_entry(entry).encode()))
        return [*answers, _complete()]

    def _update_auth(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        auth_id, name, enabled, remote, limited, limit = nuki.parse_update_auth(fields)
        target = self.authorizations.get(auth_id)
        if target is None:
            raise Refusal(E.INVALID_AUTH_ID)
        if not name:
            raise Refusal(E.BAD_PARAMETER)
        target.name, target.enabled, target.remote_allowed = name, enabled, remote
        target.time_limited, target.limit = limited, limit
        return [_complete()]

    def _remove_auth(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        (auth_id,) = struct.unpack_from("<I", fields)
        if self.authorizations.pop(auth_id, None) is None:
            raise Refusal(E.INVALID_AUTH_ID)
        return [_complete()]

    def _check_new_code(self, code: int, name: str, own_id: int | None) -> None:
        if not _code_allowed(code):
            raise Refusal(E.CODE_INVALID)
        if any(c.code == code and c.code_id != own_id for c in self.codes.values()):
            raise Refusal(E.CODE_ALREADY_EXISTS)
        if not name:
            raise Refusal(E.BAD_PARAMETER)

    def take_code(self, code: int, name: str, *, into: int | None = None) -> Code:
        """A keypad code arriving at the lock (over Bluetooth, or from the bridge): the lock's
        own checks, then a new entry with the next id of its own (or entry ``into`` given the
        new code). Raises :class:`Refusal` with the lock's error code."""
        if into is None and len(self.codes) >= MAX_KEYPAD_CODES:
            raise Refusal(E.TOO_MANY_ENTRIES)
        self._check_new_code(code, name, into)
        if into is None:
            into = max(self._next_code, max(self.codes, default=0) + 1)
            self._next_code = into + 1
            self.codes[into] = Code(into, code, name, self.now())
        held = self.codes[into]
        held.code, held.name = code, name
        return held

    def _add_code(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        code, name, limited, limit = nuki.parse_add_code(fields)
        held = self.take_code(code, name)
        held.time_limited, held.limit = limited, limit
        return [(C.KEYPAD_CODE_ID, struct.pack("<H", held.code_id))]

    def _list_codes(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        offset, count = struct.unpack_from("<HH", fields)
        entries = sorted(self.codes.values(), key=lambda c: c.code_id)
        answers: list[tuple[int, bytes]] = [(C.KEYPAD_CODE_COUNT, struct.pack("<H", len(entries)))]
        for code in entries[offset : offset + count]:
            answers.append((C.KEYPAD_CODE, _code_entry(code).encode()))
        return [*answers, _complete()]

    def _update_code(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        code_id, code, name, enabled, limited, limit = nuki.parse_update_code(fields)
        target = self.codes.get(code_id)
        if target is None:
            raise Refusal(E.BAD_PARAMETER)
        self._check_new_code(code, name, code_id)
        target.code, target.name, target.enabled = code, name, enabled
        target.time_limited, target.limit = limited, limit
        return [_complete()]

    def _remove_code(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        (code_id,) = struct.unpack_from("<H", fields)
        if self.codes.pop(code_id, None) is None:
            raise Refusal(E.BAD_PARAMETER)
        return [_complete()]

    def _request_log(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        start, count, newest_first, total = nuki.parse_request_log(fields)
        entries = list(self.log)
        if newest_first:
            entries.reverse()
            chosen = [e for e in entries if start == 0 or e.index <= start][:count]
        else:
            chosen = [e for e in entries if e.index >= start][:count]
        answers: list[tuple[int, bytes]] = []
        if total:
            answers.append(
                # logging enabled, count (u16), door sensor enabled, door sensor logging enabled
                (C.LOG_ENTRY_COUNT, struct.pack("<BHBB", self.logging_enabled, len(entries), 0, 0))
            )
        answers += [(C.LOG_ENTRY, entry.encode()) for entry in chosen]
        return [*answers, _complete()]

    def _enable_logging(self, auth: Authorization, fields: bytes) -> list[tuple[int, bytes]]:
        self.logging_enabled = bool(fields[:1] == b"\x01")
        self._add_log(
            auth.auth_id, auth.name, nuki.LogEntryType.LOGGING, bytes([self.logging_enabled])
        )
        return [_complete()]


_Handler = Callable[[SimNukiLock, Authorization, bytes], list[tuple[int, bytes]]]
_HANDLERS: dict[int, _Handler] = {
    C.LOCK_ACTION: SimNukiLock._lock_action,
    C.REQUEST_CONFIG: SimNukiLock._read_config,
    C.VERIFY_SECURITY_PIN: SimNukiLock._verify_pin,
    C.UPDATE_TIME: SimNukiLock._update_time,
    C.REQUEST_AUTHORIZATION_ENTRIES: SimNukiLock._list_auths,
    C.UPDATE_AUTHORIZATION: SimNukiLock._update_auth,
    C.REMOVE_USER_AUTHORIZATION: SimNukiLock._remove_auth,
    C.ADD_KEYPAD_CODE: SimNukiLock._add_code,
    C.REQUEST_KEYPAD_CODES: SimNukiLock._list_codes,
    C.UPDATE_KEYPAD_CODE: SimNukiLock._update_code,
    C.REMOVE_KEYPAD_CODE: SimNukiLock._remove_code,
    C.REQUEST_LOG_ENTRIES: SimNukiLock._request_log,
    C.ENABLE_LOGGING: SimNukiLock._enable_logging,
}


def _code_allowed(code: int) -> bool:
    """The lock's own keypad rule, not the client's (so a client bug is caught, not shared):
    six digits, none of them 0, not starting with 12 (NukiBleEsp32, nuki_hub, research §B)."""
    text = str(code)
    return len(text) == 6 and "0" not in text and not text.startswith("12")


def _complete() -> tuple[int, bytes]:
    return (C.STATUS, bytes([nuki.Status.COMPLETE]))


def _error(code: nuki.ErrorCode, command: int) -> bytes:
    return bytes([code]) + struct.pack("<H", command)


def _auth_entry(a: Authorization) -> nuki.AuthorizationEntry:
    return nuki.AuthorizationEntry(
        a.auth_id,
        a.id_type,
        a.name,
        a.enabled,
        a.remote_allowed,
        a.created,
        a.last_active,
        a.lock_count,
        a.time_limited,
        a.limit,
    )


def _code_entry(c: Code) -> nuki.KeypadCode:
    return nuki.KeypadCode(
        c.code_id,
        c.code,
        c.name,
        c.enabled,
        c.created,
        c.last_active,
        c.lock_count,
        c.time_limited,
        c.limit,
    )
