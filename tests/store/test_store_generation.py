"""The store's generation (issue 19): sealed rows are bound to a counter kept both in the
database and next to the data key, raised by every revocation, so a copy of the store from
before (a backup put back, a stolen store rolled back) is refused and never gives a revoked key
back; stores from before generations are accepted once and resealed."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from store_fakes import FakeClock

from blelock.errors import StoreError
from blelock.store import generation
from blelock.store.crypto import generation_aad
from blelock.store.db import Database
from blelock.store.generation import GENERATION_FILE
from blelock.vendors.keyless.store import KeylessKey, KeylessStore, PlatformTrust

LOCK = "0d6f4a52-4b8f-4a5b-9a55-6f1f6f1c2a10"
HOUR = dt.timedelta(hours=1)
TRUST = PlatformTrust(b"ca der", b"revocations")


def key(clock: FakeClock, key_id: str) -> KeylessKey:
    return KeylessKey(
        LOCK,
        key_id,
        "OFFLINE",
        "primary",
        clock.now - HOUR,
        clock.now + 8 * 24 * HOUR,
        grant=b"grant " + key_id.encode(),
        private_key_der=b"pkcs8 " + key_id.encode(),
    )


async def read_generation(key_dir: Path) -> int | None:
    return await asyncio.to_thread(generation.read_generation, key_dir)


async def backup(db_path: Path, to: Path) -> None:
    await asyncio.to_thread(_backup, db_path, to)


async def restore(copy: Path, db_path: Path) -> None:
    await asyncio.to_thread(_restore, copy, db_path)


def _backup(db_path: Path, to: Path) -> None:
    """A copy of the closed store, as a backup tool makes it (its WAL side files too)."""
    to.mkdir(parents=True, exist_ok=True)
    for path in db_path.parent.glob(db_path.name + "*"):
        shutil.copy2(path, to / path.name)


def _restore(copy: Path, db_path: Path) -> None:
    for path in db_path.parent.glob(db_path.name + "*"):
        path.unlink()
    for path in copy.iterdir():
        shutil.copy2(path, db_path.parent / path.name)


async def sync(db_path: Path, key_dir: Path, clock: FakeClock, *key_ids: str) -> int:
    async with await Database.open(db_path) as db:
        keys = KeylessStore(db, await db.unlock(key_dir, {}), clock)
        return await keys.apply_sync(TRUST, [], [key(clock, k) for k in key_ids], ["OFFLINE"])


async def test_a_backup_put_back_after_a_revocation_is_refused(
    store_dir: Path, key_dir: Path, tmp_path: Path
) -> None:
    clock = FakeClock()
    db_path = store_dir / "blelock.db"
    await sync(db_path, key_dir, clock, "kept", "revoked")
    before = await read_generation(key_dir)
    assert before is not None
    mode = stat.S_IMODE((key_dir / GENERATION_FILE).stat().st_mode)
    assert mode == 0o600
    await backup(db_path, tmp_path / "backup")
    assert await sync(db_path, key_dir, clock, "kept") == 1  # the platform revoked one
    assert await read_generation(key_dir) == before + 1
    # Nothing revoked: no bump (the counter moves only when something was taken away).
    await sync(db_path, key_dir, clock, "kept")
    assert await read_generation(key_dir) == before + 1
    await restore(tmp_path / "backup", db_path)
    async with await Database.open(db_path) as db:
        with pytest.raises(StoreError, match="older than the last one this device used") as e:
            await db.unlock(key_dir, {})
        assert "restored from a backup" in e.value.message and e.value.hint


async def test_an_edited_counter_does_not_open_the_revoked_key(
    store_dir: Path, key_dir: Path, tmp_path: Path
) -> None:
    clock = FakeClock()
    db_path = store_dir / "blelock.db"
    await sync(db_path, key_dir, clock, "kept", "revoked")
    await backup(db_path, tmp_path / "backup")
    await sync(db_path, key_dir, clock, "kept")
    await restore(tmp_path / "backup", db_path)
    # The thief raises the backup's own counter past the device's: the check passes, but
    # every row was sealed at the old generation.
    async with await Database.open(db_path) as db:
        await db.run(
            lambda conn: conn.execute("UPDATE meta SET value = 99 WHERE key = 'generation'")
        )
    async with await Database.open(db_path) as db:
        keys = KeylessStore(db, await db.unlock(key_dir, {}), clock)
        with pytest.raises(StoreError, match="tampered with"):
            await keys.keys_for(LOCK)
        assert await keys.list_keys()  # metadata is public; the material never opens


async def test_the_current_store_reads_across_bumps(store_dir: Path, key_dir: Path) -> None:
    clock = FakeClock()
    db_path = store_dir / "blelock.db"
    await sync(db_path, key_dir, clock, "a", "b", "c")
    await sync(db_path, key_dir, clock, "a", "b")
    await sync(db_path, key_dir, clock, "a")
    async with await Database.open(db_path) as db:
        keys = KeylessStore(db, await db.unlock(key_dir, {}), clock)
        assert [k.key_id for k in await keys.keys_for(LOCK)] == ["a"]
        assert await keys.platform() == TRUST


async def test_a_store_from_before_generations_is_accepted_once_and_resealed(
    store_dir: Path, key_dir: Path
) -> None:
    clock = FakeClock()
    db_path = store_dir / "blelock.db"
    await sync(db_path, key_dir, clock, "a", "b")
    # Make it what an older blelock left: bare envelopes, no generation, no outside counter.
    async with await Database.open(db_path) as db:
        data_key = await db.unlock(key_dir, {})
        g = data_key.generation
        assert g is not None

        def strip_by_key(conn: sqlite3.Connection) -> None:
            rows = conn.execute("SELECT name, sealed FROM secrets").fetchall()
            for name, blob in rows:
                inner = data_key.open_bare(bytes(blob), generation_aad(g))
                conn.execute("UPDATE secrets SET sealed = ? WHERE name = ?", (inner, name))
            rows = conn.execute("SELECT key_id, sealed FROM keyless_keys").fetchall()
            for key_id, blob in rows:
                inner = data_key.open_bare(bytes(blob), generation_aad(g))
                conn.execute("UPDATE keyless_keys SET sealed = ? WHERE key_id = ?", (inner, key_id))
            conn.execute("DELETE FROM meta WHERE key = 'generation'")

        await db.run(strip_by_key)
    await asyncio.to_thread((key_dir / GENERATION_FILE).unlink)
    async with await Database.open(db_path) as db:
        keys = KeylessStore(db, await db.unlock(key_dir, {}), clock)
        assert sorted(k.key_id for k in await keys.keys_for(LOCK)) == ["a", "b"]
    assert await read_generation(key_dir) == 1
    # Accepted once: a pre-generation store put back now is an older store.
    async with await Database.open(db_path) as db:
        await db.run(lambda conn: conn.execute("DELETE FROM meta WHERE key = 'generation'"))
    async with await Database.open(db_path) as db:
        with pytest.raises(StoreError, match="older than the last one"):
            await db.unlock(key_dir, {})


async def test_a_new_store_on_a_device_that_had_one_adopts_its_generation(
    store_dir: Path, key_dir: Path, tmp_path: Path
) -> None:
    clock = FakeClock()
    db_path = store_dir / "blelock.db"
    await sync(db_path, key_dir, clock, "a", "b")
    await sync(db_path, key_dir, clock, "a")
    outside = await read_generation(key_dir)
    # Moved aside to start afresh (the refusal's advice): an empty store holds nothing older.
    fresh = tmp_path / "fresh" / "blelock.db"
    await sync(fresh, key_dir, clock, "a")
    assert await read_generation(key_dir) == outside


async def test_a_long_running_process_follows_a_bump_made_by_another(
    store_dir: Path, key_dir: Path
) -> None:
    clock = FakeClock()
    db_path = store_dir / "blelock.db"
    await sync(db_path, key_dir, clock, "a", "b")
    async with await Database.open(db_path) as kiosk_db:
        kiosk = KeylessStore(kiosk_db, await kiosk_db.unlock(key_dir, {}), clock)
        await sync(db_path, key_dir, clock, "a")  # `blelock sync` in another process revokes b
        assert [k.key_id for k in await kiosk.keys_for(LOCK)] == ["a"]
        await kiosk.replace_keys([key(clock, "a"), key(clock, "c")], ["OFFLINE"])
        assert sorted(k.key_id for k in await kiosk.keys_for(LOCK)) == ["a", "c"]
