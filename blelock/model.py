"""Domain values shared by every layer: plain frozen dataclasses and enums, no I/O."""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NewType

from blelock.errors import UsageError

__all__ = [
    "Advert",
    "KeptLog",
    "KeyHealth",
    "KeyInfo",
    "LockState",
    "LogRecord",
    "MacAddress",
    "PhoneKeyRequest",
    "Sighting",
    "VisitResult",
    "WeeklyWindow",
    "parse_mac",
    "refresh_due",
]

MacAddress = NewType("MacAddress", str)
"""Upper-case, colon-separated: ``C7:E6:B0:C6:75:38``."""

_MAC_HEX = re.compile(r"[0-9A-Fa-f]{12}")


def parse_mac(text: str) -> MacAddress:
    """Accept ``aa:bb:cc:dd:ee:ff``, ``AA-BB-…`` or ``aabbccddeeff``; return the canonical form."""
    digits = text.strip().replace(":", "").replace("-", "")
    if len(text.strip()) not in (12, 17) or not _MAC_HEX.fullmatch(digits):
        raise UsageError(
            f"malformed MAC {text!r}",
            hint="write it as 12 hex digits, e.g. C7:E6:B0:C6:75:38 (see `blelock scan`)",
        )
    upper = digits.upper()
    return MacAddress(":".join(upper[i : i + 2] for i in range(0, 12, 2)))


class LockState(enum.Enum):
    UNKNOWN = "unknown"
    LOCKED = "locked"
    UNLOCKED = "unlocked"
    UNSHACKLED = "unshackled"
    UNLOCKING = "unlocking"
    UNSHACKLING = "unshackling"
    LOCKED_NO_MAGNET = "locked-no-magnet"


@dataclass(frozen=True, slots=True)
class Advert:
    """One advertisement as the Bluetooth stack reported it, free of bleak's types: what every
    vendor plugin's parser reads."""

    address: str
    """What the stack connects to (a MAC on Linux and Windows, a CoreBluetooth UUID on macOS)."""
    local_name: str | None
    manufacturer_data: Mapping[int, bytes]
    service_uuids: Sequence[str]
    service_data: Mapping[str, bytes]
    rssi: int | None


@dataclass(frozen=True, slots=True)
class Sighting:
    """One lock seen on the air."""

    vendor: str
    """The name of the vendor plugin whose parser recognised the advert."""
    lock_id: str
    """The lock as its vendor names it (canonical form of the plugin's lock-id parser)."""
    address: str
    """What the Bluetooth stack connects to (a random address, or a CoreBluetooth UUID)."""
    name: str
    hardware: str
    firmware: str | None
    state: LockState
    rssi: int | None
    flags: tuple[str, ...] = ()
    """What else the advert says, in words (e.g. "pairing mode", "state changed")."""


@dataclass(frozen=True, slots=True)
class KeptLog:
    """A log entry the companion keeps that goes to no cloud from here (a vendor whose cloud
    gets its locks' logs another way), as ``blelock logs`` shows it."""

    vendor: str
    lock_id: str
    at: dt.datetime | None
    """When it happened, by the lock's clock (None: the lock's clock was unset)."""
    summary: str


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A record the lock gave for its vendor's cloud, kept until the cloud acknowledged it."""

    lock_id: str
    """The lock as its vendor's cloud names it."""
    context: str
    """What the vendor's cloud needs beside the payload to read it, as the plugin defines it
    (for one vendor the session the record arrived on, for another the log it belongs to)."""
    received_at: int
    """Unix seconds when the record arrived."""
    payload: str
    """The record as the lock sent it, hex."""


@dataclass(frozen=True, slots=True)
class VisitResult:
    """What one operation on a lock achieved, in the same shape for every vendor (one that
    failed raises instead)."""

    lock_id: str
    vendor: str
    operation: str
    online: bool
    """The vendor's cloud took part (False: keys or codes synced earlier)."""
    logs_kept: int
    """Records the lock gave that are now in the outbox."""
    battery_mv: int | None = None
    details: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
    """The vendor's own facts about the visit (flat, JSON-ready), shown as they are."""
    logs_uploaded: bool = False
    """The visit itself drained the outbox to the vendor's cloud once its records were kept:
    nothing it kept waits for the next sync (the kiosk then runs no upkeep round for it)."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One credential cached for offline use, as `blelock keys` lists it (never its value)."""

    vendor: str
    lock_id: str
    holder: str
    """Whom the vendor issued it to (a tracking key, an operating key's id, …)."""
    kind: str
    expires_at: dt.datetime
    fetched_at: dt.datetime | None = None
    """The last sync that listed it, where the vendor's cache keeps that."""
    valid_from: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


def refresh_due(
    expires_at: dt.datetime,
    now: dt.datetime,
    horizon: dt.timedelta,
    *,
    issued_at: dt.datetime | None = None,
) -> bool:
    """Whether a cached key is due for a refresh: with less than ``horizon`` left, or, when
    its whole life (from ``issued_at``) is shorter than twice the horizon, with less than half
    of it left. A credential a vendor issues for minutes at a time would otherwise be due again
    as soon as it came, and the upkeep would sync after every visit."""
    ahead = horizon if issued_at is None else min(horizon, (expires_at - issued_at) / 2)
    return expires_at - now <= ahead


@dataclass(frozen=True, slots=True)
class KeyHealth:
    """A vendor's cached keys at a glance, for the kiosk's health."""

    cached: int
    expiring_soon: int
    """Due for a refresh (:func:`refresh_due`) and not yet refreshed."""
    expired: int
    revoked: int
    next_expiry: dt.datetime | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    """One weekly opening period in the lock's own wall-clock time (its IANA zone)."""

    weekday: int
    """0 = Monday … 6 = Sunday, as ``datetime.weekday()``."""
    start: dt.time
    end: dt.time | None = None
    """None: until the day's end (24:00)."""


@dataclass(frozen=True, slots=True)
class PhoneKeyRequest:
    """A key for a phone on one lock, which the vendor's own app then opens it with (a kiosk
    renting out a unit: the rental period and its opening hours)."""

    lock_id: str
    phone: str
    """E.164, as the vendor identifies its app's users."""
    start: dt.datetime | None = None
    """None: now."""
    end: dt.datetime | None = None
    """None: until revoked."""
    weekly: tuple[WeeklyWindow, ...] = ()
    """None given: at any time between start and end."""
