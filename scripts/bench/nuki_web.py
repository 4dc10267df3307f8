"""Benchmark: a keypad code's life over the Nuki Web API — add, update, remove, each confirmed
by reading back — against the simulated Web API on 127.0.0.1 (real HTTP, uvicorn).

The simulator runs on a manual clock: the lock's delay (``--delay``, simulated seconds) costs
polls, not wall time. So the figure is blelock's own cost: requests times round trip. The modelled
minimum is the number of requests the operation needs at best (its checks, the write, and one
read-back per poll the delay forces) times the median round trip of one bare ``GET /smartlock``.

    .venv/bin/python scripts/bench/nuki_web.py [--runs 30] [--delay 5] [--poll 1]

Prints, per operation: wall ms min / median / max, requests per run, the modelled minimum and
the ratio of the median to it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable

from pydantic import SecretStr

from blelock.cloud._http import RetryPolicy
from blelock.vendors.nuki.web.client import NukiWeb
from blelock.vendors.nuki.web.ops import (
    AuthChanges,
    add_keypad_code,
    remove_keypad_code,
    update_keypad_code,
)
from blelock.vendors.nuki.web.window import AccessWindow
from simulators.nuki_web import ManualClock, NukiWebState, nuki_web_app
from simulators.world import _serve_http

TOKEN = "bench-nuki-web-token-0123456789"
LOCK = 17_001


async def _timed(runs: int, step: Callable[[int], Awaitable[object]]) -> list[float]:
    times = []
    for n in range(runs):
        start = time.perf_counter()
        await step(n)
        times.append((time.perf_counter() - start) * 1000)
    return times


async def main(runs: int, delay: float, poll: float) -> None:
    clock = ManualClock()
    state = NukiWebState(api_token=TOKEN, clock=clock, delay_s=delay)
    state.add_lock(LOCK, "Bench door")
    window = AccessWindow.parse(from_date="2030-03-01T00:00:00Z", daily="09:00-17:00")
    async with (
        _serve_http(nuki_web_app(state)) as url,
        NukiWeb(url, TOKEN, clock=clock, poll_s=poll, retry=RetryPolicy(attempts=1)) as web,
    ):
        await web.smartlocks()  # connection up
        bare = await _timed(max(runs, 50), lambda n: web.smartlocks())
        rtt = statistics.median(bare)
        codes = [f"{3 + n // 81 % 7}{4 + n // 9 % 6}{1 + n % 9}{5}{6}{7}" for n in range(runs)]
        ids: list[str] = []

        async def add(n: int) -> None:
            ids.append((await add_keypad_code(web, LOCK, SecretStr(codes[n]), f"c{n}", window)).id)

        async def update(n: int) -> None:
            await update_keypad_code(web, LOCK, ids[n], AuthChanges(name=f"u{n}"))

        async def remove(n: int) -> None:
            await remove_keypad_code(web, LOCK, ids[n])

        polls = math.ceil(delay / poll) + 1
        # add: GET lock, GET codes, PUT, read-backs; update/remove: GET entries, write, read-backs
        plan = {
            "add": (add, 3 + polls),
            "update": (update, 2 + polls),
            "remove": (remove, 2 + polls),
        }
        print(
            f"bare GET /smartlock round trip: median {rtt:.2f} ms (min {min(bare):.2f}, "
            f"max {max(bare):.2f}); lock delay {delay:g} s simulated, poll {poll:g} s"
        )
        for name, (step, least) in plan.items():
            before = sum(state.requests.values())
            times = await _timed(runs, step)
            per_run = (sum(state.requests.values()) - before) / runs
            floor = least * rtt
            print(
                f"{name:>6}: min {min(times):6.2f}  median {statistics.median(times):6.2f}  "
                f"max {max(times):6.2f} ms  | {per_run:.1f} requests/run (least {least})  "
                f"| modelled minimum {floor:.2f} ms, ratio {statistics.median(times) / floor:.2f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--delay", type=float, default=5.0)
    parser.add_argument("--poll", type=float, default=1.0)
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.delay, options.poll))
