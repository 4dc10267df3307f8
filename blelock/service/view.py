"""The kiosk's live view: every vendor's locks heard by the scan loop, and the battery level
their last visit reported (most adverts carry none)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace

from blelock.clock import Clock
from blelock.model import Sighting
from blelock.transport.scan import Found

__all__ = ["IN_RANGE_S", "LiveView", "SeenLock"]

IN_RANGE_S = 60.0
"""A lock unheard this long is no longer listed as in range (a connected lock stops
advertising, so a short visit must not make it vanish)."""

_Key = tuple[str, str]
"""(vendor, lock id): two vendors may write the same id."""


@dataclass(frozen=True, slots=True)
class SeenLock:
    sighting: Sighting
    found: Found
    last_seen: dt.datetime
    seen_monotonic: float
    battery_mv: int | None
    """From the lock's last visit (None until one reported it)."""


class LiveView:
    """What the scan windows heard, by vendor and lock id."""

    def __init__(self, clock: Clock, scan_window: float) -> None:
        self._clock = clock
        self._scan_window = scan_window
        self._seen: dict[_Key, SeenLock] = {}
        self._batteries: dict[_Key, int] = {}

    def record(self, heard: Iterable[Found]) -> None:
        """One scan window's sightings."""
        now, monotonic = self._clock.now_utc(), self._clock.monotonic()
        for found in heard:
            key = (found.sighting.vendor, found.sighting.lock_id)
            self._seen[key] = SeenLock(
                found.sighting, found, now, monotonic, self._batteries.get(key)
            )

    def note_battery(self, vendor: str, lock_id: str, battery_mv: int) -> None:
        self._batteries[vendor, lock_id] = battery_mv

    def owner(self, ids: Iterable[tuple[str, str]]) -> str | None:
        """Of the (vendor, lock id) pairs a lock id could be, the vendor whose lock was heard
        most recently; None when none was heard."""
        heard = [self._seen[key] for key in ids if key in self._seen]
        if not heard:
            return None
        return max(heard, key=lambda seen: seen.seen_monotonic).sighting.vendor

    def fresh(self, vendor: str, lock_id: str) -> Found | None:
        """The lock's sighting when it advertised within the last window or the one before,
        so a visit need not scan first."""
        seen = self._seen.get((vendor, lock_id))
        if seen is None or self._clock.monotonic() - seen.seen_monotonic > 2 * self._scan_window:
            return None
        return seen.found

    def in_range(self) -> list[SeenLock]:
        now = self._clock.monotonic()
        horizon = max(IN_RANGE_S, 2 * self._scan_window)
        return sorted(
            (
                replace(seen, battery_mv=self._batteries.get(key, seen.battery_mv))
                for key, seen in self._seen.items()
                if now - seen.seen_monotonic <= horizon
            ),
            key=lambda seen: (seen.sighting.lock_id, seen.sighting.vendor),
        )
