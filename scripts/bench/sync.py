"""Benchmark: fleet key sync and outbox drain against the simulated Nokē cloud over real HTTP.

The simulated cloud runs in its own process (``blelock-sim --offline-keys 5``), so the
companion's peak RSS is its own. Each measurement runs in a fresh child process:

* keys:  ``refresh_offline_keys`` for the whole company (``/lock/`` lists it; keys fetched,
  sealed and stored chunk by chunk), ``--runs`` times per fleet size; then, in the same child,
  the same sync again over the cache it filled (``again``: a daily sync, every key unchanged);
* drain: records appended to the outbox, then ``drain_outbox`` in 500-record batches; paired,
  in the same child, with **raw posts**: the same batches' bodies built beforehand and POSTed
  one after another with the same client (what any drain must at least spend). Drain and raw
  alternate, each on records of its own (the cloud dedupes, so neither meets a repeat). Each
  run is a child of its own; with ``--baseline`` the builds' children alternate run by run.

Targets (issue 18): 100,000 locks x 5 keys in ≤ 4 s and ≤ 300 MB, memory flat as the fleet
grows; drain ≤ 1.4 x raw posts, memory flat at 1,000,000 records.

    .venv/bin/python scripts/bench/sync.py [--locks 10000 100000] [--runs 3]
        [--records 100000] [--memory-records 1000000] [--skip-keys] [--skip-drain]
        [--baseline CHECKOUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence

from simulators.process import simulator_process

TRACKING_KEYS = 5
DRAIN_RUNS = 3


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def spread(values: Sequence[float], unit: str = "s", scale: float = 1.0) -> str:
    scaled = [v * scale for v in values]
    return (
        f"min {min(scaled):7.2f}  median {statistics.median(scaled):7.2f}  "
        f"max {max(scaled):7.2f} {unit}"
    )


def measure(
    kind: str, env: dict[str, str], count: int, *, baseline: str | None = None, run: int = 0
) -> dict[str, float]:
    """Run one measurement in a fresh interpreter; its peak RSS is the companion's alone.
    ``baseline``: a checkout whose ``blelock`` the child imports instead (PYTHONPATH)."""
    with tempfile.TemporaryDirectory() as scratch:
        environment = os.environ | env | {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch}
        if baseline:
            environment |= {"PYTHONPATH": baseline, "PYTHONDONTWRITEBYTECODE": "1"}
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(count), str(run)],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    result: dict[str, float] = json.loads(out)
    return result


async def child(kind: str, count: int, run: int) -> dict[str, float]:  # the measured process
    from blelock.config import load_settings
    from blelock.jobs import context, open_store
    from blelock.vendors.noke import jobs
    from blelock.vendors.noke.cloud import NokeCloud
    from blelock.vendors.noke.plugin import PLUGIN as NOKE

    settings = load_settings(environ=os.environ | {"BLELOCK_CLOUD_TIMEOUT": "120"}, read_file=False)
    async with open_store(settings) as store, NokeCloud.from_settings(settings) as cloud:
        if kind == "keys":
            started, cpu_started = time.perf_counter(), time.process_time()
            keys = jobs.key_store(context(NOKE, settings, store))
            summary = await jobs.refresh_offline_keys(cloud, keys)
            result = {
                "seconds": time.perf_counter() - started,
                # This process's CPU (all its threads): what load on the machine moves least.
                "cpu_seconds": time.process_time() - cpu_started,
                "done": summary.added,
            }
            # The same fleet synced again over the cache just filled: a daily sync.
            started, cpu_started = time.perf_counter(), time.process_time()
            again = await jobs.refresh_offline_keys(cloud, keys)
            result |= {
                "again_seconds": time.perf_counter() - started,
                "again_cpu_seconds": time.process_time() - cpu_started,
                "again_unchanged": again.unchanged,
            }
        elif kind == "drain-memory":
            await fill(store.outbox(NOKE.name), count, run=0)
            result = {"seconds": await drained(cloud, store.outbox(NOKE.name), count)}
        else:
            # One drain and its raw posts; ``run`` keeps each run's sessions its own at the cloud.
            outbox = store.outbox(NOKE.name)
            await fill(outbox, count, run=2 * run)
            before = cpu_seconds()
            drain_s = await drained(cloud, outbox, count)
            drain_cpu = cpu_seconds() - before
            raw_s, raw_cpu = await raw_posts(cloud, count, run=2 * run + 1)
            result = {"drain": drain_s, "drain_cpu": drain_cpu, "raw": raw_s, "raw_cpu": raw_cpu}
    return result | {"peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's own peak RSS. Linux's ``ru_maxrss`` keeps, across fork and exec, the
    parent's high-water mark (here this bench, which at 1M locks holds the simulator's
    announcement: ~440 MB), so the per-process ``VmHWM`` is read where there is one."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def records(start: int, stop: int, run: int) -> list[object]:
    from blelock.model import LogRecord, MacAddress

    mac = MacAddress("C7:E6:B0:C6:75:38")
    # Four records a session, as a visit gives them; each run's own sessions.
    return [
        LogRecord(mac, f"{run:08x}{n // 4:032x}", 1_700_000_000, f"50{n:038x}")
        for n in range(start, stop)
    ]


async def fill(outbox: object, count: int, *, run: int) -> None:
    for start in range(0, count, 10_000):
        await outbox.append(records(start, min(count, start + 10_000), run))  # type: ignore[attr-defined]


async def drained(cloud: object, outbox: object, count: int) -> float:
    from blelock.vendors.outbox import drain_outbox

    started = time.perf_counter()
    done = await drain_outbox(cloud, outbox)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    assert done == count, (done, count)
    return seconds


def cpu_seconds() -> float:
    """This process's CPU time, user and system, all threads: what the drain costs the machine
    beside waiting (wall-clock figures shift with what else runs on a shared 2-core host)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def raw_posts(cloud: object, count: int, *, run: int) -> tuple[float, float]:
    """The same batches (500 records, the same bodies) POSTed back to back, built beforehand."""
    from blelock.vendors.noke.cloud import NokeCloud
    from blelock.vendors.outbox import UPLOAD_BATCH

    assert isinstance(cloud, NokeCloud)
    bodies = [
        cloud.upload_body(records(start, min(count, start + UPLOAD_BATCH), run))
        for start in range(0, count, UPLOAD_BATCH)
    ]
    headers = cloud._headers(mobile=True)
    started, cpu = time.perf_counter(), cpu_seconds()
    for body in bodies:
        answer = await cloud._client.post(
            "upload/", content=body, headers=headers | {"Idempotency-Key": uuid.uuid4().hex}
        )
        assert answer.status_code == 200 and answer.json()["error_code"] == 0, answer.text
    return time.perf_counter() - started, cpu_seconds() - cpu


def key_sync(sizes: Sequence[int], runs: int, baseline: str | None) -> None:
    """With ``baseline``, each run of this checkout is paired with one of the baseline's,
    against the same simulated cloud."""
    builds = [("this", None)] + ([("baseline", baseline)] if baseline else [])
    for locks in sizes:
        with simulator_process(
            "--locks", str(locks), "--offline-keys", str(TRACKING_KEYS), start_timeout=900
        ) as announced:
            env = announced["env"]
            results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in builds}
            for _ in range(runs):
                for name, path in builds:
                    results[name].append(measure("keys", env, locks, baseline=path))
                    assert results[name][-1]["done"] == locks * TRACKING_KEYS
                    assert results[name][-1]["again_unchanged"] == locks * TRACKING_KEYS
        for name, _ in builds:
            seconds = [r["seconds"] for r in results[name]]
            print(
                f"key sync {name:>8} {locks:>8} locks x {TRACKING_KEYS} keys ({runs} runs): "
                f"{spread(seconds)}; companion CPU "
                f"{spread([r['cpu_seconds'] for r in results[name]])}; peak RSS "
                f"{spread([r['peak_rss_mb'] for r in results[name]], 'MB')}; "
                f"{locks * TRACKING_KEYS / statistics.median(seconds):,.0f} keys/s; {load()}"
            )
            print(
                f"  again    {name:>8} {locks:>8} locks x {TRACKING_KEYS} keys, all unchanged: "
                f"{spread([r['again_seconds'] for r in results[name]])}; companion CPU "
                f"{spread([r['again_cpu_seconds'] for r in results[name]])}"
            )


def drain(count: int, memory_count: int, baseline: str | None = None) -> None:
    """Each run is a fresh child that drains ``count`` records, then posts the same batches raw.
    With ``baseline``, the builds' children alternate run by run against the same simulated
    cloud, so that its growing state and the machine's load fall on both alike."""
    with simulator_process("--locks", "1") as announced:
        env = announced["env"]
        builds = [("this", None)] + ([("baseline", baseline)] if baseline else [])
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in builds}
        for run in range(DRAIN_RUNS):
            for index, (name, path) in enumerate(builds):
                runs[name].append(
                    measure("drain", env, count, baseline=path, run=run * len(builds) + index)
                )
        for name, _ in builds:
            paired = {
                key: [r[key] for r in runs[name]]
                for key in ("drain", "raw", "drain_cpu", "raw_cpu")
            }
            paired_rss = max(r["peak_rss_mb"] for r in runs[name])
            ratios = [d / r for d, r in zip(paired["drain"], paired["raw"], strict=True)]
            cpu_ratios = [
                d / r for d, r in zip(paired["drain_cpu"], paired["raw_cpu"], strict=True)
            ]
            print(f"outbox drain ({name}) {count} records, {DRAIN_RUNS} paired runs; {load()}")
            print(f"  drain      {spread(paired['drain'])}")
            print(f"  raw posts  {spread(paired['raw'])}")
            print(
                f"  ratio      {spread(ratios, '')} (target 1.4); "
                f"{count / statistics.median(paired['drain']):,.0f} records/s; "
                f"peak RSS {paired_rss:.0f} MB"
            )
            print(f"  drain CPU  {spread(paired['drain_cpu'])} (this process, all threads)")
            print(f"  raw CPU    {spread(paired['raw_cpu'])}")
            print(f"  CPU ratio  {spread(cpu_ratios, '')}")
        if memory_count:
            small = measure("drain-memory", env, count)
            large = measure("drain-memory", env, memory_count)
            print(
                f"  memory: drain of {count:,} peak RSS {small['peak_rss_mb']:.0f} MB "
                f"({small['seconds']:.2f} s), of {memory_count:,} peak RSS "
                f"{large['peak_rss_mb']:.0f} MB ({large['seconds']:.2f} s, "
                f"{memory_count / large['seconds']:,.0f} records/s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--locks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--memory-records", type=int, default=0)
    parser.add_argument("--skip-keys", action="store_true")
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--baseline", help="a checkout to pair the runs with")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child[0], int(args.child[1]), int(args.child[2])))))
        return
    print(f"start: {load()}")
    if not args.skip_keys:
        key_sync(args.locks, args.runs, args.baseline)
    if not args.skip_drain:
        drain(args.records, args.memory_records, args.baseline)


if __name__ == "__main__":
    main()
