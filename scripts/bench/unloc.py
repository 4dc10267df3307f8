"""Benchmark: Unloc key management against the simulated Unloc over real HTTP on 127.0.0.1.

The simulated cloud is served from its own thread (its own event loop), so the client's loop is
the companion's alone; jobs end at once (job delay 0): what is timed is blelock's part and the
loopback round trips, not Unloc's vendor lock systems.

* issue:  one key made end to end (create → poll the job → read the key back), per key,
* batch:  one batch of N keys (one create, one job, N key reads),
* list:   every key of the project listed, at the largest page (2500) and at 500 a page,
* revoke: one key revoked.

    .venv/bin/python scripts/bench/unloc.py [--keys 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial

from pydantic import SecretStr

from blelock.vendors.unloc.access import issue_keys
from blelock.vendors.unloc.cloud import UnlocCloud
from blelock.vendors.unloc.models import new_key
from simulators.in_thread import served_in_thread
from simulators.unloc_cloud import UnlocState, WallClock, unloc_app
from simulators.world import _serve_http


def figures(name: str, samples: list[float], per: int = 1) -> None:
    ms = sorted(1000 * s / per for s in samples)
    print(f"{name:<34} min {ms[0]:8.2f}  median {statistics.median(ms):8.2f}  "
          f"max {ms[-1]:8.2f} ms")  # fmt: skip


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def bench(url: str, state: UnlocState, keys: int, runs: int) -> None:
    lock = next(iter(state.locks))
    cloud = UnlocCloud(url, state.client_id, SecretStr(state.client_secret), state.project_id)
    async with cloud:
        await cloud.locks()  # the token, once

        made = [new_key(lockId=lock, appUserId=f"+4790{n:06d}") for n in range(keys)]
        singles = [await timed(partial(issue_keys, cloud, [one])) for one in made]
        figures("issue one key (create, job, read)", singles)
        batches = [await timed(partial(issue_keys, cloud, made)) for _ in range(runs)]
        figures(f"batch of {keys} keys, per key", batches, keys)
        total = len(state.keys)
        for page in (2500, 500):
            lists = [await timed(partial(_drain, cloud, page)) for _ in range(runs)]
            figures(f"list {total} keys, {page} a page", lists)
        ids = list(state.keys)[:keys]
        revokes = [await timed(partial(cloud.revoke_key, key_id)) for key_id in ids]
        figures("revoke one key", revokes)
        print(f"tokens fetched for all of it: {cloud.auth.tokens_fetched}")


async def _drain(cloud: UnlocCloud, page: int) -> int:
    return len([k async for k in cloud.list_keys(limit=page)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    clock = WallClock()
    state = UnlocState.create(clock, job_delay=dt.timedelta(0))
    state.add_lock("Unit 1", "Europe/Oslo")
    with served_in_thread(lambda: _serve_http(unloc_app(state, clock))) as url:
        asyncio.run(bench(url, state, args.keys, args.runs))


if __name__ == "__main__":
    main()
