"""Benchmark: a whole `blelock open LOCK` process (start to exit), online and offline, for every
registered vendor that opens locks, against the simulated world, paired with `python -c pass`.

Target (issue 18): median ≤ 1.25 x (modelled minimum + bare interpreter start).

The world runs in this process, so its wait log (``Radio.waits``) says what each run cost under
the latency model: the scan's wait for the lock's first advertisement, every wait the simulated
radio imposed on the link (connection set-up, MTU exchange, each ATT round trip, write pacing,
each answer's delay), and the latency the simulated clouds charged. The floor is what a client
that cost nothing would have waited (``floor_of``): the link's and the clouds' waits, overlaps
(requests sent together) counted once, and of the advert's wait only what the cloud work
before the connection could not cover, since a job listens for its lock from its start. A
client that serialises what could overlap shows that in its ratio, not in its floor. Where
the floor differs from the waits summed one after another, both are printed. The floor is
the conversation as run, so the cloud calls are printed beside it: a needless extra round
trip would show there, not in the ratio.

The vendors come from the registry: one with an opening operation and a lock in the world is
measured (a vendor the simulated world has no lock of is named and passed over). Setup first,
in-process through the same jobs the CLI runs: each vendor's enrolment, a key sync (a
``tracking_key`` sync option, when the vendor has one, gets the bench's), the ``blelock``
commands the world says a technician runs first (``preparations``: Nuki's pairing, as whole
processes), one warm-up visit. None of it is timed.

Online and offline for Nuki: the same path. A Nuki lock opens with the key pairing agreed,
over Bluetooth only; no cloud takes part in either mode, so both are a scan, a connection and
the two encrypted frames. Its floor is cross-checked against the protocol's own count
(``nuki_unlock.modelled_minimum``: advert, connect, subscribe, one round trip per 20-byte
write) and the ratio to that is printed too.
Runs are interleaved (bare, online, offline, …) so load from other processes hits all alike.

The ``agent`` rows: the same commands handed to one ``blelock agent`` (started once, warmed up
with one visit per vendor, then run interleaved with the cold rows, whose ``BLELOCK_AGENT_SOCKET``
is ``off``). Their CPU line adds what the agent itself spent on each command (from /proc) to the
client's, so the idle-machine estimate counts both processes.

``--baseline DIR`` also runs each command from another checkout's ``blelock`` (PYTHONPATH=DIR,
e.g. a worktree of main), interleaved with this one's: before and after under the same load.

``--timeline``: after the timed runs, one more run of each of this build's commands with an
audit hook (``timeline/sitecustomize.py`` on its PYTHONPATH, so the timed runs carry none),
printing when the process first asked the radio (the scan's socket), when it connected to the
lock, and when it exited, each from its spawn, with the modules loaded by then. Time before the
radio is first asked is what no radio wait can hide.

``--bytecode-cache``: the commands run with their bytecode cached (in a temporary
``PYTHONPYCACHEPREFIX``, so no checkout is written to; one untimed run each fills it), as an
installed blelock has it (pip compiles at install). Without it they run in this environment as
it is: where ``PYTHONDONTWRITEBYTECODE`` is set, every run compiles blelock's modules (and the
simulator's) from source, ~100-150 ms of CPU that no installed copy pays.

    .venv/bin/python scripts/bench/cli_unlock.py [--runs 3] [--baseline ../wt-main]
        [--bytecode-cache] [--timeline] [--vendor NAME ...] [--mode online|offline ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from host import cpu_of_process, load, reference
from nuki_unlock import MODEL as NUKI_MODEL
from nuki_unlock import modelled_minimum as nuki_minimum

from blelock import vendors
from blelock.config import load_settings
from blelock.jobs import context, open_store, run_operation
from blelock.sync import sync_keys
from blelock.vendors.base import OperationRequest, VendorPlugin
from simulators.event_loop import run as run_precisely
from simulators.radio import LatencyModel
from simulators.world import (
    RunningWorld,
    World,
    WorldSpec,
    build_world,
    cloud_modelled_s,
    cloud_requests,
    enrolment_codes,
    lock_ids,
    preparations,
    radio_address,
    serve_world,
)

MODEL = LatencyModel(
    advertising_interval_s=0.050,
    connect_s=0.100,
    connection_interval_s=0.030,
    write_round_trip_s=0.030,
)
CLOUD_LATENCY_S = 0.040
TARGET = 1.25
TRACKING_KEY = "bench-technician"
PROTOCOL_MINIMUM = {"nuki": nuki_minimum}
"""A vendor's modelled minimum counted from its protocol (the same model), where a bench has
one: the radio's count should not exceed it (an extra round trip would)."""
assert NUKI_MODEL == MODEL, "nuki_unlock.py's latency model is this bench's"


def figures(values: Sequence[float]) -> str:
    ms = [v * 1e3 for v in values]
    return f"min {min(ms):6.1f}  median {statistics.median(ms):6.1f}  max {max(ms):6.1f} ms"


CPU: dict[tuple[str, ...], list[float]] = {}
"""CPU seconds (user + system) of each command's processes: what load from other processes
stretches (the wall time on an idle machine is about the modelled waits plus this)."""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""This checkout: its ``blelock`` is the one measured as "this"."""
NEUTRAL_DIR = os.path.dirname(os.path.abspath(__file__))
"""Where the commands run: ``python -m``/``-c`` put the working directory first on sys.path,
ahead of PYTHONPATH, so run from a checkout's root every build would be that checkout's."""


AGENT_CPU: dict[tuple[str, str], list[float]] = {}
"""CPU seconds the agent spent on each forwarded command (its own process, not a child's)."""


async def timed(argv: Sequence[str], env: dict[str, str]) -> float:
    cpu = children_cpu()
    began = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=NEUTRAL_DIR,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await child.communicate()
    elapsed = time.perf_counter() - began
    CPU.setdefault((*argv, _build_key(env)), []).append(children_cpu() - cpu)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:])} failed: {err.decode().strip()[-300:]}")
    return elapsed


async def cli_run(
    running: RunningWorld, argv: Sequence[str], env: dict[str, str], lock_id: str
) -> tuple[float, float, float, int]:
    """One process run: its wall time, the modelled floor of what it did (``floor_of``), that
    floor with its waits summed one after another, and its cloud calls."""
    world = running.world
    radio, cloud, calls = world.radio.modelled_s, cloud_modelled_s(world), cloud_requests(world)
    loop = asyncio.get_running_loop()
    began = loop.time()
    elapsed = await timed(argv, env)
    ended = loop.time()
    calls = cloud_requests(world) - calls
    summed = MODEL.advertising_interval_s + world.radio.modelled_s - radio
    summed += cloud_modelled_s(world) - cloud
    return elapsed, floor_of(world, lock_id, began, ended), summed, calls


def floor_of(world: World, lock_id: str, began: float, ended: float) -> float:
    """The least a client that cost nothing would have waited for what this run asked: its
    link's and its clouds' waits, each overlap counted once, and of the wait for the lock's
    first advert what the cloud work before the connection could not have covered (the job
    listens from its start, beside any sync before the visit)."""
    waits = world.radio.waits
    advert = f"advert {radio_address(world, lock_id)}"
    windows = waits.within(began, ended)
    adverts = [(s, e) for s, e, what in windows if what == advert]
    links = [s for s, _, what in windows if what == "link"]
    link_or_cloud = waits.covered(
        began, ended, counts=lambda what: what == "link" or what.startswith("cloud ")
    )
    if not adverts:
        if links:  # it connected, so it heard the lock: the log is missing that wait
            raise RuntimeError(f"the run connected to {lock_id} but no advert wait was logged")
        return link_or_cloud
    heard = adverts[0][1] - adverts[0][0]
    connected = min(links, default=ended)
    before = waits.covered(began, connected, counts=lambda what: what.startswith("cloud "))
    return link_or_cloud + max(0.0, heard - before)


TIMELINE_HOOK = os.path.join(NEUTRAL_DIR, "timeline")


async def timeline(running: RunningWorld, argv: Sequence[str], env: dict[str, str]) -> str:
    """One run of ``argv`` with the timeline hook: when it first asked the radio, when it
    connected to the lock, and when it exited, from its spawn (see ``timeline/``)."""
    host, _, port = running.radio_address.rpartition(":")
    radio = repr((host, int(port)))
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as record:
        hooked = env | {
            "PYTHONPATH": f"{env['PYTHONPATH']}{os.pathsep}{TIMELINE_HOOK}",
            "BENCH_TIMELINE_FILE": record.name,
        }
        began = time.time()
        await timed(argv, hooked)
        events = json.loads(record.read())
    to_radio = [e for e in events if e["to"] == radio]
    marks = [("radio asked", to_radio[:1]), ("lock connected", to_radio[1:2])]
    marks.append(("exit", events[-1:]))
    return ", ".join(
        f"{name} +{(found[0]['at'] - began) * 1e3:.0f} ms ({found[0]['modules']} modules)"
        for name, found in marks
        if found
    )


def _build_key(env: dict[str, str]) -> str:
    """Which build ran: another checkout's (PYTHONPATH), or this one cold or through an agent."""
    return env.get("PYTHONPATH", "") + (
        "|agent" if env.get("BLELOCK_AGENT_SOCKET", "off") != "off" else ""
    )


async def start_agent(env: dict[str, str]) -> asyncio.subprocess.Process:
    """``blelock agent`` on the socket ``env`` names, once it says it listens."""
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blelock", "agent", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert agent.stderr is not None
    line = await agent.stderr.readline()
    if b"listening on" not in line:
        raise RuntimeError(f"the agent did not start: {line.decode().strip()}")
    # Its stderr says a line per command: read on, so that it never fills the pipe.
    asyncio.get_running_loop().create_task(agent.stderr.read())
    return agent


def openers() -> list[VendorPlugin]:
    return [p for p in vendors.plugins().values() if p.default_operation is not None]


async def setup(running: RunningWorld, env: dict[str, str], plugins: list[VendorPlugin]) -> None:
    settings = load_settings(environ=env, read_file=False)
    ids = lock_ids(running.world)
    async with open_store(settings) as store:
        for name, code in enrolment_codes(running.world).items():
            plugin = vendors.plugin(name)
            await plugin.enroll(context(plugin, settings, store), code)
        for plugin in plugins:
            locks = ids.get(plugin.name, [])[:1]
            if not locks:
                continue
            names = {option.name for option in plugin.sync_options}
            options: dict[str, Any] = (
                {"tracking_key": [TRACKING_KEY]} if "tracking_key" in names else {}
            )
            await sync_keys(context(plugin, settings, store), locks, options)
            for argv in preparations(running.world).get(plugin.name, []):  # e.g. Nuki's pairing
                await timed(
                    [sys.executable, "-m", "blelock", *argv], env | {"PYTHONPATH": CHECKOUT}
                )
            # Warm-up: a new lock's set-up (Nokē's first unlock) is not the steady state.
            await run_operation(
                settings, locks[0], OperationRequest("", "online"), vendor=plugin.name, store=store
            )


async def bench(
    runs: int,
    baseline: str | None,
    *,
    bytecode_cache: bool = False,
    with_timeline: bool = False,
    only: Sequence[str] | None = None,
    modes: Sequence[str] = ("online", "offline"),
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        spec = WorldSpec(
            locks=1,
            keyless_locks=1,
            nuki_locks=1,
            seed=5,
            latency=MODEL,
            cloud_latency_s=CLOUD_LATENCY_S,
        )
        async with serve_world(build_world(spec)) as running:
            env = {k: v for k, v in os.environ.items() if not k.startswith("BLELOCK_")}
            env |= running.environment | {
                "BLELOCK_CONFIG": os.devnull,
                "BLELOCK_DATA_DIR": scratch,
                "BLELOCK_KEY_DIR": scratch,
                "BLELOCK_AGENT_SOCKET": "off",  # the cold rows: never a running agent
            }
            if bytecode_cache:
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                env["PYTHONPYCACHEPREFIX"] = os.path.join(scratch, "pycache")
            # The simulated bleak backend of the in-process set-up reads it from the environment.
            os.environ["BLELOCK_SIM_RADIO"] = running.radio_address
            plugins = [p for p in openers() if only is None or p.name in only]
            ids = lock_ids(running.world)
            for plugin in plugins:
                if not ids.get(plugin.name):
                    print(f"{plugin.name}: the simulated world has no lock of it; not measured")
            plugins = [p for p in plugins if ids.get(p.name)]
            await setup(running, env, plugins)
            print(f"start: {load()}")
            print(
                f"model: adv {MODEL.advertising_interval_s * 1e3:.0f} ms, connect "
                f"{MODEL.connect_s * 1e3:.0f} ms, ATT {MODEL.connection_interval_s * 1e3:.0f} "
                f"ms, write→answer {MODEL.write_round_trip_s * 1e3:.0f} ms, cloud "
                f"{CLOUD_LATENCY_S * 1e3:.0f} ms a request; {runs} interleaved runs each"
            )
            bare_argv = [sys.executable, "-c", "pass"]
            builds = {"this": env | {"PYTHONPATH": CHECKOUT}}
            if baseline is not None:
                # An older checkout knows no agent, and refuses its variable as an unknown setting.
                older = {k: v for k, v in env.items() if k != "BLELOCK_AGENT_SOCKET"}
                builds["baseline"] = older | {"PYTHONPATH": baseline}
            # The agent's socket in the scratch directory (mkdtemp made it 0700).
            builds["agent"] = builds["this"] | {
                "BLELOCK_AGENT_SOCKET": os.path.join(scratch, "agent.sock")
            }
            agent = await start_agent(builds["agent"])
            for plugin in plugins:  # warm-up: the agent imports a vendor's modules on first use
                argv = [sys.executable, "-m", "blelock", "open", ids[plugin.name][0], "--online"]
                await timed([*argv, "--vendor", plugin.name], builds["agent"])
            cases = [(build, p.name, mode) for p in plugins for mode in modes for build in builds]
            wall: dict[tuple[str, str, str], list[float]] = {case: [] for case in cases}
            floor: dict[tuple[str, str, str], list[float]] = {case: [] for case in cases}
            sums: dict[tuple[str, str, str], list[float]] = {case: [] for case in cases}
            calls: dict[tuple[str, str, str], set[int]] = {case: set() for case in cases}
            bare: list[float] = []
            print(
                "bytecode: "
                + (
                    "cached (a temporary PYTHONPYCACHEPREFIX, filled by an untimed run of each)"
                    if bytecode_cache
                    else "compiled from source every run (PYTHONDONTWRITEBYTECODE is set)"
                    if env.get("PYTHONDONTWRITEBYTECODE")
                    else "as this environment caches it"
                )
            )
            if bytecode_cache:
                for build, vendor, mode in cases:
                    argv = [sys.executable, "-m", "blelock", "open", ids[vendor][0], f"--{mode}"]
                    await timed([*argv, "--vendor", vendor], builds[build])
                CPU.clear()  # the warm-up runs are not among the figures
            for _ in range(runs):
                bare.append(await timed(bare_argv, env))
                for build, vendor, mode in cases:
                    lock = ids[vendor][0]
                    argv = [sys.executable, "-m", "blelock", "open", lock, f"--{mode}"]
                    argv += ["--vendor", vendor]
                    agent_cpu = cpu_of_process(agent.pid)
                    elapsed, modelled, summed, used = await cli_run(
                        running, argv, builds[build], lock
                    )
                    if build == "agent":
                        AGENT_CPU.setdefault((vendor, mode), []).append(
                            cpu_of_process(agent.pid) - agent_cpu
                        )
                    wall[build, vendor, mode].append(elapsed)
                    floor[build, vendor, mode].append(modelled)
                    sums[build, vendor, mode].append(summed)
                    calls[build, vendor, mode].add(used)
            print(f"bare `python -c pass`            {figures(bare)}")
            bare_cpu = statistics.median(CPU[(*bare_argv, _build_key(env))])
            print(f"   CPU of the bare interpreter: median {bare_cpu * 1e3:.1f} ms")
            base = statistics.median(bare)
            worst = worst_agent = 0.0
            for case in cases:
                build, vendor, mode = case
                modelled = statistics.median(floor[case])
                ratio = statistics.median(wall[case]) / (modelled + base)
                worst = max(worst, ratio) if build == "this" else worst
                worst_agent = max(worst_agent, ratio) if build == "agent" else worst_agent
                print(
                    f"{build:>8} {vendor:>8} {mode:<7} {figures(wall[case])}; modelled "
                    f"{modelled * 1e3:5.1f} ms ({'/'.join(map(str, sorted(calls[case])))} cloud "
                    f"call(s)) + bare {base * 1e3:4.1f} ms; ratio {ratio:.3f} (target {TARGET})"
                )
                summed = statistics.median(sums[case])
                if abs(summed - modelled) > 0.001:
                    print(
                        f"{'':>26}waits that can overlap: {summed * 1e3:.1f} ms summed one "
                        f"after another, {modelled * 1e3:.1f} overlapped"
                    )
                lock = ids[vendor][0]
                argv = (sys.executable, "-m", "blelock", "open", lock, f"--{mode}")
                cpu = CPU[(*argv, "--vendor", vendor, _build_key(builds[build]))]
                served = AGENT_CPU.get((vendor, mode), []) if build == "agent" else []
                spent = statistics.median(cpu) + (statistics.median(served) if served else 0.0)
                idle = (modelled + spent) / (modelled + bare_cpu)
                print(
                    f"{'':>26}CPU {figures(cpu)}; on an idle machine ≈ modelled + CPU: "
                    f"ratio ≈ {idle:.3f}"
                )
                if served:
                    print(f"{'':>26}the agent's CPU for it {figures(served)} (in the ratio ≈)")
                if vendor in PROTOCOL_MINIMUM:
                    minimum = PROTOCOL_MINIMUM[vendor]()
                    print(
                        f"{'':>26}protocol's minimum {minimum * 1e3:.1f} ms (radio counted "
                        f"{modelled * 1e3:.1f}); ratio to it + bare "
                        f"{statistics.median(wall[case]) / (minimum + base):.3f}"
                    )
            agent.terminate()
            await agent.wait()
            if with_timeline:
                for plugin in plugins:
                    for mode in modes:
                        argv = [sys.executable, "-m", "blelock", "open", ids[plugin.name][0]]
                        argv += [f"--{mode}", "--vendor", plugin.name]
                        marks = await timeline(running, argv, builds["this"])
                        print(f"timeline {plugin.name:>8} {mode:<7} {marks}")
            print(
                f"end: {load()}; worst ratio {worst:.3f} cold, {worst_agent:.3f} through the agent"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", metavar="DIR", help="another checkout to compare with")
    parser.add_argument(
        "--bytecode-cache",
        action="store_true",
        help="run the commands with their bytecode cached, as an installed blelock has it",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="then one hooked run of each command: when it first asked the radio, and exited",
    )
    parser.add_argument(
        "--vendor",
        action="append",
        help="measure only this vendor (repeatable; default: every vendor that opens locks)",
    )
    parser.add_argument(
        "--mode", choices=("online", "offline"), action="append", help="only this mode"
    )
    args = parser.parse_args()
    print(reference(), flush=True)
    baseline = None if args.baseline is None else os.path.abspath(args.baseline)
    # The world's loop keeps its timers to microseconds: see simulators.event_loop.
    run_precisely(
        bench(
            args.runs,
            baseline,
            bytecode_cache=args.bytecode_cache,
            with_timeline=args.timeline,
            only=args.vendor,
            modes=tuple(args.mode or ("online", "offline")),
        )
    )


if __name__ == "__main__":
    main()
