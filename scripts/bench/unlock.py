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
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator

from blelock.config import Settings, load_settings
from blelock.jobs import context, open_store, run_operation
from blelock.model import MacAddress, VisitResult, parse_mac
from blelock.vendors.base import Mode, OperationRequest
from blelock.vendors.noke import jobs
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from blelock.vendors.outbox import drain_outbox
from simulators.radio import LatencyModel
from simulators.world import RunningWorld, WorldSpec, build_world, serve_world

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
        # Online: the commands, then the session's records uploaded at once (as Nokē's apps do).
        + (2 * CLOUD_LATENCY_S if online else 0.0)
        + packets * MODEL.write_round_trip_s
    )


async def visit(mac: MacAddress, settings: Settings, *, mode: Mode = "auto") -> VisitResult:
    """One unlock as `blelock unlock` runs it: the vendor resolved, the store opened, room for
    the records made, the lock found, the visit."""
    return await run_operation(settings, mac, OperationRequest("unlock", mode))


@contextlib.asynccontextmanager
async def served(
    spec: WorldSpec, bluez: bool
) -> AsyncIterator[tuple[RunningWorld, dict[str, str]]]:
    """The world, and the settings that reach it: through the simulated bleak backend, or
    (``bluez``) through bleak's own BlueZ backend over the emulated org.bluez."""
    world = build_world(spec)
    if bluez:
        from simulators.bluez import serve_bluez_world

        async with serve_bluez_world(world) as served_bluez:
            yield served_bluez.running, served_bluez.environment
    else:
        async with serve_world(world) as running:
            yield running, running.environment


async def bench(runs: int, bluez: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ |= {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch}
        spec = WorldSpec(locks=1, seed=3, latency=MODEL, cloud_latency_s=CLOUD_LATENCY_S)
        async with served(spec, bluez) as (running, environment):
            os.environ["BLELOCK_SIM_RADIO"] = running.radio_address
            if "DBUS_SYSTEM_BUS_ADDRESS" in environment:
                os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = environment["DBUS_SYSTEM_BUS_ADDRESS"]
            settings = load_settings(environ=os.environ | environment, read_file=False)
            print(f"backend: {'BlueZ (emulated org.bluez)' if bluez else 'simulated bleak'}")
            mac = parse_mac(running.world.locks[0].mac)
            await visit(mac, settings)  # warm-up: imports, setup of a new lock
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
                    outcome = await visit(mac, settings, mode=mode)
                    times.append(time.perf_counter() - started)
                    packets.add(int(outcome.details["packets_sent"] or 0))
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
    parser.add_argument(
        "--bluez", action="store_true", help="through bleak's BlueZ backend (needs dbus-daemon)"
    )
    args = parser.parse_args()
    asyncio.run(bench(args.runs, args.bluez))


if __name__ == "__main__":
    main()
