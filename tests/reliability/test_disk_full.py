"""A lock is opened only when its records can be kept: the store reserves room before a visit.

Two tiers fill the store while a technician keeps unlocking offline: SQLite's own page limit
(``max_page_count``, portable, always runs) and a really full filesystem (a small tmpfs, when
running as root). Each counts the simulated lock's own openings against the records kept: they
must be equal, and once the room is gone a visit is refused before the lock is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blelock.config import Settings
from blelock.errors import StoreError, StoreFull
from blelock.jobs import context, open_store, run_operation
from blelock.model import MacAddress, VisitResult, parse_mac
from blelock.store.db import Database
from blelock.store.outbox import room_problem
from blelock.vendors.base import Mode, OperationRequest
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.jobs import key_store, refresh_offline_keys
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from simulators.world import RunningWorld
from tests.conftest import closed_port_url, settings_for


async def visit(
    mac: MacAddress, operation: str, settings: Settings, *, mode: Mode = "auto"
) -> VisitResult:
    """An unlock as `blelock unlock` runs it (room for its records is made first)."""
    return await run_operation(settings, mac, OperationRequest(operation, mode), vendor="noke")


TECH = "tech-7"
VISITS = 100
"""More visits than the room left can take: the run must reach the refusal."""


async def _sync(running: RunningWorld) -> None:
    online = settings_for(running)
    mac = parse_mac(running.world.locks[0].mac)
    async with open_store(online) as store, NokeCloud.from_settings(online) as cloud:
        await refresh_offline_keys(
            cloud, key_store(context(NOKE, online, store)), macs=[mac], issue_for=[TECH]
        )


async def _unlock_until_full(
    running: RunningWorld, use_up_some_room: Callable[[], object]
) -> tuple[int, list[StoreError]]:
    """Unlock offline VISITS times, using up a little room before each; (successes, failures)."""
    offline = settings_for(running, BLELOCK_NOKE_URL=closed_port_url())
    mac = parse_mac(running.world.locks[0].mac)
    successes, failures = 0, []
    for _ in range(VISITS):
        use_up_some_room()
        try:
            await visit(mac, "unlock", offline)
        except StoreError as exc:
            failures.append(exc)
        else:
            successes += 1
    return successes, failures


async def _kept(running: RunningWorld) -> int:
    async with open_store(settings_for(running)) as store:
        return await store.outbox("noke").pending_count()


def _assert_nothing_lost(running: RunningWorld, successes: int, kept: int) -> None:
    lock = running.world.locks[0]
    opens = lock.offline_unlocks + lock.unlocks
    assert opens == successes, "every opening is a visit that succeeded"
    assert kept == len(lock.server_records), "every record the lock gave was kept"
    assert opens == kept, "one record per opening"


# --- tier 1: SQLite's page limit (portable) -------------------------------------------------


@pytest.fixture
def page_limit(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Every store opened gets ``max_page_count`` = ``limit["pages"]`` (0: no limit)."""
    limit = {"pages": 0}
    opener = Database.open.__func__  # type: ignore[attr-defined]

    async def limited(cls: type[Database], path: Path, *args: object) -> Database:
        db: Database = await opener(cls, path, *args)
        if limit["pages"]:
            await db.run(lambda c: c.execute(f"PRAGMA max_page_count = {limit['pages']}"))
        return db

    monkeypatch.setattr(Database, "open", classmethod(limited))
    return limit


async def test_page_limit_refuses_before_the_lock_opens(
    running_world: RunningWorld, page_limit: dict[str, int], private_store: Path
) -> None:
    await _sync(running_world)
    path = private_store / "data" / "blelock.db"
    with contextlib.closing(sqlite3.connect(path)) as probe:
        pages = int(probe.execute("PRAGMA page_count").fetchone()[0])
        probe.execute("CREATE TABLE ballast (filler BLOB)")
        probe.commit()
    # Room for the reserve and a few pages more; the ballast eats a page before each visit.
    page_limit["pages"] = pages + 60

    def ballast() -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute(f"PRAGMA max_page_count = {page_limit['pages']}")
            with contextlib.suppress(sqlite3.OperationalError):  # full: the visits still try
                conn.execute("INSERT INTO ballast VALUES (zeroblob(3000))")
                conn.commit()

    successes, failures = await _unlock_until_full(running_world, ballast)
    page_limit["pages"] = 0
    _assert_nothing_lost(running_world, successes, await _kept(running_world))
    assert successes >= 1 and failures, (successes, failures)
    assert [e.one_line() for e in failures if not isinstance(e, StoreFull)] == []
    assert "size limit" in failures[0].message and "not touched" in failures[0].message


# --- tier 2: a really full filesystem (tmpfs; needs root) ------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the disk-full test needs root in CI (it mounts a small tmpfs)")
        pytest.skip("needs root to mount a small tmpfs (runs in CI)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", disk], check=True)
    try:
        monkeypatch.setenv("BLELOCK_DATA_DIR", str(disk / "data"))
        yield disk
    finally:
        subprocess.run(["umount", "-l", disk], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill the filesystem up to ``leave`` bytes free; the filler file's path."""
    filler = disk / "filler"
    with filler.open("ab") as out:
        while (stat := os.statvfs(disk)).f_bavail * stat.f_frsize > leave:
            out.write(b"\0" * min(4096, stat.f_bavail * stat.f_frsize - leave))
            out.flush()
    return filler


def _grow(filler: Path) -> Callable[[], None]:
    def grow() -> None:
        try:
            with filler.open("ab") as out:
                out.write(b"\0" * 8192)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise

    return grow


async def test_full_disk_refuses_before_the_lock_opens(
    running_world: RunningWorld, small_disk: Path
) -> None:
    await _sync(running_world)
    assert await asyncio.to_thread(room_problem, small_disk / "data") is None
    # What a visit needs (448 KiB with the WAL index) and 80 KiB more: the filler eats 8 KiB
    # before each visit.
    filler = _fill(small_disk, leave=528 * 1024)
    successes, failures = await _unlock_until_full(running_world, _grow(filler))
    problem = await asyncio.to_thread(room_problem, small_disk / "data")
    filler.unlink()  # room again, to read what was kept
    _assert_nothing_lost(running_world, successes, await _kept(running_world))
    assert successes >= 1 and failures, (successes, failures)
    assert [e.one_line() for e in failures if not isinstance(e, StoreFull)] == []
    first = failures[0]
    assert str(small_disk / "data") in first.message and "disk" in first.message
    assert first.lock_id == running_world.world.locks[0].mac and first.hint
    assert problem is not None and "full" in problem  # what health reports
