"""Benchmark: N unlocks (online, then offline) against the simulator, over the modelled minimum.

The modelled minimum is what the protocol cannot avoid under the stated latency model:
the first advertisement, connection setup, two ATT round trips (subscribe, read the session),
one cloud round trip (online only), and one write→answer round trip per packet. The ratio of
the measured median to it is the overhead of everything else (bleak, the socket to the
simulated radio, HTTP, the store's durable outbox write, our own code).
Target: ≤ 1.10 now, ≤ 1.05 later.

The warm-up unlock sets the lock up (setup + unlock packets); its key record is uploaded before
measuring, so measured online unlocks are the steady state of one packet.

    .venv/bin/python scripts/bench/unlock.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time

from blelock.config import Settings, load_settings
from blelock.jobs import context, open_store
from blelock.model import MacAddress, parse_mac
from blelock.vendors.base import Mode
from blelock.vendors.noke import jobs
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from blelock.vendors.noke.values import Action, Outcome
from blelock.vendors.outbox import drain_outbox
from simulators.radio import LatencyModel
from simulators.world import WorldSpec, build_world, serve_world

MODEL = LatencyModel(
    advertising_interval_s=0.050,
    connect_s=0.100,
    connection_interval_s=0.030,
    write_round_trip_s=0.030,
)
CLOUD_LATENCY_S = 0.040


def modelled_minimum(packets: int, *, online: bool) -> float:
    return (
        MODEL.advertising_interval_s
        + MODEL.connect_s
        + 2 * MODEL.connection_interval_s  # subscribe (CCCD write), read the session
        + (CLOUD_LATENCY_S if online else 0.0)
        + packets * MODEL.write_round_trip_s
    )


async def visit(
    mac: MacAddress, action: Action, settings: Settings, *, mode: Mode = "auto"
) -> Outcome:
    """One visit as a command runs it: the store opened, the lock found, the visit."""
    async with open_store(settings) as store:
        return await jobs.visit(context(NOKE, settings, store), mac, action, mode=mode)


async def bench(runs: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ |= {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch}
        spec = WorldSpec(locks=1, seed=3, latency=MODEL, cloud_latency_s=CLOUD_LATENCY_S)
        async with serve_world(build_world(spec)) as running:
            os.environ["BLELOCK_SIM_RADIO"] = running.radio_address
            settings = load_settings(environ=os.environ | running.environment, read_file=False)
            mac = parse_mac(running.world.locks[0].mac)
            await visit(mac, Action.UNLOCK, settings)  # warm-up: imports, setup of a new lock
            async with open_store(settings) as store, NokeCloud.from_settings(settings) as cloud:
                await drain_outbox(cloud, store.outbox(NOKE.name))
                keys = jobs.key_store(context(NOKE, settings, store))
                await jobs.refresh_offline_keys(cloud, keys, macs=[mac], issue_for=["bench"])
            print(
                f"model: adv {MODEL.advertising_interval_s * 1e3:.0f} ms, connect "
                f"{MODEL.connect_s * 1e3:.0f} ms, ATT {MODEL.connection_interval_s * 1e3:.0f} "
                f"ms, write→answer {MODEL.write_round_trip_s * 1e3:.0f} ms, cloud "
                f"{CLOUD_LATENCY_S * 1e3:.0f} ms"
            )
            for mode in ("online", "offline"):
                times, packets = [], set()
                for _ in range(runs):
                    started = time.perf_counter()
                    outcome = await visit(mac, Action.UNLOCK, settings, mode=mode)
                    times.append(time.perf_counter() - started)
                    packets.add(outcome.packets_sent)
                (sent,) = packets
                median = statistics.median(times)
                floor = modelled_minimum(sent, online=mode == "online")
                print(
                    f"{mode:>7}: {runs} runs, {sent} packet(s): median {median * 1e3:.1f} ms, "
                    f"min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}; modelled minimum "
                    f"{floor * 1e3:.1f} ms; ratio {median / floor:.3f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(bench(parser.parse_args().runs))


if __name__ == "__main__":
    main()
