"""Small byte helpers shared by the protocol modules. Pure; raise only ProtocolError."""

from __future__ import annotations

import zlib

from blelock.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["crc32", "expect_length", "hex_bytes", "u16le", "u32le"]


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
