"""Benchmark: access grants — 1,000 grants over 200 locks of the four vendors (Nokē, Keyless,
Nuki through its Web API, Unloc), reconciled against `blelock-sim`'s clouds over real HTTP (the
simulator in its own process).

Per repetition (a fresh world and store each): the time for the reconciler to converge from
nothing, the vendor requests it made per grant (counted by the simulated clouds), the
reconciler's peak Python memory (tracemalloc); then no-change reconciles (target: well under a
second for 1,000 grants, and no vendor request at all). Half the grants have weekly windows
(Keyless writes one permission per opening; Nokē has no schedules, so those are rounded; Nuki
and Unloc keep them on the code / key). Nuki's Web API confirms by reading back and Unloc makes
keys by jobs, both in the simulator's own (real) time: they dominate the time to converge.

    .venv/bin/python scripts/bench/access.py [--grants 1000] [--locks 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from blelock import access, jobs
from blelock.access.reconcile import ReconcileReport
from blelock.clock import SystemClock
from blelock.config import Settings, load_settings
from blelock.vendors.keyless.cloud import KeylessCloud
from blelock.vendors.keyless.models import Role
from simulators.process import simulator_process

NO_CHANGE_TARGET_S = 1.0
KEYLESS_USERS = 20


def figures(values: list[float]) -> str:
    return f"min {min(values):.3f}  median {statistics.median(values):.3f}  max {max(values):.3f}"


def requests(env: dict[str, str]) -> int:
    state = httpx.get(env["BLELOCK_NOKE_URL"] + "_sim/state", timeout=30).json()
    return sum(sum(counts.values()) for counts in state["requests"].values())


def nuki_code(n: int) -> str:
    """A valid, per-lock unique keypad code for grant ``n`` (digits 1-9, never starting 12)."""
    digits, value = [], n
    for _ in range(5):
        digits.append(str(value % 9 + 1))
        value //= 9
    return "9" + "".join(digits)


async def make_grants(settings: Settings, announced: dict[str, Any], grants: int) -> None:
    from blelock.grants import Code
    from blelock.vendors.unloc.cloud import UnlocCloud

    async with UnlocCloud.from_settings(settings) as unloc:
        unloc_locks = [lock for lock in await unloc.locks() if lock.timezone == "Europe/Oslo"]
    locks = (
        [f"noke:{lock['mac']}" for lock in announced["locks"]]
        + [f"keyless:{lock}" for lock in announced["keyless_locks"]]
        + [f"nuki:{1001 + i}" for i in range(len(announced.get("nuki_locks", [])))]
        + [f"unloc:{lock.id}" for lock in unloc_locks]
    )
    async with KeylessCloud.from_settings(settings) as admin:
        users = [(await admin.create_user(Role.USER)).id for _ in range(KEYLESS_USERS)]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = SystemClock()
    async with jobs.open_store(settings) as store, access.open_grants(settings, store) as held:
        for n in range(grants):
            lock = locks[n % len(locks)]
            await access.create_grant(
                access.GrantRequest(
                    holder=f"Renter {n}",
                    locks=[lock],
                    ends_at=now + dt.timedelta(days=30, minutes=n),
                    windows=["Mon-Sat 06:00-22:00"] if n % 2 else [],
                    timezone="Europe/Oslo",
                    identities={
                        "tracking_key": f"renter-{n}",
                        "keyless_user": users[n % len(users)],
                        "phone": f"+4791{n:06d}",
                    },
                    codes={"keypad_code": Code(nuki_code(n))},
                    round=True,
                ),
                held, access.access_plugins(), lambda p: jobs.context(p, settings, store),
                settings, clock,
            )  # fmt: skip


async def reconcile(settings: Settings) -> tuple[float, ReconcileReport]:
    async with jobs.open_store(settings) as store, access.open_grants(settings, store) as held:
        began = time.perf_counter()
        report = await access.reconcile(
            held, lambda p: jobs.context(p, settings, store), settings, SystemClock(),
            until_settled=True,
        )  # fmt: skip
        return time.perf_counter() - began, report


def repetition(grants: int, locks: int, seed: int, no_change_runs: int) -> dict[str, Any]:
    per_vendor = locks // 4
    with (
        simulator_process(
            "--locks", str(per_vendor), "--keyless-locks", str(per_vendor),
            "--nuki-locks", str(per_vendor), "--unloc-locks", str(3 * (locks - 3 * per_vendor)),
            "--seed", str(seed),
        ) as announced,
        tempfile.TemporaryDirectory(prefix="blelock-bench-access-") as scratch,
    ):  # fmt: skip
        env = announced["env"] | {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch}
        settings = load_settings(environ=env, read_file=False)
        asyncio.run(make_grants(settings, announced, grants))
        before = requests(env)
        tracemalloc.start()
        converge_s, report = asyncio.run(reconcile(settings))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        made = requests(env) - before  # (the introspection route is not counted)
        assert not report.problems, report.problems[:3]
        idle: list[float] = []
        idle_requests = 0
        for _ in range(no_change_runs):
            mark = requests(env)
            seconds, again = asyncio.run(reconcile(settings))
            idle.append(seconds)
            idle_requests += requests(env) - mark
            assert again.changed == 0 and again.vendor_calls == 0
        return {
            "converge_s": converge_s,
            "requests_per_grant": made / grants,
            "items": report.applied,
            "peak_mib": peak / 2**20,
            "no_change_s": idle,
            "no_change_requests": idle_requests,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--locks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-change-runs", type=int, default=5)
    args = parser.parse_args()
    os.environ.pop("BLELOCK_CONFIG", None)
    runs = [
        repetition(args.grants, args.locks, seed, args.no_change_runs)
        for seed in range(1, args.repeat + 1)
    ]
    idle = [s for run in runs for s in run["no_change_s"]]
    idle_requests = sum(r["no_change_requests"] for r in runs)
    lines = [
        f"access grants: {args.grants} over {args.locks} locks (Nokē, Keyless, Nuki, Unloc), "
        f"{args.repeat} repetition(s)",
        f"  vendor-side items made: {runs[0]['items']}",
        f"  converge from nothing (s): {figures([r['converge_s'] for r in runs])}",
        f"  vendor requests per grant: {figures([r['requests_per_grant'] for r in runs])}",
        f"  reconciler peak memory (MiB): {figures([r['peak_mib'] for r in runs])}",
        f"  no-change reconcile (s): {figures(idle)}  (target < {NO_CHANGE_TARGET_S:.1f}, "
        f"ratio {max(idle) / NO_CHANGE_TARGET_S:.3f})",
        f"  vendor requests during no-change reconciles: {idle_requests}",
    ]
    print("\n".join(lines))
    return 0 if max(idle) < NO_CHANGE_TARGET_S and not idle_requests else 1


if __name__ == "__main__":
    raise SystemExit(main())
