"""Nokē's own values: what a visit asks of the lock, what it achieved, what the cloud issues
for offline use."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from blelock.model import LogRecord, MacAddress

__all__ = ["Action", "ListedKeys", "OfflineGrant", "Outcome"]


class Action(enum.Enum):
    UNLOCK = "unlock"
    UNSHACKLE = "unshackle"
    FIRMWARE_UPDATE = "fwupdate"
    """Put the lock into its bootloader (the cloud's /fwupdate/ command); DFU follows."""


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
    uploaded: int = 0
    """Records the cloud acknowledged right after the visit (this visit's and any older)."""
    drained: bool = False
    """The outbox was drained right after the visit (another drain running at the same time
    may have sent some of them): none of its records waits for the next sync."""


class OfflineGrant(NamedTuple):
    """What the cloud issues for offline use: a key and the unlock command it encrypts.

    Key material never appears in repr or str (and so never in logs or tracebacks).

    A tuple, not a dataclass: a fleet's sync makes half a million of them, a chunk at a time,
    and a tuple of strings and bytes costs half the time to make and drops out of the garbage
    collector's tracking, where each frozen dataclass was walked by every collection that
    promoted it."""

    lock_id: MacAddress
    tracking_key: str
    offline_key: bytes
    unlock_command: bytes

    def __repr__(self) -> str:
        return f"OfflineGrant(lock_id={self.lock_id!r}, tracking_key={self.tracking_key!r})"

    def __str__(self) -> str:
        return repr(self)


class ListedKeys:
    """The offline keys one cloud answer listed, lock by lock: ``by_lock[mac][tracking key]``
    is (offline key, unlock command). A key listed twice: the last one wins.

    What a fleet's sync hands the cache: one entry a lock, where a list of OfflineGrants was one
    tuple a key that the cache then grouped by lock again (a tenth of a 100k-lock sync's CPU).
    Key material never appears in its repr or str."""

    __slots__ = ("by_lock",)

    def __init__(self) -> None:
        self.by_lock: dict[str, dict[str, tuple[bytes, bytes]]] = {}

    @classmethod
    def of(cls, grants: Iterable[OfflineGrant]) -> ListedKeys:
        listed = cls()
        for grant in grants:
            listed.add(grant.lock_id, grant.tracking_key, grant.offline_key, grant.unlock_command)
        return listed

    def add(self, lock_id: str, tracking_key: str, offline_key: bytes, command: bytes) -> None:
        self.by_lock.setdefault(lock_id, {})[tracking_key] = (offline_key, command)

    def __len__(self) -> int:
        """The keys listed (each once)."""
        return sum(len(keys) for keys in self.by_lock.values())

    def __repr__(self) -> str:
        return f"ListedKeys({len(self.by_lock)} locks, {len(self)} keys)"

    def __str__(self) -> str:
        return repr(self)
