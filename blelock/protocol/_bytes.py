"""Small byte helpers shared by the protocol modules. Pure; raise only ProtocolError."""

from __future__ import annotations

import enum
import zlib

from blelock.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["OpenByteEnum", "crc32", "expect_length", "hex_bytes", "u16le", "u32le"]


class OpenByteEnum(enum.IntEnum):
    """A byte-valued code that keeps an unknown value readable (``UNKNOWN_0x42``) instead of
    failing to decode: a lock or bootloader newer than blelock may answer with one."""

    @classmethod
    def _missing_(cls, value: object) -> OpenByteEnum | None:
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_0x{value:02X}"
        member._value_ = value
        return member


def expect_length(data: bytes, length: int, what: str) -> bytes:
    if len(data) != length:
        raise RemoteProtocolError(f"{what} is {len(data)} bytes, expected {length}")
    return bytes(data)


def hex_bytes(text: str, length: int, what: str, *, remote: bool = True) -> bytes:
    """Exactly ``length`` bytes written as hex (either case). Stricter than the vendor libraries,
    which silently map non-hex characters to zero (noke.md §6.4)."""
    error = RemoteProtocolError if remote else LocalProtocolError
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise error(f"{what} is not hex") from None
    if len(value) != length:
        raise error(f"{what} is {len(value)} bytes, expected {length}")
    return value


def u16le(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "little")


def u32le(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "little")


def crc32(*parts: bytes) -> int:
    value = 0
    for part in parts:
        value = zlib.crc32(part, value)
    return value & 0xFFFFFFFF
