"""Byte helpers of the Keyless stand-in: the bounds-checked reader and the field encodings
(length-prefixed blobs, UUIDs as 16 raw bytes, times as Unix seconds, signed blobs) that the
credentials and the messages are built from. Pure; raise only ProtocolError.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from blelock.errors import LocalProtocolError, RemoteProtocolError
from blelock.vendors.keyless.protocol._limits import LIMITS

# === byte helpers ===============================================================================


class _Reader:
    """Bounds-checked reads; every failure is a RemoteProtocolError naming ``what``."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = bytes(data)
        self._at = 0
        self._what = what

    def take(self, size: int) -> bytes:
        if self._at + size > len(self._data):
            raise RemoteProtocolError(f"{self._what} is truncated")
        chunk = self._data[self._at : self._at + size]
        self._at += size
        return chunk

    @property
    def position(self) -> int:
        return self._at

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def sint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big", signed=True)

    def blob(self) -> bytes:
        return self.take(self.uint(2))

    def end(self) -> None:
        if self._at != len(self._data):
            raise RemoteProtocolError(f"{self._what} has {len(self._data) - self._at} extra bytes")


def _blob(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise LocalProtocolError("a field is longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def _uuid_bytes(text: str) -> bytes:
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        raise LocalProtocolError(f"{text!r} is not a UUID") from None


def _uuid_text(data: bytes) -> str:
    return str(uuid.UUID(bytes=data))


def _seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise LocalProtocolError("times on the wire are aware UTC datetimes")
    return int(moment.timestamp())


def _moment(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise RemoteProtocolError(f"time {seconds} is out of range") from None


def _signed_blob(body: bytes, signature: bytes) -> bytes:
    return _blob(body) + signature


def _split_signed(blob: bytes, what: str) -> tuple[bytes, bytes]:
    reader = _Reader(blob, what)
    body = reader.blob()
    signature = reader.take(len(blob) - 2 - len(body))
    if not 8 <= len(signature) <= LIMITS.max_signature_size:
        raise RemoteProtocolError(f"{what}: the signature is {len(signature)} bytes")
    return body, signature
