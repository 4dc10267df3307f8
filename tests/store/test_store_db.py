"""The database file: private, durable, migrated once, and never damaged by a refusal."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from blelock.errors import StoreError
from blelock.model import LogRecord, MacAddress
from blelock.store.db import LATEST_VERSION, MIGRATIONS, Database, _statements
from blelock.store.outbox import Outbox

RECORD = LogRecord(MacAddress("C7:E6:B0:C6:75:38"), "ab" * 20, 1_790_000_000, "cd" * 20)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_new_store_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "blelock.db"
    db = await Database.open(path)
    try:
        await Outbox(db, "noke").append([RECORD])  # a write, so the WAL file exists too
        assert _mode(path) == 0o600
        assert _mode(path.parent) == 0o700
        assert _mode(path.with_name("blelock.db-wal")) == 0o600
    finally:
        await db.close()


async def test_durable_settings(db: Database) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[object, ...]:
        return tuple(
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "foreign_keys", "user_version")
        )

    # synchronous 2 = FULL: every commit is fsync'd, as "nothing lost" needs.
    assert await db.run(pragmas) == ("wal", 2, 1, LATEST_VERSION)


async def test_an_existing_loose_file_is_tightened(store_dir: Path) -> None:
    path = store_dir / "blelock.db"
    await (await Database.open(path)).close()
    path.chmod(0o644)
    db = await Database.open(path)
    await db.close()
    assert _mode(path) == 0o600


async def test_reopening_keeps_data_and_migrates_nothing_again(store_dir: Path) -> None:
    path = store_dir / "blelock.db"
    db = await Database.open(path)
    await Outbox(db, "noke").append([RECORD])
    await db.close()
    for _ in range(2):
        db = await Database.open(path)
        try:
            assert await Outbox(db, "noke").pending() == [RECORD]
            markers = await db.run(
                lambda conn: conn.execute("SELECT count(*) FROM meta").fetchone()[0]
            )
            assert markers == 1
        finally:
            await db.close()


async def test_run_commits_on_return_and_rolls_back_on_error(db: Database) -> None:
    outbox = Outbox(db, "noke")

    def insert_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO outbox (lock_id, session, received_at, payload) VALUES (?, ?, ?, ?)",
            (RECORD.lock_id, RECORD.context, RECORD.received_at, RECORD.payload),
        )
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await db.run(insert_then_fail)
    assert await outbox.pending_count() == 0


async def test_sqlite_errors_become_store_errors(db: Database) -> None:
    with pytest.raises(StoreError, match=r"blelock\.db failed: no such table") as caught:
        await db.run(lambda conn: conn.execute("SELECT * FROM nowhere"))
    assert "the change was not saved" in caught.value.message


async def test_closed_store_refuses_work(db: Database) -> None:
    await db.close()
    await db.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        await db.run(lambda conn: None)


# --- refusals: the file is left exactly as it was ---------------------------------------------


def _empty(path: Path) -> None:
    path.touch()


def _empty_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 0")
        conn.execute("VACUUM")  # writes the header: an SQLite file with nothing in it
    conn.close()


def _not_sqlite(path: Path) -> None:
    path.write_text("these are my notes, not a database\n" * 100)


def _magic_then_garbage(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 32)


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE recipes (name TEXT, steps TEXT)")
        conn.execute("INSERT INTO recipes VALUES ('bread', 'knead')")
    conn.close()


def _foreign_with_version(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value)")
        conn.execute("INSERT INTO meta VALUES ('application', 'someone-else')")
        conn.execute("PRAGMA user_version = 1")
    conn.close()


def _newer_blelock(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('application', 'blelock')")
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()


def _corrupt_blelock(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('application', 'blelock')")
    conn.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, data TEXT)")
    conn.executemany("INSERT INTO filler (data) VALUES (?)", [("x" * 200,) for _ in range(200)])
    conn.execute("CREATE INDEX filler_data ON filler (data)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page + 8 : 3 * page + 400] = b"\xa5" * 392  # scribble over a b-tree page
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (_empty, "is empty (0 bytes)"),
        (_empty_sqlite, "half-made"),
        (_not_sqlite, "is not an SQLite database"),
        (_magic_then_garbage, "is not a readable SQLite database"),
        (_foreign_sqlite, "of another application"),
        (_foreign_with_version, "of another application"),
        (_newer_blelock, "was written by a newer blelock"),
        (_corrupt_blelock, "corrupt"),
    ],
)
async def test_refuses_what_is_not_its_own_and_changes_nothing(
    tmp_path: Path, make: Callable[[Path], None], what: str
) -> None:
    path = tmp_path / "blelock.db"
    await asyncio.to_thread(make, path)
    await asyncio.to_thread(path.chmod, 0o644)  # not ours: not even its mode may change
    before = await asyncio.to_thread(_snapshot, tmp_path)
    with pytest.raises(StoreError) as caught:
        await Database.open(path)
    error = caught.value
    assert str(path) in error.message and what in error.message
    assert "nothing was changed; move it aside or point --data-dir elsewhere" in error.one_line()
    assert await asyncio.to_thread(_snapshot, tmp_path) == before


def _snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file in ``directory`` with its mode and bytes (no -wal/-shm may appear either)."""
    return {p.name: (_mode(p), p.read_bytes()) for p in directory.iterdir()}


async def test_refuses_a_directory_in_its_place(tmp_path: Path) -> None:
    (tmp_path / "blelock.db").mkdir()
    with pytest.raises(StoreError, match="is not a regular file"):
        await Database.open(tmp_path / "blelock.db")


async def test_a_version_1_store_upgrades_keeping_its_pending_records(tmp_path: Path) -> None:
    path = tmp_path / "blelock.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _statements(MIGRATIONS[0]):  # the store as the first release left it
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO outbox (lock_id, session, received_at, payload) "
        "VALUES ('C7:E6:B0:C6:75:38', 'ab', 1, 'cd')"
    )
    conn.close()
    async with await Database.open(path) as db:
        noke = await Outbox(db, "noke").pending()
        assert [(r.lock_id, r.payload) for r in noke] == [("C7:E6:B0:C6:75:38", "cd")]
        assert await Outbox(db, "keyless").pending() == []
        version = await db.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        assert version == LATEST_VERSION == 5


async def test_a_batch_leased_before_ranges_comes_back_whole_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "blelock.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:4]:  # the store as version 4 left it: batches mark their rows
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    conn.execute("INSERT INTO outbox_batches (key, formed_at, vendor) VALUES ('old', 1, 'noke')")
    for n in range(5):
        conn.execute(
            "INSERT INTO outbox (lock_id, session, received_at, payload, vendor, batch_key) "
            "VALUES ('C7:E6:B0:C6:75:38', 'ab', ?, ?, 'noke', ?)",
            (n, f"{n:02x}", "old" if n in (1, 3) else None),  # leased rows among unleased ones
        )
    conn.close()
    async with await Database.open(path) as db:
        outbox = Outbox(db, "noke")
        batches = await outbox.lease_ahead(10, 3)
        assert [(b.key, [r.payload for r in b.records]) for b in batches[:1]] == [
            ("old", ["01", "03"])
        ]
        assert [[r.payload for r in b.records] for b in batches[1:]] == [["00", "02", "04"]]
        assert await outbox.acknowledge(*(b.key for b in batches)) == 5
        assert await outbox.pending_count() == 0 and await outbox.lease(10) is None
        indexes = await db.run(
            lambda c: {
                n for (n,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            }
        )
        assert "outbox_unleased" not in indexes and "outbox_unleased_by_vendor" in indexes


PLUGIN_TABLES = (
    "CREATE TABLE acme_codes (lock_id TEXT PRIMARY KEY, code TEXT NOT NULL);",
    "ALTER TABLE acme_codes ADD COLUMN uses INTEGER NOT NULL DEFAULT 0;",
)


async def test_plugin_migrations_run_once_each_in_order(tmp_path: Path) -> None:
    path = tmp_path / "blelock.db"
    async with await Database.open(path, {"acme": PLUGIN_TABLES[:1]}) as db:
        await db.run(lambda c: c.execute("INSERT INTO acme_codes VALUES ('L1', '0101')"))
    # A later release of the plugin adds a migration; the row made under the first stays.
    async with await Database.open(path, {"acme": PLUGIN_TABLES}) as db:
        rows = await db.run(lambda c: c.execute("SELECT * FROM acme_codes").fetchall())
        versions = await db.run(lambda c: c.execute("SELECT * FROM plugin_schema").fetchall())
    assert rows == [("L1", "0101", 0)]
    assert versions == [("acme", 2)]


async def test_a_store_from_a_newer_plugin_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blelock.db"
    async with await Database.open(path, {"acme": PLUGIN_TABLES}):
        pass
    with pytest.raises(StoreError, match="newer acme plugin"):
        await Database.open(path, {"acme": PLUGIN_TABLES[:1]})
