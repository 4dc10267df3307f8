"""kill -9 of the grant reconciler (`blelock access reconcile`) at random points over 50 grants,
against the simulated Keyless platform — whose permissions take no idempotency key, so a create
repeated after a kill would be a second permission.

Each kill lands while the run is working: the test waits until the platform's permission count
moved, then kills after a random few milliseconds more. After the last, unkilled run every grant
is at the platform exactly once (0 duplicates, 0 lost); then every grant is revoked, and killed
runs again remove them until none is left. On SQLite (one reconciler), and on PostgreSQL with
two reconcilers at once, one of them killed at a time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blelock import access
from blelock.access.reconcile import desired_items, effective_target
from blelock.access.store import GrantStore, ItemState
from blelock.clock import SystemClock
from blelock.config import Settings, load_settings
from blelock.jobs import context, open_store
from blelock.vendors.keyless.cloud import KeylessCloud
from blelock.vendors.keyless.models import Role
from simulators.process import simulator_process
from tests.e2e.conftest import cli_environment

GRANTS = 50
KILLS = {"apply": 16, "remove": 8}
"""Kill points wanted per store while creating, and at least this many while removing; at least
KILLED_AT_LEAST must land in a working run in all. Removing is the shorter phase and may run out
of work first on a slow, loaded machine, so it is asked for what creating left short."""
KILLED_AT_LEAST = 20
RUN_TIMEOUT_S = 60
LEASE_S = "2"
"""Short, so that a killed reconciler's grants are taken over quickly; each vendor call is cut at
half of it, which a loaded machine's calls to the local simulator stay well inside."""


@pytest.fixture
def platform() -> Iterator[dict[str, Any]]:
    with simulator_process("--locks", "1", "--keyless-locks", "2", "--seed", "7") as announced:
        yield announced


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings(environ=env, read_file=False)


def cloud(env: dict[str, str]) -> KeylessCloud:
    settings = settings_of(env)
    return KeylessCloud.from_settings(settings)


async def _users(env: dict[str, str], count: int) -> list[str]:
    async with cloud(env) as admin:
        return [(await admin.create_user(Role.USER)).id for _ in range(count)]


def permissions(env: dict[str, str], users: set[str]) -> list[tuple[str, str, str, str, str]]:
    async def listing() -> list[tuple[str, str, str, str, str]]:
        async with cloud(env) as admin:
            return [
                (p.id, p.user_id, p.locking_device_id, p.start.isoformat(), p.end.isoformat())
                async for p in admin.permissions(limit=100)
                if p.user_id in users
            ]

    return asyncio.run(listing())


async def _make_grants(
    grants: GrantStore, settings: Settings, store: Any, locks: list[str], users: list[str]
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    plugins = access.access_plugins()
    for n, user in enumerate(users):
        await access.create_grant(
            access.GrantRequest(
                holder=f"Renter {n}", locks=locks, starts_at=now,
                ends_at=now + dt.timedelta(days=7, minutes=n), windows=["Mon-Sun 00:00-24:00"],
                identities={"keyless_user": user},
                grant_id=f"lease-{n:02d}",
            ),
            grants, plugins, lambda p: context(p, settings, store), settings,
            SystemClock(),
        )  # fmt: skip


async def _with_grants(settings: Settings, fn: Callable[[GrantStore, Any], Any]) -> Any:
    async with open_store(settings) as store, access.open_grants(settings, store) as grants:
        return await fn(grants, store)


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "blelock", "access", "reconcile", *args],
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def progress_of(env: dict[str, str]) -> Callable[[], object]:
    """What the reconcilers have recorded so far (read-only, cheap): it moves while they work."""
    query = "SELECT state, count(*) FROM access_items GROUP BY state ORDER BY state"
    if "BLELOCK_ACCESS_DATABASE" in env:
        import psycopg

        def shared() -> object:
            with psycopg.connect(env["BLELOCK_ACCESS_DATABASE"]) as conn:
                return conn.execute(query).fetchall()

        return shared
    path = Path(env["BLELOCK_DATA_DIR"]) / "blelock.db"

    def local() -> object:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return conn.execute(query).fetchall()

    return local


def kill_while_working(
    processes: list[subprocess.Popen[str]], victim: int, count: Callable[[], object],
    rng: random.Random,
) -> bool:  # fmt: skip
    """Wait until the store's record of the work moves (a run is working), then kill
    ``victim`` a random moment later; whether it was killed rather than done."""
    before = count()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while count() == before and processes[victim].poll() is None:
        assert time.monotonic() < deadline, "the reconciler never got to work"
    time.sleep(rng.uniform(0.0, 0.08))  # the random kill point (not a synchronisation)
    processes[victim].send_signal(signal.SIGKILL)
    return processes[victim].wait(timeout=RUN_TIMEOUT_S) == -signal.SIGKILL


def converge(env: dict[str, str], reconcilers: int) -> None:
    finals = [spawn(env, "--until-settled") for _ in range(reconcilers)]
    for final in finals:
        assert final.wait(timeout=RUN_TIMEOUT_S) == 0, final.stderr.read() if final.stderr else ""


def run_phase(env: dict[str, str], reconcilers: int, seed: int, wanted: int) -> int:
    rng = random.Random(seed)
    count = progress_of(env)
    processes = [spawn(env) for _ in range(reconcilers)]
    kills = 0
    try:
        for _ in range(3 * wanted):
            if kills >= wanted:
                break
            victim = rng.randrange(reconcilers)
            if processes[victim].poll() is not None:  # it finished: start it again
                processes[victim] = spawn(env)
            kills += kill_while_working(processes, victim, count, rng)
            processes[victim] = spawn(env)
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=RUN_TIMEOUT_S)
    return kills


def check_kill_9_converges(env: dict[str, str], reconcilers: int) -> None:
    locks = env["KEYLESS_LOCKS"].split(",")
    env = {k: v for k, v in env.items() if k != "KEYLESS_LOCKS"}
    settings = settings_of(env)
    users = asyncio.run(_users(env, GRANTS))
    everyone = set(users)
    asyncio.run(_with_grants(settings, lambda g, s: _make_grants(g, settings, s, locks, users)))

    killed = run_phase(env, reconcilers, seed=1, wanted=KILLS["apply"])
    converge(env, reconcilers)
    held = permissions(env, everyone)
    per_item = collections.Counter((user, lock, start, end) for _, user, lock, start, end in held)
    assert max(per_item.values()) == 1, "a permission was created twice"  # 0 duplicates
    records = asyncio.run(_with_grants(settings, lambda g, s: g.grants()))
    now = dt.datetime.now(dt.UTC)
    expected = {
        (record.grant.holder.identities["keyless_user"], target.lock.lock_id,
         item.native["start"], item.native["end"])
        for record in records
        for target in record.targets
        for item in desired_items(
            access.access_plugins()["keyless"].access(),  # type: ignore[union-attr]
            effective_target(record, target.plan), now, revoked=False,
        ).values()
    }  # fmt: skip
    assert set(per_item) == expected  # 0 lost: every opening of every grant on every lock
    assert len(expected) >= 2 * GRANTS * len(locks)  # two or three openings each
    refs = {row.ref for r in records for row in r.items if row.state is ItemState.APPLIED}
    assert refs == {pid for pid, *_ in held}  # and the store knows each by its id
    assert {r.status().value for r in records} == {"active"}

    now = now.replace(microsecond=0)

    async def revoke_all(grants: GrantStore, store: Any) -> None:
        for record in await grants.grants():
            await grants.revoke(record.grant.id, now)

    asyncio.run(_with_grants(settings, revoke_all))
    wanted = max(KILLS["remove"], KILLED_AT_LEAST - killed)
    killed += run_phase(env, reconcilers, seed=2, wanted=wanted)
    converge(env, reconcilers)
    assert permissions(env, everyone) == []  # gone everywhere
    records = asyncio.run(_with_grants(settings, lambda g, s: g.grants()))
    assert {r.status().value for r in records} == {"revoked"}
    assert killed >= KILLED_AT_LEAST, killed  # kills that landed in a working run


def environment(platform: dict[str, Any], **extra: str) -> dict[str, str]:
    return cli_environment(
        **platform["env"],
        BLELOCK_ACCESS_LEASE_SECONDS=LEASE_S,
        BLELOCK_ACCESS_BATCH="2",  # progress every two grants: kills land mid-grant
        KEYLESS_LOCKS=",".join(platform["keyless_locks"]),
        **extra,
    )


def test_kill_9_of_the_reconciler_on_sqlite_converges_without_duplicates(
    platform: dict[str, Any],
) -> None:
    check_kill_9_converges(environment(platform), reconcilers=1)


@pytest.mark.postgres
def test_kill_9_of_one_of_two_reconcilers_on_postgres_converges_without_duplicates(
    platform: dict[str, Any], pg_database: str
) -> None:
    check_kill_9_converges(environment(platform, BLELOCK_ACCESS_DATABASE=pg_database), 2)
