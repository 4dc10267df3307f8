"""Benchmark: N online unlocks against the simulator, measured against the modelled minimum.

The modelled minimum is what the protocol cannot avoid under the stated latency model:
the first advertisement, connection setup, two ATT round trips (subscribe, read the session),
one cloud round trip, and one write→answer round trip per packet. The ratio of the measured
median to it is the overhead of everything else (bleak, the socket to the simulated radio,
HTTP, our own code). Target: ≤ 1.10 now, ≤ 1.05 later.

    .venv/bin/python scripts/bench/unlock.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from blelock.cli.unlock import visit
from blelock.config import load_settings
from blelock.model import Action, parse_mac
from simulators.radio import LatencyModel
from simulators.world import WorldSpec, build_world, serve_world

MODEL = LatencyModel(
    advertising_interval_s=0.050,
    connect_s=0.100,
    connection_interval_s=0.030,
    write_round_trip_s=0.030,
)
CLOUD_LATENCY_S = 0.040


def modelled_minimum(packets: int) -> float:
    return (
        MODEL.advertising_interval_s
        + MODEL.connect_s
        + 2 * MODEL.connection_interval_s  # subscribe (CCCD write), read the session
        + CLOUD_LATENCY_S
        + packets * MODEL.write_round_trip_s
    )


async def bench(runs: int) -> None:
    spec = WorldSpec(locks=1, seed=3, latency=MODEL, cloud_latency_s=CLOUD_LATENCY_S)
    async with serve_world(build_world(spec)) as running:
        os.environ["BLELOCK_SIM_RADIO"] = running.radio_address
        settings = load_settings(environ=running.environment, read_file=False)
        mac = parse_mac(running.world.locks[0].mac)
        await visit(mac, Action.UNLOCK, settings)  # warm-up: imports, first connections
        times, packets = [], set()
        for _ in range(runs):
            started = time.perf_counter()
            outcome = await visit(mac, Action.UNLOCK, settings)
            times.append(time.perf_counter() - started)
            packets.add(outcome.packets_sent)
    (sent,) = packets
    median, floor = statistics.median(times), modelled_minimum(sent)
    print(
        f"model: adv {MODEL.advertising_interval_s * 1e3:.0f} ms, connect "
        f"{MODEL.connect_s * 1e3:.0f} ms, ATT {MODEL.connection_interval_s * 1e3:.0f} ms, "
        f"write→answer {MODEL.write_round_trip_s * 1e3:.0f} ms, cloud "
        f"{CLOUD_LATENCY_S * 1e3:.0f} ms; {sent} packets per unlock"
    )
    print(
        f"runs {runs}: median {median * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms, "
        f"max {max(times) * 1e3:.1f} ms"
    )
    print(f"modelled minimum {floor * 1e3:.1f} ms; ratio median/minimum {median / floor:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(bench(parser.parse_args().runs))


if __name__ == "__main__":
    main()
