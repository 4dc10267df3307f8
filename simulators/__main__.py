"""``blelock-sim``: the simulated world as a process, for harnesses and ``blelock demo``.

Prints the settings that point ``blelock`` at it (shell ``export`` lines, or one JSON line with
``--json``), then serves until SIGINT/SIGTERM, or until its standard input closes when started
with ``--until-stdin-closes`` (so a parent that dies never leaves it running).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import shlex
import signal
import sys
from collections.abc import Sequence

from simulators.event_loop import run as run_precisely
from simulators.faults import LinkFaults, parse_fault
from simulators.noke_cloud_state import CloudFaults
from simulators.noke_lock import MechanicalFaults
from simulators.radio import LatencyModel
from simulators.world import (
    RunningWorld,
    WorldSpec,
    build_world,
    lock_ids,
    preparations,
    serve_world,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blelock-sim",
        description="Simulated Nokē and Keyless locks and their clouds on 127.0.0.1.",
        epilog="Each cloud's runtime switch, on its own port: POST /_sim/cloud with "
        '{"mode": "down" | "slow" | "up", "delay_s": S, "lose_answers": N} (GET shows it); '
        "the cloud's state is kept. On the Nokē cloud's port, POST /_sim/noke/locks/MAC/press "
        '{"code": "10110"} enters a quick click on that lock, and /_sim/noke/locks/MAC/habits '
        '{"trailing_records": N, "sends_shutdown": B} changes how it ends a batch. '
        "The same --seed gives the same locks and keys; ports, API "
        "keys and the cloud's state are new on a restart.",
    )
    parser.add_argument("--locks", type=int, default=3, help="number of padlocks (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="world seed: MACs, keys, hardware")
    parser.add_argument(
        "--keyless-locks", type=int, default=0, help="Keyless padlocks on the platform (default 0)"
    )
    parser.add_argument(
        "--unloc-locks", type=int, default=0, help="locks of the Unloc project (default 0)"
    )
    model = LatencyModel()
    latency = parser.add_argument_group("latency model (milliseconds)")
    latency.add_argument(
        "--adv-ms",
        type=float,
        default=model.advertising_interval_s * 1000,
        help="advertising interval",
    )
    latency.add_argument(
        "--connect-ms",
        type=float,
        default=model.connect_s * 1000,
        help="connection setup + service discovery",
    )
    latency.add_argument(
        "--interval-ms",
        type=float,
        default=model.connection_interval_s * 1000,
        help="connection interval: one ATT request/response",
    )
    latency.add_argument(
        "--write-rtt-ms",
        type=float,
        default=model.write_round_trip_s * 1000,
        help="a written packet to the lock's answer",
    )
    latency.add_argument(
        "--packets-per-interval",
        type=int,
        default=model.packets_per_interval,
        help="writes without response a link carries per connection interval (its throughput)",
    )
    latency.add_argument("--cloud-ms", type=float, default=0.0, help="added to every cloud call")
    faults = parser.add_argument_group("fault switches")
    faults.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="[N:]SPEC",
        help="link fault for lock N (1-based; all locks without N): drop-after=K, drop-times=K, "
        "refuse=K, slow=FACTOR, out-of-range. Repeatable.",
    )
    faults.add_argument(
        "--jam",
        action="append",
        type=int,
        default=[],
        metavar="N",
        help="lock N's mechanism fails its next unlock. Repeatable.",
    )
    faults.add_argument(
        "--cloud-fault",
        action="append",
        default=[],
        metavar="KIND=N",
        help="500=N, garbage=N or 429=N: the next N cloud answers (-1: all)",
    )
    parser.add_argument(
        "--offline-keys",
        type=int,
        default=0,
        metavar="K",
        help="issue offline keys for tracking keys tech-1..tech-K on every lock at start",
    )
    parser.add_argument(
        "--bluez",
        action="store_true",
        help="serve the radio as an emulated BlueZ on a private dbus-daemon: the settings name "
        "no bleak backend and set DBUS_SYSTEM_BUS_ADDRESS, so bleak uses its BlueZ backend",
    )
    faults.add_argument(
        "--bluez-fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="with --bluez: abort-by-local=K, connect-in-progress=K, scan-in-progress=K, "
        "software-abort=K, not-connected=K, drop-during-write=K, att=CODE[:K], slots=N, "
        "stale-cache. Repeatable.",
    )
    parser.add_argument(
        "--nuki-locks", type=int, default=0, metavar="N", help="Nuki Smart Locks, in pairing mode"
    )
    faults.add_argument(
        "--nuki-drift-s",
        type=float,
        default=0.0,
        metavar="S",
        help="every Nuki lock's clock runs S seconds off (until `blelock nuki set-time`)",
    )
    parser.add_argument("--json", action="store_true", help="print the settings as one JSON line")
    parser.add_argument(
        "--until-stdin-closes",
        action="store_true",
        help="exit when standard input reaches end of file",
    )
    return parser


def _link_faults(specs: Sequence[str], locks: int) -> dict[int, LinkFaults]:
    found: dict[int, LinkFaults] = {}
    for spec in specs:
        target, _, text = spec.rpartition(":") if ":" in spec else ("", "", spec)
        indexes = range(locks) if not target else [int(target) - 1]
        for index in indexes:
            if not 0 <= index < locks:
                raise ValueError(f"--fault {spec!r}: there is no lock {index + 1}")
            found[index] = parse_fault(text, found.get(index))
    return found


def _cloud_faults(specs: Sequence[str]) -> CloudFaults:
    faults = CloudFaults()
    names = {"500": "fail_with_500", "garbage": "garbage_json", "429": "rate_limit"}
    for spec in specs:
        kind, _, count = spec.partition("=")
        if kind not in names or not count.lstrip("-").isdigit():
            raise ValueError(f"--cloud-fault {spec!r}: expected 500=N, garbage=N or 429=N")
        setattr(faults, names[kind], int(count))
    return faults


def spec_from_args(args: argparse.Namespace) -> WorldSpec:
    if args.locks < 1:
        raise ValueError("--locks must be at least 1")
    if args.keyless_locks < 0:
        raise ValueError("--keyless-locks must be 0 or more")
    for number in args.jam:
        if not 1 <= number <= args.locks:
            raise ValueError(f"--jam {number}: there is no lock {number}")
    return WorldSpec(
        locks=args.locks,
        seed=args.seed,
        latency=LatencyModel(
            advertising_interval_s=args.adv_ms / 1000,
            connect_s=args.connect_ms / 1000,
            connection_interval_s=args.interval_ms / 1000,
            write_round_trip_s=args.write_rtt_ms / 1000,
            packets_per_interval=args.packets_per_interval,
        ),
        cloud_latency_s=args.cloud_ms / 1000,
        link_faults=_link_faults(args.fault, args.locks),
        mechanical_faults={n - 1: MechanicalFaults(jam_unlock=1) for n in args.jam},
        cloud_faults=_cloud_faults(args.cloud_fault),
        offline_tracking_keys=tuple(f"tech-{n}" for n in range(1, args.offline_keys + 1)),
        keyless_locks=args.keyless_locks,
        nuki_locks=max(0, args.nuki_locks),
        unloc_locks=max(0, args.unloc_locks),
    )


DEMO_TRACKING_KEY = "demo-technician"


def _access_units(running: RunningWorld) -> dict[str, str]:
    """A unit per vendor reached through its cloud: Nuki by smartlockId, Unloc by its id."""
    units = {}
    if running.world.nuki is not None and running.world.nuki.locks:
        units["nuki"] = "nuki:1001"  # the Web API's id of the first lock (nuki_world.py)
    if running.world.unloc is not None and running.world.unloc.state.locks:
        units["unloc"] = "unloc:" + next(iter(running.world.unloc.state.locks))
    return units


def _announce(
    running: RunningWorld, as_json: bool, *, environment: dict[str, str] | None = None
) -> None:
    environment = running.environment if environment is None else environment
    locks = [{"mac": lock.mac, "hardware": lock.hardware} for lock in running.world.locks]
    keyless = running.world.keyless
    keyless_locks = [] if keyless is None else [lock.locking_device_id for lock in keyless.locks]
    invitation = None if keyless is None else keyless.invitation_code
    nuki = running.world.nuki
    nuki_locks = [] if nuki is None else [{"mac": n.mac, "pin": n.security_pin} for n in nuki.locks]
    if as_json:
        announced = {"env": environment, "locks": locks, "keyless_locks": keyless_locks}
        announced["vendor_locks"] = lock_ids(running.world)  # every vendor's, by its name
        announced["nuki_locks"] = nuki_locks  # with the PIN each owner would tell
        # What a technician is handed by each vendor before the day starts (vendor-neutral
        # keys, so that `blelock demo` needs no vendor's name): enrolment codes, and the
        # options a key sync needs (Nokē issues offline keys for a tracking key).
        vendor_setup = {
            "expect_locks": len(locks) + len(keyless_locks) + len(nuki_locks),
            "enroll": {} if invitation is None else {"keyless": invitation},
            "prepare": preparations(running.world),  # blelock commands, by vendor (pairing)
            "sync_options": {"noke": {"tracking_key": [DEMO_TRACKING_KEY]}},
            # Who a renter is at each vendor, for an access grant (blelock access grant), and
            # the units of vendors whose grants name a lock the radio does not carry.
            "access_identities": {"tracking_key": "renter-214"}
            | ({} if keyless is None else {"keyless_user": keyless.technician_user_id})
            | ({} if running.world.unloc is None else {"phone": "+4790011214"}),
            "access_codes": {} if nuki is None else {"keypad_code": "493817"},
            "access_units": _access_units(running),
            "demo": _demo_setups(running, nuki_locks),
        }
        print(json.dumps(announced | {"keyless_invitation": invitation} | vendor_setup), flush=True)
        return
    for name, value in environment.items():
        print(f"export {name}={shlex.quote(value)}")
    for lock in locks:
        print(f"# lock {lock['mac']} ({lock['hardware']})")
    for lock_id in keyless_locks:
        print(f"# Keyless lock {lock_id}")
    if invitation is not None:
        print(f"# Keyless invitation code: {invitation}")
    for nuki_lock in nuki_locks:
        print(f"# Nuki lock {nuki_lock['mac']} (security PIN {nuki_lock['pin']})")
    for lock in [] if running.world.unloc is None else running.world.unloc.state.locks.values():
        print(f"# Unloc lock {lock.id} ({lock.timezone})")
    sys.stdout.flush()


def _demo_setups(running: RunningWorld, nuki_locks: list[dict[str, str]]) -> dict[str, object]:
    """What each vendor's own steps of `blelock demo` are handed (by vendor name)."""
    setups: dict[str, object] = {}
    if nuki_locks:
        setups["nuki"] = {"pins": {n["mac"]: n["pin"] for n in nuki_locks}}
    unloc, url = running.world.unloc, running.unloc_url
    if unloc is not None and url is not None:
        setups["unloc"] = unloc.demo_setup(url)
    return setups


async def _serve(
    spec: WorldSpec,
    *,
    as_json: bool,
    until_stdin_closes: bool,
    bluez: list[str] | None = None,
    nuki_drift_s: float = 0.0,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Keep a reference: the loop holds tasks weakly, and a collected watcher never stops us.
    watcher = asyncio.create_task(_stop_when_stdin_closes(stop)) if until_stdin_closes else None
    async with contextlib.AsyncExitStack() as stack:
        world = build_world(spec)
        # A fleet's world is millions of long-lived objects: left to the collector, every full
        # collection while serving walks all of them, and a 100,000-lock world spends seconds
        # of each sync's answers there. They live as long as the process: set them aside.
        gc.freeze()
        for nuki_lock in [] if world.nuki is None else world.nuki.locks:
            nuki_lock.clock_drift_s = nuki_drift_s
        if bluez is None:
            running = await stack.enter_async_context(serve_world(world))
            _announce(running, as_json)
        else:
            from simulators.bluez import BluezFaults, parse_bluez_fault, serve_bluez_world

            faults = BluezFaults()
            for text in bluez:
                faults = parse_bluez_fault(text, faults)
            served = await stack.enter_async_context(serve_bluez_world(world, faults))
            _announce(served.running, as_json, environment=served.environment)
        await stop.wait()
    if watcher is not None:
        watcher.cancel()


async def _stop_when_stdin_closes(stop: asyncio.Event) -> None:
    try:
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.read(4096):
            pass
    finally:  # end of input, or an input that is no pipe (a file, /dev/null): stop either way
        stop.set()


def _check_bluez(specs: Sequence[str]) -> None:
    from simulators.bluez import INSTALL_HINT, dbus_daemon, parse_bluez_fault

    if dbus_daemon() is None:
        raise ValueError(f"--bluez needs dbus-daemon: {INSTALL_HINT}")
    for text in specs:
        parse_bluez_fault(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        spec = spec_from_args(args)
        if args.bluez_fault and not args.bluez:
            raise ValueError("--bluez-fault needs --bluez")
        if args.bluez:
            _check_bluez(args.bluez_fault)
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        run_precisely(
            _serve(
                spec,
                as_json=args.json,
                until_stdin_closes=args.until_stdin_closes,
                bluez=args.bluez_fault if args.bluez else None,
                nuki_drift_s=args.nuki_drift_s,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
