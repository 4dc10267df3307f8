"""Nuki's message frames, byte for byte as the Smart Lock API publishes them.

Unencrypted (pairing characteristic): ``command (u16 LE) | payload | CRC (u16 LE)``.
Encrypted (user-specific characteristic): ADATA ``nonce (24) | auth_id (u32 LE) | length (u16
LE)`` then the XSalsa20-Poly1305 secretbox of PDATA ``auth_id | command | payload | CRC``;
``length`` is len(PDATA) + 16 (the MAC). The CRC is CRC-16/CCITT-FALSE, which is what the
standard library's ``binascii.crc_hqx(data, 0xFFFF)`` computes.

Long frames arrive in several notifications (20 bytes each on the vendor's examples); a
:class:`Reassembler` puts them back together before anything checks a CRC.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from blelock.errors import RemoteProtocolError

__all__ = [
    "ADATA_SIZE",
    "CHUNK",
    "NONCE_SIZE",
    "Command",
    "ErrorCode",
    "Message",
    "Reassembler",
    "Sealed",
    "Status",
    "crc16",
    "decode_plain",
    "encode_plain",
    "fragment",
    "open_sealed",
    "peek_auth_id",
    "seal",
]

NONCE_SIZE = 24
"""The secretbox nonce; never used twice under one shared key."""
ADATA_SIZE = NONCE_SIZE + 4 + 2
MAC_SIZE = SecretBox.MACBYTES
CHUNK = 20
"""What one notification carries at the default ATT MTU (the vendor's examples show it)."""
_U16 = struct.Struct("<H")
_ADATA = struct.Struct("<24sIH")


class Command(enum.IntEnum):
    REQUEST_DATA = 0x0001
    PUBLIC_KEY = 0x0003
    CHALLENGE = 0x0004
    AUTHORIZATION_AUTHENTICATOR = 0x0005
    AUTHORIZATION_DATA = 0x0006
    AUTHORIZATION_ID = 0x0007
    REMOVE_USER_AUTHORIZATION = 0x0008
    REQUEST_AUTHORIZATION_ENTRIES = 0x0009
    AUTHORIZATION_ENTRY = 0x000A
    KEYTURNER_STATES = 0x000C
    LOCK_ACTION = 0x000D
    STATUS = 0x000E
    BATTERY_REPORT = 0x0011
    ERROR_REPORT = 0x0012
    REQUEST_CONFIG = 0x0014
    CONFIG = 0x0015
    AUTHORIZATION_ID_CONFIRMATION = 0x001E
    VERIFY_SECURITY_PIN = 0x0020
    UPDATE_TIME = 0x0021
    UPDATE_AUTHORIZATION = 0x0025
    AUTHORIZATION_ENTRY_COUNT = 0x0027
    REQUEST_LOG_ENTRIES = 0x0031
    LOG_ENTRY = 0x0032
    LOG_ENTRY_COUNT = 0x0033
    ENABLE_LOGGING = 0x0034
    ADD_KEYPAD_CODE = 0x0041
    KEYPAD_CODE_ID = 0x0042
    REQUEST_KEYPAD_CODES = 0x0043
    KEYPAD_CODE_COUNT = 0x0044
    KEYPAD_CODE = 0x0045
    UPDATE_KEYPAD_CODE = 0x0046
    REMOVE_KEYPAD_CODE = 0x0047
    AUTHORIZATION_INFO = 0x004C
    """Smart Lock Ultra's answer to the pairing authenticator."""


class Status(enum.IntEnum):
    COMPLETE = 0x00
    ACCEPTED = 0x01


class ErrorCode(enum.IntEnum):
    BAD_CRC = 0xFD
    BAD_LENGTH = 0xFE
    UNKNOWN = 0xFF
    P_NOT_PAIRING = 0x10
    P_BAD_AUTHENTICATOR = 0x11
    P_BAD_PARAMETER = 0x12
    P_MAX_USER = 0x13
    NOT_AUTHORIZED = 0x20
    BAD_PIN = 0x21
    BAD_NONCE = 0x22
    BAD_PARAMETER = 0x23
    INVALID_AUTH_ID = 0x24
    DISABLED = 0x25
    REMOTE_NOT_ALLOWED = 0x26
    TIME_NOT_ALLOWED = 0x27
    TOO_MANY_PIN_ATTEMPTS = 0x28
    TOO_MANY_ENTRIES = 0x29
    CODE_ALREADY_EXISTS = 0x2A
    CODE_INVALID = 0x2B
    CODE_INVALID_TIMEOUT_1 = 0x2C
    CODE_INVALID_TIMEOUT_2 = 0x2D
    CODE_INVALID_TIMEOUT_3 = 0x2E
    AUTO_UNLOCK_TOO_RECENT = 0x40
    POSITION_UNKNOWN = 0x41
    MOTOR_BLOCKED = 0x42
    CLUTCH_FAILURE = 0x43
    MOTOR_TIMEOUT = 0x44
    BUSY = 0x45
    CANCELED = 0x46
    NOT_CALIBRATED = 0x47
    MOTOR_POSITION_LIMIT = 0x48
    MOTOR_LOW_VOLTAGE = 0x49
    MOTOR_POWER_FAILURE = 0x4A
    CLUTCH_POWER_FAILURE = 0x4B
    VOLTAGE_TOO_LOW = 0x4C
    FIRMWARE_UPDATE_NEEDED = 0x4D


@dataclass(frozen=True, slots=True)
class Message:
    command: int
    """A :class:`Command` value (kept as int: a lock may send one this module does not name)."""
    payload: bytes

    def name(self) -> str:
        try:
            return Command(self.command).name
        except ValueError:
            return f"command 0x{self.command:04x}"


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0)."""
    return binascii.crc_hqx(data, 0xFFFF)


def _with_crc(body: bytes) -> bytes:
    return body + _U16.pack(crc16(body))


def _check_crc(frame: bytes, what: str) -> bytes:
    if len(frame) < 4:
        raise RemoteProtocolError(f"a {what} of {len(frame)} bytes is too short to be a frame")
    body, (crc,) = frame[:-2], _U16.unpack(frame[-2:])
    if crc16(body) != crc:
        raise RemoteProtocolError(f"a {what} failed its CRC check")
    return body


def encode_plain(command: int, payload: bytes = b"") -> bytes:
    return _with_crc(_U16.pack(command) + payload)


def decode_plain(frame: bytes) -> Message:
    body = _check_crc(frame, "frame")
    (command,) = _U16.unpack_from(body)
    return Message(command, body[2:])


@dataclass(frozen=True, slots=True)
class Sealed:
    """An encrypted frame, opened: who sent it (its auth id) and what it said."""

    nonce: bytes
    auth_id: int
    message: Message


def seal(key: bytes, auth_id: int, command: int, payload: bytes, nonce: bytes) -> bytes:
    """One encrypted frame; ``nonce`` must be fresh for ``key`` (see :class:`~._crypto.Nonces`)."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError("a secretbox nonce is 24 bytes")
    pdata = _with_crc(struct.pack("<IH", auth_id, command) + payload)
    boxed = SecretBox(key).encrypt(pdata, nonce).ciphertext
    return _ADATA.pack(nonce, auth_id, len(boxed)) + boxed


def peek_auth_id(frame: bytes) -> int:
    """The auth id in an encrypted frame's clear header (which key opens it)."""
    if len(frame) < ADATA_SIZE:
        raise RemoteProtocolError(f"an encrypted frame of {len(frame)} bytes has no header")
    return int(_ADATA.unpack_from(frame)[1])


def open_sealed(key: bytes, frame: bytes) -> Sealed:
    if len(frame) < ADATA_SIZE + MAC_SIZE + 8:
        raise RemoteProtocolError(f"an encrypted frame of {len(frame)} bytes is too short")
    nonce, auth_id, length = _ADATA.unpack_from(frame)
    boxed = frame[ADATA_SIZE:]
    if length != len(boxed):
        raise RemoteProtocolError(
            f"an encrypted frame says {length} bytes follow its header, and {len(boxed)} do"
        )
    try:
        pdata = SecretBox(key).decrypt(boxed, nonce)
    except CryptoError:
        raise RemoteProtocolError(
            "an encrypted frame did not authenticate under the shared key"
        ) from None
    body = _check_crc(pdata, "decrypted frame")
    inner, command = struct.unpack_from("<IH", body)
    if inner != auth_id:
        raise RemoteProtocolError("an encrypted frame's auth id differs inside and outside")
    return Sealed(nonce, auth_id, Message(command, body[6:]))


def fragment(frame: bytes, size: int = CHUNK) -> list[bytes]:
    """``frame`` as notifications of at most ``size`` bytes."""
    return [frame[at : at + size] for at in range(0, len(frame), size)] or [b""]


# Payload sizes of the unencrypted frames (they carry no length): a frame is whole at this size.
PLAIN_PAYLOAD_SIZES: dict[int, int] = {
    Command.REQUEST_DATA: 2,
    Command.PUBLIC_KEY: 32,
    Command.CHALLENGE: 32,
    Command.AUTHORIZATION_AUTHENTICATOR: 32,
    Command.AUTHORIZATION_DATA: 32 + 1 + 4 + 32 + 32,
    Command.AUTHORIZATION_ID: 32 + 4 + 16 + 32,
    Command.AUTHORIZATION_ID_CONFIRMATION: 32 + 4,
    Command.STATUS: 1,
    Command.ERROR_REPORT: 3,
}


class Reassembler:
    """Notifications in, whole frames out. An encrypted frame is whole when its header's
    length has arrived. An unencrypted one is whole at its command's payload size, or, for a
    command of unlisted size, when the bytes so far end in a matching CRC at a notification's
    end. A short notification at a frame's start that is a whole unencrypted frame (a lock's
    ERROR_REPORT to a sender it has no key for) is taken as that frame."""

    def __init__(self, *, encrypted: bool) -> None:
        self.encrypted = encrypted
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self._buffer and len(chunk) < CHUNK and _is_plain_error(chunk):
            return [bytes(chunk)]
        self._buffer += chunk
        frames = []
        while (size := self._whole()) is not None:
            frames.append(bytes(self._buffer[:size]))
            del self._buffer[:size]
        return frames

    def _whole(self) -> int | None:
        buffer = self._buffer
        if self.encrypted:
            if len(buffer) < ADATA_SIZE:
                return None
            size = ADATA_SIZE + int(_ADATA.unpack_from(buffer)[2])
            return size if len(buffer) >= size else None
        if len(buffer) < 4:
            return None
        (command,) = _U16.unpack_from(buffer)
        known = PLAIN_PAYLOAD_SIZES.get(command)
        if known is not None:
            size = 2 + known + 2
            return size if len(buffer) >= size else None
        (crc,) = _U16.unpack(buffer[-2:])
        return len(buffer) if crc16(bytes(buffer[:-2])) == crc else None


def _is_plain_error(chunk: bytes) -> bool:
    if len(chunk) != 2 + 3 + 2 or _U16.unpack_from(chunk)[0] != Command.ERROR_REPORT:
        return False
    return bool(crc16(chunk[:-2]) == _U16.unpack(chunk[-2:])[0])
