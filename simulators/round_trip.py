"""How long a simulated cloud takes to answer: the stated latency, its own work included.

A vendor's latency, as its users measure it, runs from the request leaving the client to the
answer arriving, and the server's work happens inside it. A simulator that slept the whole
latency and then did its work would add its own Python time to every round trip, time a real
cloud does not add (and, sharing a process with the client, time the client is blamed for).
So the simulated cloud answers at once and holds the answer until the latency since the
request arrived has passed: later only when its work itself took longer. (Sleeping half the
latency before the work, for the request's way there, was tried: a second timer per request
cost more than it modelled; and a client that gives up before the answer finds the request
acted on either way.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["ModelledWaits", "WaitLog", "within_round_trip"]

_Answer = TypeVar("_Answer")


@dataclass
class WaitLog:
    """Where a world's latency models write down each wait they imposed, as a window on the
    event loop's clock: a cloud's round trip, a link's connection and ATT waits, a scan's wait
    for a lock's first advert. A client's floor over a stretch of time is the length of the
    union of the windows within it: what it did at once (listening for the lock during a sync)
    is counted once, and a wait reaching past either end counts only within the stretch."""

    windows: deque[tuple[float, float, str]] = field(default_factory=lambda: deque(maxlen=4096))
    """(start, end, what): the most recent, enough for any one visit a benchmark times."""
    forgotten_until: float = float("-inf")
    """The latest end of a window the bound pushed out: a stretch reaching back before it
    cannot be told whole, and asking for one is refused rather than understated."""

    def add(self, start: float, end: float, what: str) -> None:
        if end > start:
            if len(self.windows) == self.windows.maxlen:
                self.forgotten_until = max(self.forgotten_until, self.windows[0][1])
            self.windows.append((start, end, what))

    def within(self, since: float, until: float) -> list[tuple[float, float, str]]:
        """The windows overlapping [since, until], clipped to it, in start order."""
        if since < self.forgotten_until:
            raise ValueError(
                f"waits before {self.forgotten_until:.3f} were forgotten (the log keeps "
                f"{self.windows.maxlen}); the stretch from {since:.3f} cannot be told whole"
            )
        return sorted(
            (max(start, since), min(end, until), what)
            for start, end, what in self.windows
            if end > since and start < until
        )

    def covered(
        self, since: float, until: float, *, counts: Callable[[str], bool] = lambda what: True
    ) -> float:
        """Seconds of [since, until] under at least one window that ``counts``."""
        total, reached = 0.0, since
        for start, end, what in self.within(since, until):
            if counts(what) and end > reached:
                total += end - max(start, reached)
                reached = end
        return total

    def uncovered(self, since: float, until: float) -> list[tuple[str | None, str | None, float]]:
        """Each stretch of [since, until] under no window, as (the wait it follows, the wait it
        comes before, seconds): one before each window (0.0 where the windows overlap or meet)
        and one after the last, None standing for the stretch's own ends. With
        :meth:`covered`, they add up to the whole stretch: what a client did between its waits."""
        stretches: list[tuple[str | None, str | None, float]] = []
        reached, previous = since, None
        for start, end, what in self.within(since, until):
            stretches.append((previous, what, max(0.0, start - reached)))
            reached, previous = max(reached, end), what
        stretches.append((previous, None, max(0.0, until - reached)))
        return stretches


@dataclass
class ModelledWaits:
    """The latency a cloud charged, round trips that overlap counted once: what a client's
    conversation with it cannot take less than, requests sent at once included (a benchmark's
    floor; counting requests x latency would overstate it)."""

    seconds: float = 0.0
    _covered_until: float = float("-inf")
    log: WaitLog | None = None
    """Where each round trip's window is also written (the world's, shared with its radio)."""
    what: str = "cloud"

    def charge(self, start: float, end: float) -> None:
        """One round trip's window; requests arrive in time order, so each adds only what
        lies past the windows before it."""
        if self.log is not None:
            self.log.add(start, end, self.what)
        if end > self._covered_until:
            self.seconds += end - max(start, self._covered_until)
            self._covered_until = end


async def within_round_trip(
    latency_s: float,
    answer: Callable[[], Awaitable[_Answer]],
    *,
    waits: ModelledWaits | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] | None = None,
) -> _Answer:
    """``answer()``, returned no sooner than ``latency_s`` after this call (a test may pass a
    recording ``sleep`` and its own ``clock`` to check the waits without waiting); the window
    is charged to ``waits``."""
    if latency_s <= 0:
        return await answer()
    now = clock if clock is not None else asyncio.get_running_loop().time
    due = now() + latency_s
    if waits is not None:
        waits.charge(due - latency_s, due)
    result = await answer()
    await sleep(max(0.0, due - now()))  # the rest of the round trip, less the work's time
    return result
