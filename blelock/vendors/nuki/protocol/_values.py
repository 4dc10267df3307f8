"""Nuki's data types and the payloads built from them (both roles): DateTime, Time, the
weekday mask, keypad codes, authorization entries, log entries, keyturner states, the battery
report and the config. Layouts follow the Smart Lock API (pyNukiBT's ``const.py`` and
NukiBleEsp32 agree); where a field is optional on some firmware, decoders accept it absent.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import struct
from dataclasses import dataclass, field

from blelock.errors import RemoteProtocolError

__all__ = [
    "ALL_WEEKDAYS",
    "AuthorizationEntry",
    "BatteryReport",
    "KeypadCode",
    "KeyturnerStates",
    "LockAction",
    "LockConfig",
    "LockState",
    "LogEntry",
    "LogEntryType",
    "TimeLimit",
    "check_code",
    "check_code_name",
    "decode_datetime",
    "encode_datetime",
    "weekday_bit",
]

ALL_WEEKDAYS = 0x7F
"""Mon = 0x40 … Sun = 0x01 (bit 7 unused): every day."""
_DT = struct.Struct("<HBBBBB")
UNSET = bytes(7)
"""A DateTime of all zeros: not set."""
CODE_NAME_SIZE = 20
AUTH_NAME_SIZE = 32


class LockState(enum.IntEnum):
    UNCALIBRATED = 0
    LOCKED = 1
    UNLOCKING = 2
    UNLOCKED = 3
    LOCKING = 4
    UNLATCHED = 5
    UNLOCKED_LOCK_N_GO = 6
    UNLATCHING = 7
    CALIBRATION = 0xFC
    BOOT_RUN = 0xFD
    MOTOR_BLOCKED = 0xFE
    UNDEFINED = 0xFF


class LockAction(enum.IntEnum):
    UNLOCK = 1
    LOCK = 2
    UNLATCH = 3
    LOCK_N_GO = 4
    LOCK_N_GO_UNLATCH = 5
    FULL_LOCK = 6


class LogEntryType(enum.IntEnum):
    LOGGING = 1
    LOCK_ACTION = 2
    CALIBRATION = 3
    INIT_RUN = 4
    KEYPAD_ACTION = 5
    DOOR_SENSOR = 6
    DOOR_SENSOR_LOGGING = 7


def weekday_bit(day: dt.date) -> int:
    """The mask bit of ``day``'s weekday: Monday 0x40 … Sunday 0x01."""
    return 0x40 >> day.weekday()


def encode_datetime(moment: dt.datetime | None) -> bytes:
    """7 bytes, UTC (a naive datetime is refused); None: all zeros, "unset"."""
    if moment is None:
        return UNSET
    if moment.tzinfo is None:
        raise ValueError("a Nuki DateTime is sent in UTC: give an aware datetime")
    utc = moment.astimezone(dt.UTC)
    return _DT.pack(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)


def decode_datetime(raw: bytes) -> dt.datetime | None:
    if len(raw) != 7:
        raise RemoteProtocolError(f"a DateTime is 7 bytes, not {len(raw)}")
    if raw == UNSET:
        return None
    try:
        year, month, day, hour, minute, second = _DT.unpack(raw)
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        raise RemoteProtocolError(f"DateTime {raw.hex()} is not a date") from None


def _time(raw: bytes) -> dt.time:
    try:
        return dt.time(raw[0], raw[1])
    except ValueError:
        raise RemoteProtocolError(f"Time {raw.hex()} is not a time of day") from None


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").rstrip()


def encode_name(name: str, size: int) -> bytes:
    raw = name.encode()
    if len(raw) > size:
        raise ValueError(f"a name is at most {size} bytes")
    return raw.ljust(size, b"\0")


@dataclass(frozen=True, slots=True)
class TimeLimit:
    """When an entry may be used: the date range bounds it (UTC instants), the weekdays and
    the daily window restrict each day inside it (wall-clock times in the lock's zone)."""

    from_date: dt.datetime | None = None
    until_date: dt.datetime | None = None
    weekdays: int = ALL_WEEKDAYS
    from_time: dt.time = dt.time(0, 0)
    until_time: dt.time = dt.time(0, 0)
    """00:00-00:00: the whole day."""

    def encode(self) -> bytes:
        if not 0 <= self.weekdays <= ALL_WEEKDAYS:
            raise ValueError("the weekday mask is 0..127 (Mon = 64 … Sun = 1)")
        return (
            encode_datetime(self.from_date)
            + encode_datetime(self.until_date)
            + bytes([self.weekdays, self.from_time.hour, self.from_time.minute])
            + bytes([self.until_time.hour, self.until_time.minute])
        )

    @classmethod
    def decode(cls, raw: bytes) -> TimeLimit:
        return cls(
            decode_datetime(raw[0:7]),
            decode_datetime(raw[7:14]),
            raw[14] & ALL_WEEKDAYS,
            _time(raw[15:17]),
            _time(raw[17:19]),
        )


_LIMIT_SIZE = 19

# --- keypad codes ---------------------------------------------------------------------------

_CODE = re.compile(r"[1-9]{6}")


def check_code(code: str) -> int:
    """A keypad code as the lock takes it: six digits 1-9 (no 0), not starting with "12".
    The one statement of the rule on blelock's side (the Web API's check says it the same
    way); the messages never quote the code."""
    if not _CODE.fullmatch(code):
        raise ValueError("a Nuki keypad code must be exactly 6 digits, each 1 to 9 (no 0)")
    if code.startswith("12"):
        raise ValueError('a Nuki keypad code may not start with "12"')
    return int(code)


def check_code_name(name: str) -> str:
    if not name.strip():
        raise ValueError("a keypad code needs a name")
    if len(name.encode()) > CODE_NAME_SIZE:
        raise ValueError(f"a keypad code's name is at most {CODE_NAME_SIZE} bytes")
    return name


@dataclass(frozen=True, slots=True)
class KeypadCode:
    code_id: int
    code: int = field(repr=False)
    """A secret: never in a repr (log lines, tracebacks)."""
    name: str
    enabled: bool
    created: dt.datetime | None
    last_active: dt.datetime | None
    lock_count: int
    time_limited: bool
    limit: TimeLimit

    def encode(self) -> bytes:
        return (
            struct.pack("<HI", self.code_id, self.code)
            + encode_name(self.name, CODE_NAME_SIZE)
            + bytes([self.enabled])
            + encode_datetime(self.created)
            + encode_datetime(self.last_active)
            + struct.pack("<HB", self.lock_count, self.time_limited)
            + self.limit.encode()
        )

    @classmethod
    def decode(cls, raw: bytes) -> KeypadCode:
        _need(raw, 2 + 4 + 20 + 1 + 7 + 7 + 2 + 1 + _LIMIT_SIZE, "KEYPAD_CODE")
        code_id, code = struct.unpack_from("<HI", raw)
        lock_count, limited = struct.unpack_from("<HB", raw, 41)
        return cls(
            code_id,
            code,
            _name(raw[6:26]),
            bool(raw[26]),
            decode_datetime(raw[27:34]),
            decode_datetime(raw[34:41]),
            lock_count,
            bool(limited),
            TimeLimit.decode(raw[44:63]),
        )


def add_code_payload(code: int, name: str, time_limited: bool, limit: TimeLimit) -> bytes:
    return (
        struct.pack("<I", code)
        + encode_name(name, CODE_NAME_SIZE)
        + bytes([time_limited])
        + limit.encode()
    )


def parse_add_code(raw: bytes) -> tuple[int, str, bool, TimeLimit]:
    _need(raw, 4 + 20 + 1 + _LIMIT_SIZE, "ADD_KEYPAD_CODE")
    return (
        struct.unpack_from("<I", raw)[0],
        _name(raw[4:24]),
        bool(raw[24]),
        TimeLimit.decode(raw[25:44]),
    )


def update_code_payload(
    code_id: int, code: int, name: str, enabled: bool, time_limited: bool, limit: TimeLimit
) -> bytes:
    return (
        struct.pack("<HI", code_id, code)
        + encode_name(name, CODE_NAME_SIZE)
        + bytes([enabled, time_limited])
        + limit.encode()
    )


def parse_update_code(raw: bytes) -> tuple[int, int, str, bool, bool, TimeLimit]:
    _need(raw, 2 + 4 + 20 + 2 + _LIMIT_SIZE, "UPDATE_KEYPAD_CODE")
    code_id, code = struct.unpack_from("<HI", raw)
    return (
        code_id,
        code,
        _name(raw[6:26]),
        bool(raw[26]),
        bool(raw[27]),
        TimeLimit.decode(raw[28:47]),
    )


# --- authorizations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorizationEntry:
    auth_id: int
    id_type: int
    """0 app, 1 bridge, 2 fob, 3 keypad."""
    name: str
    enabled: bool
    remote_allowed: bool
    created: dt.datetime | None
    last_active: dt.datetime | None
    lock_count: int
    time_limited: bool
    limit: TimeLimit

    def encode(self) -> bytes:
        return (
            struct.pack("<IB", self.auth_id, self.id_type)
            + encode_name(self.name, AUTH_NAME_SIZE)
            + bytes([self.enabled, self.remote_allowed])
            + encode_datetime(self.created)
            + encode_datetime(self.last_active)
            + struct.pack("<HB", self.lock_count, self.time_limited)
            + self.limit.encode()
        )

    @classmethod
    def decode(cls, raw: bytes) -> AuthorizationEntry:
        _need(raw, 5 + 32 + 2 + 14 + 3 + _LIMIT_SIZE, "AUTHORIZATION_ENTRY")
        auth_id, id_type = struct.unpack_from("<IB", raw)
        lock_count, limited = struct.unpack_from("<HB", raw, 53)
        return cls(
            auth_id,
            id_type,
            _name(raw[5:37]),
            bool(raw[37]),
            bool(raw[38]),
            decode_datetime(raw[39:46]),
            decode_datetime(raw[46:53]),
            lock_count,
            bool(limited),
            TimeLimit.decode(raw[56:75]),
        )


def update_auth_payload(
    auth_id: int,
    name: str,
    enabled: bool,
    remote_allowed: bool,
    time_limited: bool,
    limit: TimeLimit,
) -> bytes:
    return (
        struct.pack("<I", auth_id)
        + encode_name(name, AUTH_NAME_SIZE)
        + bytes([enabled, remote_allowed, time_limited])
        + limit.encode()
    )


def parse_update_auth(raw: bytes) -> tuple[int, str, bool, bool, bool, TimeLimit]:
    _need(raw, 4 + 32 + 3 + _LIMIT_SIZE, "UPDATE_AUTHORIZATION")
    return (
        struct.unpack_from("<I", raw)[0],
        _name(raw[4:36]),
        bool(raw[36]),
        bool(raw[37]),
        bool(raw[38]),
        TimeLimit.decode(raw[39:58]),
    )


# --- log entries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogEntry:
    index: int
    timestamp: dt.datetime | None
    auth_id: int
    name: str
    type: int
    data: bytes
    """Type-specific: a lock action's ``action, trigger, flags, completion_status``; a keypad
    action's ``action, source, completion_status, code_id (u16)``; logging's ``enabled``."""

    def encode(self) -> bytes:
        return (
            struct.pack("<I", self.index)
            + encode_datetime(self.timestamp)
            + struct.pack("<I", self.auth_id)
            + encode_name(self.name, AUTH_NAME_SIZE)
            + bytes([self.type])
            + self.data
        )

    @classmethod
    def decode(cls, raw: bytes) -> LogEntry:
        _need(raw, 4 + 7 + 4 + 32 + 1, "LOG_ENTRY")
        (index,) = struct.unpack_from("<I", raw)
        (auth_id,) = struct.unpack_from("<I", raw, 11)
        return cls(index, decode_datetime(raw[4:11]), auth_id, _name(raw[15:47]), raw[47], raw[48:])

    def describe(self) -> str:
        """One line a person reads (the web's words for the action codes)."""
        try:
            kind = LogEntryType(self.type)
        except ValueError:
            return f"entry type {self.type}"
        if kind is LogEntryType.LOCK_ACTION and len(self.data) >= 4:
            return f"{_action_name(self.data[0])} (completion {self.data[3]})"
        if kind is LogEntryType.KEYPAD_ACTION and len(self.data) >= 5:
            code_id = struct.unpack_from("<H", self.data, 3)[0]
            outcome = "done" if self.data[2] == 0 else f"refused ({_completion(self.data[2])})"
            return f"keypad {_action_name(self.data[0])} code #{code_id}: {outcome}"
        if kind is LogEntryType.LOGGING and self.data:
            return "logging " + ("enabled" if self.data[0] else "disabled")
        return kind.name.lower().replace("_", " ")


def _action_name(action: int) -> str:
    try:
        return LockAction(action).name.lower().replace("_", " ")
    except ValueError:
        return f"action {action}"


_COMPLETION = {0: "success", 1: "motor blocked", 2: "canceled", 3: "too recent", 4: "busy"}
_COMPLETION |= {0x27: "time not allowed", 0xE0: "invalid code", 0xFE: "other"}


def _completion(status: int) -> str:
    return _COMPLETION.get(status, f"status {status}")


def request_log_payload(start_index: int, count: int, newest_first: bool, total: bool) -> bytes:
    return struct.pack("<IHBB", start_index, count, int(newest_first), int(total))


def parse_request_log(raw: bytes) -> tuple[int, int, bool, bool]:
    _need(raw, 8, "REQUEST_LOG_ENTRIES")
    start, count, order, total = struct.unpack_from("<IHBB", raw)
    return start, count, bool(order), bool(total)


# --- states, battery, config ------------------------------------------------------------------

_STATES = struct.Struct("<BBB7shBBBBBBB")
"""The fields every firmware sends; API 2.2 adds night mode (u16) and the accessory battery."""
_STATES_TAIL = struct.Struct("<HB")


@dataclass(frozen=True, slots=True)
class KeyturnerStates:
    nuki_state: int
    """0 uninitialized, 1 pairing mode, 2 door mode."""
    lock_state: int
    trigger: int
    current_time: dt.datetime | None
    timezone_offset_min: int
    critical_battery: bool
    battery_percent: int | None
    """From the battery byte's bits 2-7 (x 2), on firmware that reports it."""
    config_update_count: int = 0
    last_lock_action: int = 0
    last_lock_action_trigger: int = 0
    last_lock_action_completion: int = 0
    door_sensor_state: int = 0
    night_mode_active: int = 0
    accessory_battery_state: int = 0

    def encode(self) -> bytes:
        battery = int(self.critical_battery) | (((self.battery_percent or 0) // 2) << 2)
        tail = _STATES_TAIL.pack(self.night_mode_active, self.accessory_battery_state)
        return (
            _STATES.pack(
                self.nuki_state,
                self.lock_state,
                self.trigger,
                encode_datetime(self.current_time),
                self.timezone_offset_min,
                battery,
                self.config_update_count,
                0,  # lock 'n' go timer
                self.last_lock_action,
                self.last_lock_action_trigger,
                self.last_lock_action_completion,
                self.door_sensor_state,
            )
            + tail
        )

    @classmethod
    def decode(cls, raw: bytes) -> KeyturnerStates:
        _need(raw, _STATES.size, "KEYTURNER_STATES")
        fields = _STATES.unpack_from(raw)
        night, accessory = (
            _STATES_TAIL.unpack_from(raw, _STATES.size)
            if len(raw) >= _STATES.size + _STATES_TAIL.size
            else (0, 0)
        )
        battery = fields[5]
        return cls(
            nuki_state=fields[0],
            lock_state=fields[1],
            trigger=fields[2],
            current_time=decode_datetime(fields[3]),
            timezone_offset_min=fields[4],
            critical_battery=bool(battery & 1),
            battery_percent=(battery >> 2) * 2,
            config_update_count=fields[6],
            last_lock_action=fields[8],
            last_lock_action_trigger=fields[9],
            last_lock_action_completion=fields[10],
            door_sensor_state=fields[11],
            night_mode_active=night,
            accessory_battery_state=accessory,
        )

    def state_name(self) -> str:
        try:
            return LockState(self.lock_state).name.lower()
        except ValueError:
            return f"state {self.lock_state}"


_BATTERY = struct.Struct("<HHBBHHHbHH")


@dataclass(frozen=True, slots=True)
class BatteryReport:
    drain_mws: int
    voltage_mv: int
    critical: bool
    lock_action: int
    start_voltage_mv: int
    lowest_voltage_mv: int
    lock_distance: int
    start_temperature_c: int
    max_turn_current_ma: int
    resistance_mohm: int

    def encode(self) -> bytes:
        return _BATTERY.pack(
            self.drain_mws,
            self.voltage_mv,
            self.critical,
            self.lock_action,
            self.start_voltage_mv,
            self.lowest_voltage_mv,
            self.lock_distance,
            self.start_temperature_c,
            self.max_turn_current_ma,
            self.resistance_mohm,
        )

    @classmethod
    def decode(cls, raw: bytes) -> BatteryReport:
        _need(raw, _BATTERY.size, "BATTERY_REPORT")
        f = _BATTERY.unpack_from(raw)
        return cls(f[0], f[1], bool(f[2]), f[3], f[4], f[5], f[6], f[7], f[8], f[9])


_CONFIG_HEAD = struct.Struct("<I32sffBBBBB7shBBBBBBBB3s2sBH")


@dataclass(frozen=True, slots=True)
class LockConfig:
    nuki_id: int
    name: str
    latitude: float
    longitude: float
    pairing_enabled: bool
    button_enabled: bool
    current_time: dt.datetime | None
    timezone_offset_min: int
    dst_mode: int
    has_keypad: bool
    firmware: str
    hardware: str
    timezone_id: int
    """Nuki's own enumeration (37 = Europe/Berlin; 65535: none set)."""

    def encode(self) -> bytes:
        major, minor, patch = (int(part) for part in self.firmware.split("."))
        hw_major, hw_minor = (int(part) for part in self.hardware.split("."))
        return _CONFIG_HEAD.pack(
            self.nuki_id,
            encode_name(self.name, 32),
            self.latitude,
            self.longitude,
            0,  # auto unlatch
            self.pairing_enabled,
            self.button_enabled,
            1,  # LED
            3,  # LED brightness
            encode_datetime(self.current_time),
            self.timezone_offset_min,
            self.dst_mode,
            0,  # has fob
            0,
            0,
            0,  # fob actions
            0,  # single lock
            0,  # advertising mode
            self.has_keypad,
            bytes([major, minor, patch]),
            bytes([hw_major, hw_minor]),
            0,  # HomeKit
            self.timezone_id,
        )

    @classmethod
    def decode(cls, raw: bytes) -> LockConfig:
        _need(raw, _CONFIG_HEAD.size, "CONFIG")
        f = _CONFIG_HEAD.unpack_from(raw)
        return cls(
            nuki_id=f[0],
            name=_name(f[1]),
            latitude=f[2],
            longitude=f[3],
            pairing_enabled=bool(f[5]),
            button_enabled=bool(f[6]),
            current_time=decode_datetime(f[9]),
            timezone_offset_min=f[10],
            dst_mode=f[11],
            has_keypad=bool(f[18]),
            firmware=".".join(str(b) for b in f[19]),
            hardware=".".join(str(b) for b in f[20]),
            timezone_id=f[22],
        )


def _need(raw: bytes, size: int, what: str) -> None:
    if len(raw) < size:
        raise RemoteProtocolError(f"a {what} payload of {len(raw)} bytes is shorter than {size}")
