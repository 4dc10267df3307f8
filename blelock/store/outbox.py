"""The durable log outbox: nothing a lock gave us is lost, nothing reaches the cloud twice.

The life of a record:

1. ``append`` commits it (fsync'd) before anyone is told it was kept.
2. ``lease`` puts the oldest unleased records into a batch with an idempotency key (uuid4),
   persisted with the batch. Until that batch is acknowledged, every ``lease`` returns the same
   batch with the same key, whatever crashed in between, so a resend is recognisable at the cloud.
3. ``acknowledge`` deletes the batch's records, only after the cloud acknowledged the upload.

A crash between any two of these steps therefore loses nothing (records are deleted last) and
duplicates nothing at the cloud (a resend carries the key the cloud already saw).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from blelock.model import LogRecord, MacAddress
from blelock.store.db import Database

__all__ = ["Batch", "Outbox"]

_COLUMNS = "lock_id, session, received_at, payload"


@dataclass(frozen=True, slots=True)
class Batch:
    """Records to upload together, and the idempotency key the cloud dedupes them by."""

    key: str
    records: tuple[LogRecord, ...]


class Outbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"Outbox({self._db!r})"

    async def append(self, records: Sequence[LogRecord]) -> None:
        """Keep ``records``; durable when this returns. A record already pending (same lock,
        session and payload) is kept once."""
        rows = [(r.lock_id, r.session, r.received_at, r.payload) for r in records]
        if not rows:
            return

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(f"INSERT OR IGNORE INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?)", rows)

        await self._db.run(insert)

    async def lease(self, limit: int) -> Batch | None:
        """The batch to upload next, or None when nothing is pending.

        A batch leased before and never acknowledged comes back first, whole and with its key,
        whatever ``limit`` is now: the same key must always mean the same records."""
        if limit < 1:
            raise ValueError("a batch holds at least one record")

        def lease(conn: sqlite3.Connection) -> Batch | None:
            while (
                row := conn.execute(
                    "SELECT key FROM outbox_batches ORDER BY rowid LIMIT 1"
                ).fetchone()
            ) is not None:
                records = _batch_records(conn, row[0])
                if records:
                    return Batch(row[0], records)
                # An empty batch is never left by this module (acknowledge removes both in one
                # transaction) but a hand-edited store could hold one: drop it, do not send it.
                conn.execute("DELETE FROM outbox_batches WHERE key = ?", (row[0],))
            key = uuid.uuid4().hex
            conn.execute(
                "INSERT INTO outbox_batches (key, formed_at) VALUES (?, ?)",
                (key, int(time.time())),
            )
            formed = conn.execute(
                "UPDATE outbox SET batch_key = ? WHERE id IN "
                "(SELECT id FROM outbox WHERE batch_key IS NULL ORDER BY id LIMIT ?)",
                (key, limit),
            ).rowcount
            if formed == 0:
                conn.execute("DELETE FROM outbox_batches WHERE key = ?", (key,))
                return None
            return Batch(key, _batch_records(conn, key))

        return await self._db.run(lease)

    async def acknowledge(self, batch_key: str) -> int:
        """Delete the batch's records (the cloud has them); how many. An unknown key (already
        acknowledged, say by another process) deletes nothing."""

        def delete(conn: sqlite3.Connection) -> int:
            deleted = conn.execute("DELETE FROM outbox WHERE batch_key = ?", (batch_key,)).rowcount
            conn.execute("DELETE FROM outbox_batches WHERE key = ?", (batch_key,))
            return int(deleted)

        return await self._db.run(delete)

    async def pending_count(self) -> int:
        """Records not yet acknowledged by the cloud (leased ones included)."""

        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

        return await self._db.run(count, write=False)

    async def pending(self, limit: int | None = None) -> list[LogRecord]:
        """The oldest ``limit`` (all when None) records not yet acknowledged."""

        def oldest(conn: sqlite3.Connection) -> list[LogRecord]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM outbox ORDER BY id LIMIT ?",
                (-1 if limit is None else limit,),  # SQLite: a negative LIMIT means none
            )
            return [_record(row) for row in rows]

        return await self._db.run(oldest, write=False)


def _batch_records(conn: sqlite3.Connection, key: str) -> tuple[LogRecord, ...]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE batch_key = ? ORDER BY id", (key,))
    return tuple(_record(row) for row in rows)


def _record(row: tuple[str, str, int, str]) -> LogRecord:
    lock_id, session, received_at, payload = row
    return LogRecord(MacAddress(lock_id), session, received_at, payload)
