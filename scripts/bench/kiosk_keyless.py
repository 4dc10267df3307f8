"""Benchmark: Keyless opens through the kiosk when connection slots are scarce.

An online Keyless open syncs with the platform first (cloud round trips), then visits the lock
over the radio, then uploads what it kept. With fewer connection slots than waiting locks,
the slots set the pace: only the radio part of each open should hold one. ``--opens`` opens
over ``--locks`` simulated Keyless locks are sent at once to the kiosk's runner (in this
process, through its HTTP API on an ASGI transport) with ``--connections`` slots, under the
latency model of ``scripts/bench/unlock.py`` (cloud 40 ms a request).

Printed: the wall time of each round (min / median / max), the simulated radio's modelled
waits a visit and the platform's requests during the rounds per open (counted by the
simulators, the kiosk's background upkeep included, so a needless round trip shows), and the
ratio of the wall time to the slots' radio work back to back (``ceil(opens / slots)`` x the
radio's waits a visit). No scheduling beats that floor; the first open's sync before its visit
and the last one's upload after it come on top, so the closer the ratio is to 1, the less
besides radio work holds a slot.

    .venv/bin/python scripts/bench/kiosk_keyless.py [--opens 8] [--locks 4] [--connections 1]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import tempfile
import time

import httpx
from host import load, reference
from unlock import CLOUD_LATENCY_S, MODEL

from blelock.config import load_settings
from blelock.jobs import open_store
from blelock.service.api import create_app
from blelock.service.runner import Runner
from blelock.vendors.keyless.jobs import activate
from simulators.event_loop import run as run_precisely
from simulators.world import WorldSpec, build_world, serve_world

TOKEN = "bench-kiosk-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def bench(opens: int, locks: int, connections: int, rounds: int) -> None:
    spec = WorldSpec(
        locks=1, seed=5, latency=MODEL, cloud_latency_s=CLOUD_LATENCY_S, keyless_locks=locks
    )
    world = build_world(spec)
    keyless = world.keyless
    assert keyless is not None
    with tempfile.TemporaryDirectory() as scratch:
        async with serve_world(world) as running:
            os.environ["BLELOCK_SIM_RADIO"] = running.radio_address
            settings = load_settings(
                environ=running.environment
                | {
                    "BLELOCK_DATA_DIR": scratch,
                    "BLELOCK_KEY_DIR": scratch,
                    "BLELOCK_SERVE_TOKEN": TOKEN,
                    "BLELOCK_MAX_CONNECTIONS": str(connections),
                    "BLELOCK_LOCK_QUEUE_LIMIT": str(opens),
                    "BLELOCK_SYNC_INTERVAL": "3600",
                },
                read_file=False,
            )
            async with open_store(settings) as store:
                await activate(settings, store, keyless.invitation_code)
            assert settings.serve_token is not None
            async with (
                Runner(settings) as runner,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=create_app(runner, settings.serve_token)),
                    base_url="http://kiosk",
                    headers=AUTH,
                    timeout=120,
                ) as client,
            ):
                ids = [lock.locking_device_id for lock in keyless.locks]

                async def open_once(lock_id: str) -> None:
                    answer = await client.post(f"/v1/locks/{lock_id}/open", json={})
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["state"] == "done", answer.text

                for lock_id in ids:  # warm-up: each lock opened once, and so in view
                    await open_once(lock_id)
                print(f"start: {load()}")
                radio_before = world.radio.modelled_s
                calls_before = sum(keyless.platform.requests.values())
                walls = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    await asyncio.gather(*(open_once(ids[n % len(ids)]) for n in range(opens)))
                    walls.append(time.perf_counter() - started)
                visits = rounds * opens
                radio_each = (world.radio.modelled_s - radio_before) / visits
                calls_each = (sum(keyless.platform.requests.values()) - calls_before) / visits
    slots = min(connections, locks)
    minimum = math.ceil(opens / slots) * radio_each
    ratios = [wall / minimum for wall in walls]
    print(
        f"kiosk, Keyless: {opens} opens over {locks} locks, {connections} connection slot(s), "
        f"{rounds} rounds; {load()}"
    )
    print(
        f"  wall            min {min(walls):.3f}  median {statistics.median(walls):.3f}  "
        f"max {max(walls):.3f} s"
    )
    print(
        f"  counted         radio {radio_each * 1000:.1f} ms a visit; "
        f"{calls_each:g} platform requests an open (the upkeep's included)"
    )
    print(
        f"  radio floor     {minimum:.3f} s   ratio min {min(ratios):.3f}  "
        f"median {statistics.median(ratios):.3f}  max {max(ratios):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--opens", type=int, default=8)
    parser.add_argument("--locks", type=int, default=4)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(reference(), flush=True)
    run_precisely(bench(args.opens, args.locks, args.connections, args.rounds))


if __name__ == "__main__":
    main()
