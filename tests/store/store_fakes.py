"""A clock for the store's tests (a module of its own: test modules import it by name)."""

from __future__ import annotations

import datetime as dt

START = dt.datetime(2026, 11, 20, 14, 2, tzinfo=dt.UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def now_utc(self) -> dt.datetime:
        return self.now

    def monotonic(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.advance(dt.timedelta(seconds=seconds))

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta
