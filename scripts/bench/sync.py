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

Beside each figure, what bounds it: a key sync's ``bound`` line splits the child's CPU into
its main thread's and the others' (the store's writer) and adds the simulated cloud's CPU
meanwhile (read from its /proc entry). The companion's threads share one interpreter lock:
where their sum is about the wall time, they mostly took turns, and only less CPU, or more of
it outside the lock (SQLite's own work runs outside it), would shorten the wall; how much of
the writer's time is outside the lock is not measured here. The whole machine's CPU over its
cores is the floor of any schedule. The drain and its raw posts get the same line.

Targets (issue 18): 100,000 locks x 5 keys in ≤ 4 s and ≤ 300 MB, memory flat as the fleet
grows; drain ≤ 1.4 x raw posts, memory flat at 1,000,000 records.

    .venv/bin/python scripts/bench/sync.py [--locks 10000 100000] [--runs 3]
        [--records 100000] [--memory-records 1000000] [--skip-keys] [--skip-drain]
        [--baseline CHECKOUT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from host import cpu_of_process, load, reference

from simulators.process import simulator_process

if TYPE_CHECKING:  # blelock is imported in the measured child, whose checkout --baseline picks
    from blelock.model import LogRecord

TRACKING_KEYS = 5
DRAIN_RUNS = 3
DRAIN_FIGURES = tuple(
    f"{side}_{figure}"
    for side in ("drain", "raw")
    for figure in ("seconds", "cpu_seconds", "simulator_cpu", "main_cpu", "other_cpu")
)


def spread(values: Sequence[float], unit: str = "s", scale: float = 1.0) -> str:
    scaled = [v * scale for v in values]
    return (
        f"min {min(scaled):7.2f}  median {statistics.median(scaled):7.2f}  "
        f"max {max(scaled):7.2f} {unit}"
    )


def measure(
    kind: str,
    env: dict[str, str],
    count: int,
    simulator_pid: int,
    *,
    baseline: str | None = None,
    run: int = 0,
) -> dict[str, float]:
    """Run one measurement in a fresh interpreter; its peak RSS is the companion's alone.
    ``baseline``: a checkout whose ``blelock`` the child imports instead (PYTHONPATH)."""
    with tempfile.TemporaryDirectory() as scratch:
        environment = os.environ | env | {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch}
        environment["BENCH_SIMULATOR_PID"] = str(simulator_pid)
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
            keys = jobs.key_store(context(NOKE, settings, store))
            result: dict[str, float] = {}
            with where_the_cpu_went(result, ""):
                summary = await jobs.refresh_offline_keys(cloud, keys)
            result["done"] = summary.added
            # The same fleet synced again over the cache just filled: a daily sync.
            with where_the_cpu_went(result, "again_"):
                again = await jobs.refresh_offline_keys(cloud, keys)
            result["again_unchanged"] = again.unchanged
        elif kind == "drain-memory":
            await fill(store.outbox(NOKE.name), count, run=0)
            result = {"seconds": await drained(cloud, store.outbox(NOKE.name), count)}
        else:
            # One drain and its raw posts; ``run`` keeps each run's sessions its own at the cloud.
            outbox = store.outbox(NOKE.name)
            await fill(outbox, count, run=2 * run)
            result = {}
            with where_the_cpu_went(result, "drain_"):
                await drained(cloud, outbox, count)
            bodies = raw_bodies(cloud, count, run=2 * run + 1)
            with where_the_cpu_went(result, "raw_"):
                await raw_posts(cloud, bodies)
    return result | {"peak_rss_mb": peak_rss_mb()}


@contextlib.contextmanager
def where_the_cpu_went(result: dict[str, float], prefix: str) -> Iterator[None]:
    """Into ``result``: the block's wall time; this process's CPU (all its threads: what load on
    the machine moves least), split into the main thread's and the others' (the store's
    writer); and the simulated cloud's CPU meanwhile (its pid from the parent)."""
    simulator = int(os.environ["BENCH_SIMULATOR_PID"])
    cloud = cpu_of_process(simulator)
    started, cpu_started = time.perf_counter(), time.process_time()
    main_started = time.thread_time()
    yield
    # The block runs on the loop's thread; the process's CPU counts threads that have ended too.
    # Read inside the process's interval, so that the main thread's never exceeds it.
    main = time.thread_time() - main_started
    result[f"{prefix}cpu_seconds"] = cpu = time.process_time() - cpu_started
    result[f"{prefix}seconds"] = time.perf_counter() - started
    result[f"{prefix}simulator_cpu"] = cpu_of_process(simulator) - cloud
    result[f"{prefix}main_cpu"] = main
    result[f"{prefix}other_cpu"] = cpu - main


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


def records(start: int, stop: int, run: int) -> list[LogRecord]:
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


def raw_bodies(cloud: object, count: int, *, run: int) -> list[bytes]:
    """The bodies of the drain's batches (500 records each), built before the raw posts."""
    from blelock.vendors.noke.cloud import NokeCloud
    from blelock.vendors.outbox import UPLOAD_BATCH

    assert isinstance(cloud, NokeCloud)
    return [
        cloud.upload_body(records(start, min(count, start + UPLOAD_BATCH), run))
        for start in range(0, count, UPLOAD_BATCH)
    ]


async def raw_posts(cloud: object, bodies: Sequence[bytes]) -> None:
    """The bodies POSTed back to back with the drain's own client."""
    from blelock.vendors.noke.cloud import NokeCloud

    assert isinstance(cloud, NokeCloud)
    headers = cloud._headers(mobile=True)
    for body in bodies:
        answer = await cloud._client.post(
            "upload/", content=body, headers=headers | {"Idempotency-Key": uuid.uuid4().hex}
        )
        assert answer.status_code == 200 and answer.json()["error_code"] == 0, answer.text


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
                    measured = measure("keys", env, locks, announced["pid"], baseline=path)
                    results[name].append(measured)
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
            print(f"  bound    {name:>8} {bound(results[name], '')}")
            print(
                f"  again    {name:>8} {locks:>8} locks x {TRACKING_KEYS} keys, all unchanged: "
                f"{spread([r['again_seconds'] for r in results[name]])}; companion CPU "
                f"{spread([r['again_cpu_seconds'] for r in results[name]])}"
            )
            print(f"  bound    {name:>8} {bound(results[name], 'again_')}")


def bound(runs: Sequence[dict[str, float]], prefix: str) -> str:
    """What the machine's cores allow, from the medians of the runs: the companion's threads
    share one interpreter lock, so their CPU adds up to about the wall time wherever neither
    waits; the simulated cloud runs beside them on the same cores."""

    def median(key: str) -> float:
        return statistics.median(r[f"{prefix}{key}"] for r in runs)

    main_cpu, other, cloud = median("main_cpu"), median("other_cpu"), median("simulator_cpu")
    cores = os.cpu_count() or 1
    return (
        f"CPU: main thread {main_cpu:.2f} s + the others (the store's writer) {other:.2f} s "
        f"= {main_cpu + other:.2f} s against a wall of {median('seconds'):.2f} s; the simulated "
        f"cloud {cloud:.2f} s; all of it spread over {cores} cores at best: "
        f"{(main_cpu + other + cloud) / cores:.2f} s"
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
                    measure(
                        "drain",
                        env,
                        count,
                        announced["pid"],
                        baseline=path,
                        run=run * len(builds) + index,
                    )
                )
        for name, _ in builds:
            paired = {key: [r[key] for r in runs[name]] for key in DRAIN_FIGURES}
            paired_rss = max(r["peak_rss_mb"] for r in runs[name])
            ratios = [
                d / r for d, r in zip(paired["drain_seconds"], paired["raw_seconds"], strict=True)
            ]
            cpu_ratios = [
                d / r
                for d, r in zip(paired["drain_cpu_seconds"], paired["raw_cpu_seconds"], strict=True)
            ]
            print(f"outbox drain ({name}) {count} records, {DRAIN_RUNS} paired runs; {load()}")
            print(f"  drain      {spread(paired['drain_seconds'])}")
            print(f"  raw posts  {spread(paired['raw_seconds'])}")
            print(
                f"  ratio      {spread(ratios, '')} (target 1.4); "
                f"{count / statistics.median(paired['drain_seconds']):,.0f} records/s; "
                f"peak RSS {paired_rss:.0f} MB"
            )
            print(f"  drain CPU  {spread(paired['drain_cpu_seconds'])} (this process, all threads)")
            print(f"  raw CPU    {spread(paired['raw_cpu_seconds'])}")
            print(f"  CPU ratio  {spread(cpu_ratios, '')}")
            print(f"  bound      drain: {bound(runs[name], 'drain_')}")
            print(f"  bound      raw posts: {bound(runs[name], 'raw_')}")
        if memory_count:
            small = measure("drain-memory", env, count, announced["pid"])
            large = measure("drain-memory", env, memory_count, announced["pid"])
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
    print(reference(), flush=True)
    print(f"start: {load()}")
    if not args.skip_keys:
        key_sync(args.locks, args.runs, args.baseline)
    if not args.skip_drain:
        drain(args.records, args.memory_records, args.baseline)


if __name__ == "__main__":
    main()
