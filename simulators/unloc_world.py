"""Unloc's part of the simulated world: one project with locks in a few time zones and an API
client's credentials, served by :mod:`simulators.unloc_cloud` (hooked in by ``world.py``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from simulators.unloc_cloud import UnlocState, WallClock, unloc_app

__all__ = ["ZONES", "UnlocWorld", "build_unloc_world"]

ZONES = ("Europe/Oslo", "America/New_York", "Australia/Sydney")
"""Locks' time zones in turn: one with the European, one with the American and one with the
southern daylight-saving calendar."""
_LOADED = tuple(ZoneInfo(zone) for zone in ZONES)
"""Read at import, and held: zoneinfo then hands out these without touching the disk, so a world
built inside an event loop never blocks it on a zone file."""


@dataclass
class UnlocWorld:
    state: UnlocState
    clock: WallClock | None
    """The process's clock (wall clock + offset, moved by ``/_sim/clock``); None: a test's."""

    def app(self) -> Any:
        return unloc_app(self.state, self.clock)

    def environment(self, url: str) -> dict[str, str]:
        return {
            "BLELOCK_UNLOC_URL": url,
            "BLELOCK_UNLOC_CLIENT_ID": self.state.client_id,
            "BLELOCK_UNLOC_CLIENT_SECRET": self.state.client_secret,
            "BLELOCK_UNLOC_PROJECT_ID": self.state.project_id,
        }

    def demo_setup(self, url: str) -> dict[str, Any]:
        """What ``blelock demo``'s Unloc step is handed: a lock, and the clock to move."""
        lock = next(iter(self.state.locks.values()))
        return {"lock_id": lock.id, "timezone": lock.timezone, "clock_url": url + "_sim/clock"}


def build_unloc_world(
    locks: int,
    *,
    now: Callable[[], dt.datetime] | None = None,
    job_delay: dt.timedelta = dt.timedelta(seconds=0.5),
) -> UnlocWorld:
    clock = WallClock() if now is None else None
    state = UnlocState.create(now or clock or WallClock(), job_delay=job_delay)
    connection = state.add_connection()
    for index in range(locks):
        state.add_lock(f"Unit {index + 1}", ZONES[index % len(ZONES)], connection.id)
    return UnlocWorld(state, clock)
