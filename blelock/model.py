"""Domain values shared by every layer: plain frozen dataclasses and enums, no I/O."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import NewType

from blelock.errors import UsageError

__all__ = [
    "Action",
    "LockState",
    "LogRecord",
    "MacAddress",
    "OfflineGrant",
    "Outcome",
    "Sighting",
    "Vendor",
    "parse_mac",
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


class Vendor(enum.Enum):
    NOKE = "noke"
    KEYLESS = "keyless"


class LockState(enum.Enum):
    UNKNOWN = "unknown"
    LOCKED = "locked"
    UNLOCKED = "unlocked"
    UNSHACKLED = "unshackled"
    UNLOCKING = "unlocking"
    UNSHACKLING = "unshackling"
    LOCKED_NO_MAGNET = "locked-no-magnet"


class Action(enum.Enum):
    UNLOCK = "unlock"
    UNSHACKLE = "unshackle"
    FIRMWARE_UPDATE = "fwupdate"
    """Put the lock into its bootloader (the cloud's /fwupdate/ command); DFU follows."""


@dataclass(frozen=True, slots=True)
class Sighting:
    """One lock seen on the air."""

    vendor: Vendor
    lock_id: str
    """A MAC for Nokē, the lockingDeviceId for Keyless."""
    address: str
    """What the Bluetooth stack connects to (a random address, or a CoreBluetooth UUID)."""
    name: str
    hardware: str
    firmware: str | None
    state: LockState
    rssi: int | None


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A record the lock gave for its vendor's cloud, kept until the cloud acknowledged it."""

    lock_id: str
    """The lock as its vendor's cloud names it: a MAC for Nokē, a lockingDeviceId for Keyless."""
    session: str
    """The session (hex) of the connection the record arrived on; the cloud needs it to decode."""
    received_at: int
    """Unix seconds when the record arrived."""
    payload: str
    """The record as the lock sent it, hex."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one visit that opened a lock achieved (a visit that did not raises instead)."""

    lock_id: MacAddress
    action: Action
    battery_mv: int | None
    packets_sent: int
    attempts: int
    logs: tuple[LogRecord, ...] = field(default=())
    offline: bool = False
    """Opened with a cached offline key rather than a command from the cloud."""


@dataclass(frozen=True, slots=True)
class OfflineGrant:
    """What the cloud issues for offline use: a key and the unlock command it encrypts.

    Key material never appears in repr (and so never in logs or tracebacks)."""

    lock_id: MacAddress
    tracking_key: str
    offline_key: bytes = field(repr=False)
    unlock_command: bytes = field(repr=False)
