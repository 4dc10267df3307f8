"""kill -9 at random points: the outbox loses nothing and the cloud, deduplicating by batch key,
sees every record exactly once.

A worker process (outbox_worker.py) fills the outbox and drains it to a stand-in cloud (a
directory of uploads, each fsync'd before the acknowledgement). It is SIGKILLed after a seeded
random delay, a second worker is started on the same store and killed too, and a third one
finishes the drain. The delay is the experiment; the test synchronises only by waiting on its
processes.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("outbox_worker.py")
ROOT = Path(__file__).resolve().parents[2]
RECORDS = 3000
CHUNK = 100
BATCH = 50
SEEDS = range(15)
DRAIN_SEEDS = range(6)
PROCESS_TIMEOUT_S = 30.0
"""A worker that has not finished by then is hung, not slow: fail rather than wait forever."""

Identity = tuple[str, str, str]


@dataclass(frozen=True)
class Files:
    db: Path
    cloud: Path
    acked: Path


def _files(tmp_path: Path) -> Files:
    return Files(tmp_path / "data" / "blelock.db", tmp_path / "cloud", tmp_path / "acked")


def _start(files: Files, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, str(WORKER), str(files.db), str(files.cloud), str(files.acked)]
    child = subprocess.Popen(
        [*command, f"--records={RECORDS}", f"--chunk={CHUNK}", f"--batch={BATCH}", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    # Wait for the worker to say its imports are done (a read on its pipe, not a sleep).
    assert child.stdout.readline().strip() == "started", child.stderr and child.stderr.read()
    return child


def _finish(child: subprocess.Popen[str]) -> str:
    out, err = child.communicate(timeout=PROCESS_TIMEOUT_S)
    assert child.returncode == 0, err
    return out


def _run_killed(files: Files, delay: float, *extra: str) -> bool:
    """Run a worker, SIGKILL it after ``delay`` seconds of work; True if the kill landed."""
    child = _start(files, *extra)
    try:
        child.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
    child.communicate(timeout=PROCESS_TIMEOUT_S)
    return child.returncode == -signal.SIGKILL


def _make_records() -> list[Identity]:
    sys.path.insert(0, str(WORKER.parent))
    try:
        from outbox_worker import make_records
    finally:
        sys.path.pop(0)
    return [(r.lock_id, r.context, r.payload) for r in make_records(RECORDS)]


ALL = _make_records()


def _deliveries(cloud: Path) -> list[tuple[str, tuple[Identity, ...]]]:
    """Every upload the cloud received, in arrival order (drafts a kill left behind are not)."""
    deliveries = []
    for upload_file in sorted(cloud.glob("*.json")):
        upload = json.loads(upload_file.read_text())
        records = tuple((lock, session, payload) for lock, session, _, payload in upload["records"])
        deliveries.append((upload["key"], records))
    return deliveries


def _acked_chunks(acked: Path) -> set[int]:
    return {int(line) for line in acked.read_text().split()} if acked.exists() else set()


def _check_cloud(files: Files) -> None:
    """What the cloud's idempotency-key handling would make of what it received."""
    deliveries = _deliveries(files.cloud)
    by_key: dict[str, tuple[Identity, ...]] = {}
    for key, records in deliveries:
        # A resent batch carries the same key AND the same records, or dedup would drop data.
        assert by_key.setdefault(key, records) == records, f"batch {key} changed between sends"
    once = [record for records in by_key.values() for record in records]
    assert len(once) == len(set(once)), "a record reached the cloud under two batch keys"
    delivered = set(once)
    assert delivered <= set(ALL), "the cloud received a record nobody appended"
    acked = _acked_chunks(files.acked)
    for chunk in range(0, RECORDS // CHUNK):
        appended = set(ALL[chunk * CHUNK : (chunk + 1) * CHUNK])
        if chunk in acked:
            assert appended <= delivered, f"chunk {chunk} was acknowledged to the user but lost"
        else:  # appended in one transaction: all of it reached the cloud, or none
            assert appended <= delivered or not appended & delivered, f"chunk {chunk} was torn"


def _check_empty(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM outbox_batches").fetchone() == (0,)
    conn.close()


@pytest.fixture(scope="module")
def full_run_s(tmp_path_factory: pytest.TempPathFactory) -> float:
    """A run nobody kills: the happy path, and how long the work takes (the kill window)."""
    files = _files(tmp_path_factory.mktemp("calibrate"))
    child = _start(files)
    began = time.monotonic()
    assert _finish(child).split() == ["pending", "0"]
    elapsed = time.monotonic() - began
    assert sorted(r for _, records in _deliveries(files.cloud) for r in records) == sorted(ALL)
    _check_empty(files.db)
    return elapsed


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_at_random_points_loses_and_duplicates_nothing(
    seed: int, full_run_s: float, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    files = _files(tmp_path)
    # First the filler+drainer dies somewhere in its run, then a drainer dies somewhere in its.
    _run_killed(files, rng.uniform(0, full_run_s))
    _run_killed(files, rng.uniform(0, full_run_s / 2), "--drain-only")
    assert _finish(_start(files, "--drain-only")).split() == ["pending", "0"]
    _check_cloud(files)
    _check_empty(files.db)


@pytest.mark.parametrize("uploads", [1, 7])
def test_kill_between_upload_and_acknowledge_resends_the_same_batch(
    uploads: int, tmp_path: Path
) -> None:
    files = _files(tmp_path)
    child = _start(files, f"--die-after-upload={uploads}")
    child.communicate(timeout=PROCESS_TIMEOUT_S)
    assert child.returncode == -signal.SIGKILL
    sent_before = _deliveries(files.cloud)
    assert len(sent_before) == uploads

    assert _finish(_start(files, "--drain-only")).split() == ["pending", "0"]
    deliveries = _deliveries(files.cloud)
    # The unacknowledged batch went again first, under the key the cloud already saw.
    assert deliveries[uploads] == sent_before[-1]
    _check_cloud(files)
    assert {r for _, records in deliveries for r in records} == set(ALL)
    _check_empty(files.db)


@pytest.mark.parametrize("seed", DRAIN_SEEDS)
def test_kill_9_of_the_pipelined_drain_loses_and_duplicates_nothing(
    seed: int, full_run_s: float, tmp_path: Path
) -> None:
    """``drain_outbox`` commits one group's acknowledgement with the next group's lease while
    the current group is posted: a kill anywhere in that (before, inside or after the combined
    commit, between posts) still leaves every record at the cloud once, after dedupe."""
    rng = random.Random(1000 + seed)
    files = _files(tmp_path)
    _run_killed(files, rng.uniform(0, full_run_s), "--via-drain")
    _run_killed(files, rng.uniform(0, full_run_s / 2), "--drain-only", "--via-drain")
    assert _finish(_start(files, "--drain-only", "--via-drain")).split() == ["pending", "0"]
    _check_cloud(files)  # the first kill may land while filling: only kept chunks must arrive
    _check_empty(files.db)


@pytest.mark.parametrize("uploads", [1, 8, 9, 13])
def test_kill_of_the_pipelined_drain_after_an_upload_resends_under_the_same_keys(
    uploads: int, tmp_path: Path
) -> None:
    """Killed right after the K-th post (K = 8: the last of the first group, whose
    acknowledgement was not yet committed; 9: the first of the second group, posted while the
    first group's acknowledgement and the next lease committed): nothing lost, and whatever is
    resent goes under the key the cloud saw it with."""
    files = _files(tmp_path)
    child = _start(files, "--via-drain", f"--die-after-upload={uploads}")
    child.communicate(timeout=PROCESS_TIMEOUT_S)
    assert child.returncode == -signal.SIGKILL
    assert len(_deliveries(files.cloud)) == uploads

    assert _finish(_start(files, "--drain-only", "--via-drain")).split() == ["pending", "0"]
    _check_cloud(files)
    assert {r for _, records in _deliveries(files.cloud) for r in records} == set(ALL)
    _check_empty(files.db)
