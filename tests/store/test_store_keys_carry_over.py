"""Upgrading a store whose offline keys are in the per-key rows of before (core migration 1's
``offline_keys``) to one row per lock: a technician who upgrades offline still opens his locks."""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
from pathlib import Path

import pytest
from store_fakes import START, FakeClock

from blelock.errors import OfflineKeyRevoked, StoreError
from blelock.model import MacAddress
from blelock.store.crypto import DataKey
from blelock.store.db import Database
from blelock.vendors.noke.keys import KeyStore
from blelock.vendors.noke.schema import MIGRATIONS as NOKE_MIGRATIONS
from blelock.vendors.noke.values import OfflineGrant

A = MacAddress("C7:E6:B0:C6:75:38")
B = MacAddress("D1:02:03:04:05:06")
DAY = dt.timedelta(days=1)
FETCHED = int(START.timestamp())
EXPIRES = FETCHED + 30 * 86400


def _old_row(key: DataKey, lock: str, tracking: str, offline_key: bytes, command: bytes) -> tuple:
    """A row as blelock wrote it before one row per lock: sealed per key, with the expiry, the
    lock and the tracking key as associated data."""
    aad = b"noke|%d|" % EXPIRES + lock.encode() + b"|" + tracking.encode()
    sealed = key.seal(struct.pack(">H", len(offline_key)) + offline_key + command, aad)
    return (lock, tracking, sealed, FETCHED, EXPIRES, None)


async def _old_store(path: Path, key_dir: Path, rows: list[tuple]) -> DataKey:
    """A store at the schema of before (no Nokē plugin tables) holding ``rows``."""
    async with await Database.open(path) as db:
        key = await db.unlock(key_dir, {})

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT INTO offline_keys VALUES (?, ?, ?, ?, ?, ?)", rows)

        await db.run(write)
        return key


def _material(n: int) -> tuple[bytes, bytes]:
    return bytes([n]) * 16, bytes([n + 100]) * 20


async def test_an_upgraded_store_opens_every_cached_key(tmp_path: Path) -> None:
    path, key_dir = tmp_path / "data" / "blelock.db", tmp_path / "config"
    await _old_store(path, key_dir, [])  # enrolled first: the rows are sealed under its key
    async with await Database.open(path) as db:
        key = await db.unlock(key_dir, {})
        rows = [
            _old_row(key, A, "t1", *_material(1)),
            _old_row(key, A, "t2", *_material(2)),
            _old_row(key, B, "t1", *_material(3)),
        ]
        revoked = (B, "gone", b"", FETCHED - 86400, EXPIRES - 86400, FETCHED)
        await db.run(
            lambda conn: conn.executemany(
                "INSERT INTO offline_keys VALUES (?, ?, ?, ?, ?, ?)", [*rows, revoked]
            )
        )
    clock = FakeClock()
    async with await Database.open(path, {"noke": NOKE_MIGRATIONS}) as db:
        keys = KeyStore(db, await db.unlock(key_dir, {}), clock)
        for lock, tracking, n in ((A, "t1", 1), (A, "t2", 2), (B, "t1", 3)):
            cached = await keys.usable(lock, tracking)
            assert (cached.offline_key, cached.unlock_command) == _material(n)
            assert cached.expires_at == START + 30 * DAY
        with pytest.raises(OfflineKeyRevoked):
            await keys.usable(B, "gone")
        listed = [(k.lock_id, k.tracking_key, k.revoked_at is None) for k in await keys.list_keys()]
        assert listed == [(A, "t1", True), (A, "t2", True), (B, "gone", False), (B, "t1", True)]
        left = await db.run(
            lambda conn: conn.execute("SELECT count(*) FROM offline_keys").fetchone()[0]
        )
        assert left == 0
        (sealed_rows,) = await db.run(
            lambda conn: conn.execute("SELECT count(*) FROM noke_lock_keys").fetchone()
        )
        assert sealed_rows == 2  # one per lock
    raw = path.read_bytes()  # closed: the log is checkpointed into it
    assert all(_material(n)[0] not in raw and _material(n)[1] not in raw for n in (1, 2, 3))


async def test_a_tampered_old_row_stays_refused_and_the_rest_open(tmp_path: Path) -> None:
    path, key_dir = tmp_path / "data" / "blelock.db", tmp_path / "config"
    await _old_store(path, key_dir, [])
    async with await Database.open(path) as db:
        key = await db.unlock(key_dir, {})
        good = _old_row(key, A, "t1", *_material(1))
        bad = _old_row(key, A, "t2", *_material(2))
        bad = (*bad[:4], bad[4] + 86400 * 365, None)  # its expiry extended by hand
        await db.run(
            lambda conn: conn.executemany(
                "INSERT INTO offline_keys VALUES (?, ?, ?, ?, ?, ?)", [good, bad]
            )
        )
    async with await Database.open(path, {"noke": NOKE_MIGRATIONS}) as db:
        keys = KeyStore(db, await db.unlock(key_dir, {}), FakeClock())
        assert (await keys.usable(A, "t1")).offline_key == _material(1)[0]
        with pytest.raises(StoreError, match="tracking key 't2'\\) was tampered with"):
            await keys.usable(A, "t2")


async def test_under_another_data_key_nothing_is_carried(tmp_path: Path) -> None:
    path, key_dir = tmp_path / "data" / "blelock.db", tmp_path / "config"
    await _old_store(path, key_dir, [])
    async with await Database.open(path) as db:
        key = await db.unlock(key_dir, {})
        await db.run(
            lambda conn: conn.execute(
                "INSERT INTO offline_keys VALUES (?, ?, ?, ?, ?, ?)",
                _old_row(key, A, "t1", *_material(1)),
            )
        )
    async with await Database.open(path, {"noke": NOKE_MIGRATIONS}) as db:
        right = await db.unlock(key_dir, {})
        stranger = KeyStore(db, DataKey.generate("another key"), FakeClock())
        with pytest.raises(StoreError, match="another data key"):
            await stranger.usable(A)
        # Left as it was: the right key still carries it over and opens it.
        keys = KeyStore(db, right, FakeClock())
        assert (await keys.usable(A)).offline_key == _material(1)[0]


async def test_a_carry_over_that_fails_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, key_dir = tmp_path / "data" / "blelock.db", tmp_path / "config"
    await _old_store(path, key_dir, [])
    async with await Database.open(path) as db:
        key = await db.unlock(key_dir, {})
        rows = [
            _old_row(key, f"D1:02:03:04:{i // 256:02X}:{i % 256:02X}", "t1", *_material(1))
            for i in range(1200)
        ]  # more than one chunk of locks
        await db.run(
            lambda conn: conn.executemany(
                "INSERT INTO offline_keys VALUES (?, ?, ?, ?, ?, ?)", rows
            )
        )
    async with await Database.open(path, {"noke": NOKE_MIGRATIONS}) as db:
        right = await db.unlock(key_dir, {})
        calls = 0
        real = DataKey.seal_many

        def fail_on_the_second_chunk(
            self: DataKey, items: list[tuple[bytes, bytes]]
        ) -> list[bytes]:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise StoreError("disk gone")
            return real(self, items)

        monkeypatch.setattr(DataKey, "seal_many", fail_on_the_second_chunk)
        keys = KeyStore(db, right, FakeClock())
        with pytest.raises(StoreError, match="disk gone"):
            await keys.usable(MacAddress(rows[0][0]))
        counts = await db.run(
            lambda conn: (
                conn.execute("SELECT count(*) FROM offline_keys").fetchone()[0],
                conn.execute("SELECT count(*) FROM noke_lock_keys").fetchone()[0],
            )
        )
        assert counts == (1200, 0)
        monkeypatch.setattr(DataKey, "seal_many", real)
        assert len(await keys.list_keys()) == 1200
        assert (await keys.usable(MacAddress(rows[-1][0]))).offline_key == _material(1)[0]


async def test_a_store_whose_key_check_is_gone_is_not_enrolled_afresh(
    db: Database, key_dir: Path, data_key: DataKey, clock: FakeClock
) -> None:
    # The keys now live in the Nokē plugin's table: the core still sees them (any sealed column).
    await KeyStore(db, data_key, clock).apply_sync(
        [OfflineGrant(A, "t1", *_material(1))], scope_macs=None
    )
    await db.run(lambda conn: conn.execute("DELETE FROM meta WHERE key = 'key_check'"))
    with pytest.raises(StoreError, match="holds sealed secrets but no key check"):
        await db.unlock(key_dir, {})
