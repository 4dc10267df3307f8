"""Benchmark: N Nuki unlocks against the simulated Smart Lock, over the modelled minimum.

The modelled minimum is what the protocol cannot avoid under the stated latency model: the
first advertisement (the MAC could be Nokē's too, so the scan decides), connection setup, one
ATT round trip to subscribe to the user-specific characteristic, and one ATT round trip per
write with response. At the lock's ATT MTU of 23 every frame goes in 20-byte writes: the
encrypted REQUEST_DATA(CHALLENGE) and the encrypted LOCK_ACTION, whose sizes the protocol
module gives. The lock's answers (CHALLENGE; ACCEPTED, two KEYTURNER_STATES, COMPLETE)
arrive as indications the model delivers with the write's response (their confirmations are
not modelled). The ratio of the measured median to it is the overhead of everything else
(bleak, the socket to the simulated radio, the store, the crypto, our own code).

    .venv/bin/python scripts/bench/nuki_unlock.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import tempfile
import time

from blelock.config import load_settings
from blelock.jobs import open_store, run_operation
from blelock.model import parse_mac
from blelock.vendors.base import OperationRequest
from blelock.vendors.nuki import jobs
from blelock.vendors.nuki import protocol as nuki
from simulators.radio import LatencyModel
from simulators.world import WorldSpec, build_world, serve_world

MODEL = LatencyModel(
    advertising_interval_s=0.050,
    connect_s=0.100,
    connection_interval_s=0.030,
    write_round_trip_s=0.030,
)
ATT_PAYLOAD = 23 - 3


def writes_per_unlock() -> int:
    """20-byte writes of the two encrypted frames an unlock sends (sizes from the protocol)."""
    key, nonce = bytes(32), bytes(24)
    challenge = nuki.seal(key, 1, nuki.Command.REQUEST_DATA, b"\x04\x00", nonce)
    action = nuki.lock_action(nuki.LockAction.UNLOCK, 0).payload(bytes(32))
    unlock = nuki.seal(key, 1, nuki.Command.LOCK_ACTION, action, nonce)
    return sum(math.ceil(len(frame) / ATT_PAYLOAD) for frame in (challenge, unlock))


def modelled_minimum() -> float:
    return (
        MODEL.advertising_interval_s
        + MODEL.connect_s
        + MODEL.connection_interval_s  # subscribe (the CCCD write)
        + writes_per_unlock() * MODEL.connection_interval_s
    )


async def bench(runs: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ |= {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch}
        world = build_world(WorldSpec(locks=1, seed=3, latency=MODEL, nuki_locks=1))
        assert world.nuki is not None
        async with serve_world(world) as running:
            os.environ["BLELOCK_SIM_RADIO"] = running.radio_address
            settings = load_settings(environ=os.environ | running.environment, read_file=False)
            mac = parse_mac(world.nuki.locks[0].mac)
            async with open_store(settings) as store:
                await jobs.pair(mac, settings, store)
            await run_operation(settings, mac, OperationRequest("unlock"))  # warm-up
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                result = await run_operation(settings, mac, OperationRequest("unlock"))
                times.append(time.perf_counter() - started)
                assert result.details["accepted"]
            floor = modelled_minimum()
            median = statistics.median(times)
            print(
                f"model: adv {MODEL.advertising_interval_s * 1e3:.0f} ms, connect "
                f"{MODEL.connect_s * 1e3:.0f} ms, ATT {MODEL.connection_interval_s * 1e3:.0f} ms, "
                f"MTU 23 ({writes_per_unlock()} writes per unlock)"
            )
            print(
                f" unlock: {runs} runs: median {median * 1e3:.1f} ms, min {min(times) * 1e3:.1f}, "
                f"max {max(times) * 1e3:.1f}; modelled minimum {floor * 1e3:.1f} ms; "
                f"ratio {median / floor:.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(bench(parser.parse_args().runs))


if __name__ == "__main__":
    main()
