"""Nuki's commands on the user-specific characteristic, for both roles: the client's
:class:`~._client.Request` builders, and what the lock reads out of each request.

A command that needs a challenge carries the lock's 32-byte nonce after its fields; one that
needs the security PIN carries the PIN after the nonce (u16, or u32 on the Ultra)."""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass

from blelock.errors import RemoteProtocolError
from blelock.vendors.nuki.protocol._client import Request, encode_pin, request_data
from blelock.vendors.nuki.protocol._frames import Command, Message
from blelock.vendors.nuki.protocol._values import (
    TimeLimit,
    add_code_payload,
    encode_datetime,
    request_log_payload,
    update_auth_payload,
    update_code_payload,
)

__all__ = [
    "PIN_COMMANDS",
    "Tail",
    "add_keypad_code",
    "battery_report",
    "enable_logging",
    "keyturner_states",
    "list_authorizations",
    "list_keypad_codes",
    "lock_action",
    "read_config",
    "remove_authorization",
    "remove_keypad_code",
    "request_log_entries",
    "split_tail",
    "update_authorization",
    "update_keypad_code",
    "update_time",
    "verify_security_pin",
]

PIN_COMMANDS = frozenset(
    {
        Command.VERIFY_SECURITY_PIN,
        Command.UPDATE_TIME,
        Command.REQUEST_AUTHORIZATION_ENTRIES,
        Command.UPDATE_AUTHORIZATION,
        Command.REMOVE_USER_AUTHORIZATION,
        Command.ADD_KEYPAD_CODE,
        Command.REQUEST_KEYPAD_CODES,
        Command.UPDATE_KEYPAD_CODE,
        Command.REMOVE_KEYPAD_CODE,
        Command.REQUEST_LOG_ENTRIES,
        Command.ENABLE_LOGGING,
    }
)
"""The commands that carry the security PIN."""
CHALLENGE_COMMANDS = PIN_COMMANDS | {Command.LOCK_ACTION, Command.REQUEST_CONFIG}


def _with_pin(command: Command, fields: bytes, pin: int, ultra: bool) -> Request:
    tail = encode_pin(pin, ultra=ultra)
    return Request(command, lambda nonce: fields + nonce + tail)


def _until(command: Command, answer: Command) -> Request:
    return Request(command, lambda nonce: nonce, done=lambda m: m.command == answer)


def keyturner_states() -> Request:
    return request_data(Command.KEYTURNER_STATES)


def battery_report() -> Request:
    return request_data(Command.BATTERY_REPORT)


def lock_action(action: int, app_id: int, flags: int = 0) -> Request:
    """Answered ACCEPTED, keyturner states while the motor runs, then COMPLETE."""
    fields = bytes([action]) + struct.pack("<I", app_id) + bytes([flags])
    return Request(Command.LOCK_ACTION, lambda nonce: fields + nonce)


def read_config() -> Request:
    return _until(Command.REQUEST_CONFIG, Command.CONFIG)


def verify_security_pin(pin: int, *, ultra: bool) -> Request:
    return _with_pin(Command.VERIFY_SECURITY_PIN, b"", pin, ultra)


def update_time(moment: dt.datetime, pin: int, *, ultra: bool) -> Request:
    return _with_pin(Command.UPDATE_TIME, encode_datetime(moment), pin, ultra)


def list_authorizations(offset: int, count: int, pin: int, *, ultra: bool) -> Request:
    return _with_pin(
        Command.REQUEST_AUTHORIZATION_ENTRIES, struct.pack("<HH", offset, count), pin, ultra
    )


def update_authorization(
    auth_id: int,
    name: str,
    enabled: bool,
    remote_allowed: bool,
    time_limited: bool,
    limit: TimeLimit,
    pin: int,
    *,
    ultra: bool,
) -> Request:
    fields = update_auth_payload(auth_id, name, enabled, remote_allowed, time_limited, limit)
    return _with_pin(Command.UPDATE_AUTHORIZATION, fields, pin, ultra)


def remove_authorization(auth_id: int, pin: int, *, ultra: bool) -> Request:
    return _with_pin(Command.REMOVE_USER_AUTHORIZATION, struct.pack("<I", auth_id), pin, ultra)


def add_keypad_code(
    code: int, name: str, time_limited: bool, limit: TimeLimit, pin: int, *, ultra: bool
) -> Request:
    """Answered KEYPAD_CODE_ID with the new entry's id."""
    tail = encode_pin(pin, ultra=ultra)
    fields = add_code_payload(code, name, time_limited, limit)
    return Request(
        Command.ADD_KEYPAD_CODE,
        lambda nonce: fields + nonce + tail,
        done=lambda m: m.command == Command.KEYPAD_CODE_ID,
    )


def list_keypad_codes(offset: int, count: int, pin: int, *, ultra: bool) -> Request:
    """Answered KEYPAD_CODE_COUNT, a KEYPAD_CODE per entry, then COMPLETE."""
    return _with_pin(Command.REQUEST_KEYPAD_CODES, struct.pack("<HH", offset, count), pin, ultra)


def update_keypad_code(
    code_id: int,
    code: int,
    name: str,
    enabled: bool,
    time_limited: bool,
    limit: TimeLimit,
    pin: int,
    *,
    ultra: bool,
) -> Request:
    fields = update_code_payload(code_id, code, name, enabled, time_limited, limit)
    return _with_pin(Command.UPDATE_KEYPAD_CODE, fields, pin, ultra)


def remove_keypad_code(code_id: int, pin: int, *, ultra: bool) -> Request:
    return _with_pin(Command.REMOVE_KEYPAD_CODE, struct.pack("<H", code_id), pin, ultra)


def request_log_entries(
    start_index: int, count: int, pin: int, *, newest_first: bool = False, ultra: bool
) -> Request:
    """Answered LOG_ENTRY_COUNT, a LOG_ENTRY per entry, then COMPLETE."""
    fields = request_log_payload(start_index, count, newest_first, True)
    return _with_pin(Command.REQUEST_LOG_ENTRIES, fields, pin, ultra)


def enable_logging(enabled: bool, pin: int, *, ultra: bool) -> Request:
    return _with_pin(Command.ENABLE_LOGGING, bytes([enabled]), pin, ultra)


@dataclass(frozen=True, slots=True)
class Tail:
    """A request as the lock reads it: the command's own fields, the challenge nonce it
    answers (None when it needs none) and the security PIN (None when it carries none)."""

    fields: bytes
    nonce: bytes | None
    pin: int | None


def split_tail(message: Message, *, ultra: bool) -> Tail:
    """The lock's reading of a request's trailing nonce and PIN."""
    payload = message.payload
    if message.command not in CHALLENGE_COMMANDS:
        return Tail(payload, None, None)
    pin_size = (4 if ultra else 2) if message.command in PIN_COMMANDS else 0
    if len(payload) < 32 + pin_size:
        raise RemoteProtocolError(f"a {message.name()} is too short for its nonce and PIN")
    end = len(payload) - pin_size
    pin = None
    if pin_size:
        pin = struct.unpack("<I" if ultra else "<H", payload[end:])[0]
    return Tail(payload[: end - 32], payload[end - 32 : end], pin)
