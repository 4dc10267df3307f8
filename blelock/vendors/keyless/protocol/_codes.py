"""The Keyless stand-in's result codes (one per refusal reason) and commands."""

from __future__ import annotations

import enum

from blelock.errors import RemoteProtocolError
from blelock.protocol._bytes import OpenByteEnum

# === result codes and commands ==================================================================


class ResultCode(OpenByteEnum):
    """The lock's answer; one code per refusal reason. Unknown values stay readable."""

    OK = 0x00
    MALFORMED = 0x01
    STALE_NONCE = 0x02
    BAD_SIGNATURE = 0x03
    WRONG_LOCK = 0x04
    WRONG_LOCK_KEY = 0x05
    BAD_PROOF = 0x06
    REVOKED = 0x07
    NOT_YET_VALID = 0x08
    EXPIRED = 0x09
    WRONG_OPERATION = 0x0A
    BAD_REVOCATION_LIST = 0x0B
    NO_PENDING_KEY = 0x0C
    CERTIFICATE_MISMATCH = 0x0D
    TIME_REFUSED = 0x0E
    AUDIT_FULL = 0x0F
    """Every entry the lock keeps is authenticated and not yet collected: it refuses to act
    rather than forget one (a READ_AUDIT still works)."""


UNAUTHENTICATED_REFUSALS = frozenset(
    {
        ResultCode.MALFORMED,
        ResultCode.BAD_REVOCATION_LIST,
        ResultCode.STALE_NONCE,
        ResultCode.BAD_SIGNATURE,
        ResultCode.WRONG_LOCK,
        ResultCode.WRONG_LOCK_KEY,
        ResultCode.BAD_PROOF,
    }
)
"""Refusals decided before the requester's proof held: anyone with a radio can cause them, so
they never cost a signed audit entry each, and never name a device (they are counted in one
UNAUTHENTICATED summary entry)."""


class AuditKind(enum.IntEnum):
    REQUEST = 1
    """One authenticated request (the proof held), its command and result."""
    UNAUTHENTICATED = 2
    """``count`` requests refused before any proof held, since the previous entry."""
    DROPPED = 3
    """``count`` sequence numbers the lock had to drop to make room (never an uncollected
    REQUEST entry): the collector sees a gap of exactly that many, explained."""


class Command(enum.IntEnum):
    OPEN = 0x01
    UPDATE_FIRMWARE = 0x02
    UPDATE_TIME = 0x03
    READ_AUDIT = 0x10
    START_REKEY = 0x20
    INSTALL_CERTIFICATE = 0x21


def _command(value: int) -> Command:
    try:
        return Command(value)
    except ValueError:
        raise RemoteProtocolError(f"unknown command 0x{value:02X}") from None
