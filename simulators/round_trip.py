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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["ModelledWaits", "within_round_trip"]

_Answer = TypeVar("_Answer")


@dataclass
class ModelledWaits:
    """The latency a cloud charged, round trips that overlap counted once: what a client's
    conversation with it cannot take less than, requests sent at once included (a benchmark's
    floor; counting requests x latency would overstate it)."""

    seconds: float = 0.0
    _covered_until: float = float("-inf")

    def charge(self, start: float, end: float) -> None:
        """One round trip's window; requests arrive in time order, so each adds only what
        lies past the windows before it."""
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
