"""Benchmark: the store at fleet scale — offline-key sync and a 100k-record outbox drain.

Each scenario runs in a fresh process, so its peak RSS (getrusage's ru_maxrss, a high-water mark
for the whole process) is its own and not the previous scenario's. The store lives in a
temporary directory on the same filesystem as the system temp dir, with the durable settings the
product uses (WAL, synchronous=FULL).

    .venv/bin/python scripts/bench/store.py

Prints one line per scenario: name, wall seconds, peak RSS in MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from blelock.clock import SystemClock
from blelock.model import LogRecord, MacAddress
from blelock.store.db import Database
from blelock.store.outbox import Outbox
from blelock.vendors.noke.keys import KeyStore
from blelock.vendors.noke.schema import MIGRATIONS as NOKE_MIGRATIONS
from blelock.vendors.noke.values import OfflineGrant

TRACKING_KEYS = 5
SYNC_SIZES = (1_000, 10_000, 100_000)
OUTBOX_RECORDS = 100_000
APPEND_CHUNK = 1_000
"""Records per append: roughly what a busy kiosk keeps between two syncs of one lock."""
UPLOAD_BATCH = 500
"""As blelock.sync.UPLOAD_BATCH."""


def _peak_rss_mib() -> float:
    # Linux reports KiB, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _grants(locks: int) -> list[OfflineGrant]:
    return [
        OfflineGrant(
            MacAddress(
                f"C7:{i >> 24 & 255:02X}:{i >> 16 & 255:02X}:{i >> 8 & 255:02X}:{i & 255:02X}:00"
            ),
            f"tracking-{k}",
            (i * TRACKING_KEYS + k).to_bytes(16, "big"),
            (i * TRACKING_KEYS + k).to_bytes(24, "big"),
        )
        for i in range(locks)
        for k in range(TRACKING_KEYS)
    ]


async def _sync(locks: int, directory: Path) -> None:
    grants = _grants(locks)
    async with await Database.open(directory / "blelock.db", {"noke": NOKE_MIGRATIONS}) as db:
        keys = KeyStore(db, await db.unlock(directory, {}), SystemClock(), dt.timedelta(days=30))
        began = time.perf_counter()
        first = await keys.apply_sync(grants, scope_macs=None)
        added_s = time.perf_counter() - began
        began = time.perf_counter()
        again = await keys.apply_sync(grants, scope_macs=None)
        resync_s = time.perf_counter() - began
    assert first.added == len(grants) and again.unchanged == len(grants)
    print(
        f"apply_sync {locks}x{TRACKING_KEYS} grants: first {added_s:.3f} s, "
        f"again {resync_s:.3f} s, peak RSS {_peak_rss_mib():.1f} MiB"
    )


async def _drain(directory: Path) -> None:
    async with await Database.open(directory / "blelock.db") as db:
        outbox = Outbox(db, "noke")
        began = time.perf_counter()
        for start in range(0, OUTBOX_RECORDS, APPEND_CHUNK):
            await outbox.append(
                [
                    LogRecord(
                        MacAddress(f"C7:E6:B0:00:{i >> 8 & 255:02X}:{i & 255:02X}"),
                        f"{i % 97:04x}" * 10,
                        1_790_000_000 + i,
                        f"{i:08x}" + "a5" * 16,
                    )
                    for i in range(start, start + APPEND_CHUNK)
                ]
            )
        append_s = time.perf_counter() - began
        began = time.perf_counter()
        drained = 0
        while (batch := await outbox.lease(UPLOAD_BATCH)) is not None:
            drained += await outbox.acknowledge(batch.key)
        drain_s = time.perf_counter() - began
    assert drained == OUTBOX_RECORDS
    print(
        f"outbox {OUTBOX_RECORDS} records: append {append_s:.3f} s "
        f"({OUTBOX_RECORDS // APPEND_CHUNK} appends), drain {drain_s:.3f} s "
        f"({OUTBOX_RECORDS // UPLOAD_BATCH} lease+ack), peak RSS {_peak_rss_mib():.1f} MiB"
    )


def _one(scenario: str) -> None:
    with tempfile.TemporaryDirectory(prefix="blelock-bench-") as scratch:
        if scenario == "drain":
            asyncio.run(_drain(Path(scratch)))
        else:
            asyncio.run(_sync(int(scenario), Path(scratch)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.one)
        return
    for scenario in [*map(str, SYNC_SIZES), "drain"]:
        subprocess.run([sys.executable, __file__, "--one", scenario], check=True)


if __name__ == "__main__":
    main()
