"""Benchmark: fleet key sync and outbox drain against the simulated Nokē cloud over real HTTP.

For each fleet size the simulated cloud runs in its own process (``blelock-sim --offline-keys
5``), so the companion's peak RSS is its own. Each measurement runs in a fresh child process:

* keys:  ``refresh_offline_keys`` for every lock (display → parse → seal → store),
* drain: 100,000 records appended to the outbox, then ``drain_outbox`` in 500-record batches.

Targets (issue 3): 10,000 locks x 5 tracking keys in < 10 s and < 150 MB.

    .venv/bin/python scripts/bench/sync.py [--locks 1000 10000 100000] [--records 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from simulators.process import simulator_process

TRACKING_KEYS = 5


def measure(kind: str, env: dict[str, str], count: int) -> dict[str, float]:
    """Run one measurement in a fresh interpreter; its peak RSS is the companion's alone."""
    with tempfile.TemporaryDirectory() as scratch:
        environment = os.environ | env | {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch}
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(count)],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    result: dict[str, float] = json.loads(out)
    return result


async def child(kind: str, count: int) -> dict[str, float]:  # runs in the measured process
    from blelock.config import load_settings
    from blelock.jobs import context, open_store
    from blelock.model import LogRecord, MacAddress
    from blelock.vendors.noke import jobs
    from blelock.vendors.noke.cloud import NokeCloud
    from blelock.vendors.noke.plugin import PLUGIN as NOKE
    from blelock.vendors.outbox import drain_outbox

    # 100,000 locks' keys are one ~70 MB answer: give it more than the interactive timeout.
    settings = load_settings(environ=os.environ | {"BLELOCK_CLOUD_TIMEOUT": "120"}, read_file=False)
    async with open_store(settings) as store, NokeCloud.from_settings(settings) as cloud:
        if kind == "keys":
            started = time.perf_counter()
            keys = jobs.key_store(context(NOKE, settings, store))
            summary = await jobs.refresh_offline_keys(cloud, keys)
            seconds = time.perf_counter() - started
            done = summary.added
        else:
            mac = MacAddress("C7:E6:B0:C6:75:38")
            for start in range(0, count, 10_000):
                await store.outbox(NOKE.name).append(
                    [
                        LogRecord(mac, f"{n // 4:040x}", 1_700_000_000, f"50{n:038x}")
                        for n in range(start, min(count, start + 10_000))
                    ]
                )
            started = time.perf_counter()
            done = await drain_outbox(cloud, store.outbox(NOKE.name))
            seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_rss_mb": peak_mb, "done": done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--locks", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child[0], int(args.child[1])))))
        return
    for locks in args.locks:
        with simulator_process(
            "--locks", str(locks), "--offline-keys", str(TRACKING_KEYS), start_timeout=300
        ) as announced:
            env = announced["env"]
            keys = measure("keys", env, locks)
        print(
            f"key sync {locks:>7} locks x {TRACKING_KEYS} keys: {keys['seconds']:6.2f} s, "
            f"peak RSS {keys['peak_rss_mb']:6.0f} MB, {int(keys['done'])} keys stored "
            f"({keys['done'] / keys['seconds']:,.0f} keys/s)"
        )
    with simulator_process("--locks", "1") as announced:
        drain = measure("drain", announced["env"], args.records)
    print(
        f"outbox drain {args.records} records: {drain['seconds']:6.2f} s, peak RSS "
        f"{drain['peak_rss_mb']:6.0f} MB ({drain['done'] / drain['seconds']:,.0f} records/s)"
    )


if __name__ == "__main__":
    main()
