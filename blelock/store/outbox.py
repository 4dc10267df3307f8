"""The durable log outbox: nothing a lock gave us is lost, nothing reaches the cloud twice.

The life of a record:

1. ``append`` commits it (fsync'd) before anyone is told it was kept.
2. ``lease`` puts the oldest unleased records into a batch with an idempotency key (uuid4),
   persisted with the batch: the range of ids it covers, one row written whatever its size
   (a batch split per lock or set aside marks its rows instead). Until that batch is
   acknowledged, every ``lease`` returns the same batch with the same key, whatever crashed in
   between, so a resend is recognisable at the cloud. A visit whose records go up at once
   keeps and leases them in one transaction (``append_and_lease_ahead``).
3. ``acknowledge`` deletes the batch's records, only after the cloud acknowledged the upload.
   It alone commits without waiting for the disk (one fsync fewer a drain, the one the user
   waits for after the upload): a power cut may undo it, and the batch then goes again under
   its key.

A batch the cloud refuses for good (a lock no longer registered, a record it cannot read) is
first ``split`` into one batch per lock when it holds several, so one lock's trouble does not
take the other locks' records with it. A one-lock batch the cloud refuses is set aside with
``fail``: kept, with the reason, and skipped by ``lease`` so the records behind it still flow;
``retry_failed`` puts such batches back (with their keys) once the cause is fixed.

A damaged row (one whose table entry and UNIQUE index entry disagree, after a bad sector or
a hand edit: SQLite then refuses to delete it, "database disk image is malformed") must not hold
up the others either. ``lease`` looks each row of the batch up through that index (measured: 8 ms
for a 500-record batch, against 575 ms for a full ``integrity_check`` of a 100,000-record,
108 MiB store) and sets the ones it cannot find aside with the reason, before anything is sent.
When SQLite still reports damage (an index entry damaged rather than the row leaves the index
out of order, so other rows' deletes fail too), the drain calls ``set_aside_damaged``:
every pending row looked up again, the full ``integrity_check`` (it reads the whole file, so
only then), and the outbox's indexes rebuilt from the table when they are all that is wrong.

A crash between any two of these steps therefore loses nothing (records are deleted last) and
duplicates nothing at the cloud (a resend carries the key the cloud already saw).

Each vendor's records go to its own cloud: an :class:`Outbox` is one vendor's view of the table,
so a batch never mixes vendors. Vendors whose locks number their logs also keep a
cursor per lock and log, written in the transaction that appends the records, so the next visit
asks the lock only for what came after: no gap and no duplicate, whatever crashes.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from blelock.errors import lock_context
from blelock.model import LogRecord
from blelock.store.db import Database, has_room_for_a_visit, integrity_problems

__all__ = [
    "RECORD_BYTES",
    "VISIT_RECORDS",
    "Batch",
    "FailedBatch",
    "Outbox",
    "room_problem",
]


RECORD_BYTES = 2048
"""A bound on what one kept record costs in the store: its row and its UNIQUE index entry both
hold the payload (hex; a Keyless audit entry or CSR stays well under 1 KiB of it)."""
VISIT_RECORDS = 64
"""A bound on the records a command visit can produce (each answered packet brings at most
one record, a command is a few packets, a visit at most two attempts): what the kiosk's health
checks room for, and a vendor plugin's default ``records_per_visit``."""
_TRANSACTION_BYTES = 64 * 1024
"""Pages a commit touches besides the rows themselves: the other indexes, the cursors."""

_COLUMNS = "lock_id, session, received_at, payload"
_UNIQUE_INDEX = "sqlite_autoindex_outbox_1"
"""SQLite's name for the index behind ``UNIQUE (lock_id, session, payload)``."""
DAMAGED = "damaged in the store (its row and the outbox's index disagree)"
"""The start of the reason a damaged row is set aside with."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Records to upload together, and the idempotency key the cloud dedupes them by."""

    key: str
    records: tuple[LogRecord, ...]


@dataclass(frozen=True, slots=True)
class FailedBatch:
    key: str
    records: int
    failed_at: int
    """Unix seconds."""
    failure: str
    """What the cloud said, as the error's one line."""


def _visit_bytes(records: int) -> int:
    return records * RECORD_BYTES + _TRANSACTION_BYTES


def room_problem(directory: Path, records: int = VISIT_RECORDS) -> str | None:
    """Why the store in ``directory`` could not take a visit's records now, or None (for
    health; blocking, so call it in a thread)."""
    return has_room_for_a_visit(directory, _visit_bytes(records))


class Outbox:
    def __init__(self, db: Database, vendor: str) -> None:
        self._db = db
        self._vendor = vendor

    def __repr__(self) -> str:
        return f"Outbox({self._db!r}, vendor={self._vendor!r})"

    async def append(
        self,
        records: Sequence[LogRecord],
        cursors: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        """Keep ``records``; durable when this returns. A record already pending (same lock,
        session and payload) is kept once. ``cursors`` ((lock, log) → last sequence collected)
        move forward in the same transaction, never back."""
        if records or cursors:
            await self._db.run(self._inserter(records, cursors))

    async def append_and_lease_ahead(
        self,
        records: Sequence[LogRecord],
        limit: int,
        count: int,
        *,
        busy: Collection[str] = (),
    ) -> list[Batch]:
        """:meth:`append` then :meth:`lease_ahead`, in one transaction (one commit): a visit
        whose records go up at once keeps them and forms their batch with one wait for the
        disk. All of it or none."""
        insert, lease = self._inserter(records, None), self._leaser(limit, count, busy)
        return await self._db.run(lambda conn: (insert(conn), lease(conn))[1])

    def _inserter(
        self, records: Sequence[LogRecord], cursors: Mapping[tuple[str, str], int] | None
    ) -> Callable[[sqlite3.Connection], None]:
        rows = [(r.lock_id, r.context, r.received_at, r.payload, self._vendor) for r in records]
        moved = [(lock, log, sequence) for (lock, log), sequence in (cursors or {}).items()]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                f"INSERT OR IGNORE INTO outbox ({_COLUMNS}, vendor) VALUES (?, ?, ?, ?, ?)", rows
            )
            conn.executemany(
                "INSERT INTO log_cursors (lock_id, log, last_sequence) VALUES (?, ?, ?) "
                "ON CONFLICT (lock_id, log) DO UPDATE SET "
                "last_sequence = max(last_sequence, excluded.last_sequence)",
                moved,
            )

        return insert

    async def reserve(self, records: int, *, lock_id: str | None = None) -> None:
        """Refuse (:class:`~blelock.errors.StoreFull`, naming the disk) unless the store has
        room for ``records`` more records now. A visit calls this before it touches the lock,
        with the most records it can produce: a lock is opened only when its records can be
        kept."""
        with lock_context(lock_id, "make room for the lock's records"):
            await self._db.ensure_room(_visit_bytes(records))

    async def cursor(self, lock_id: str, log: str) -> int:
        """The last sequence number collected from ``lock_id``'s ``log``; 0 before any."""

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT last_sequence FROM log_cursors WHERE lock_id = ? AND log = ?",
                (lock_id, log),
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._db.run(read, write=False)

    async def lease(self, limit: int, *, busy: str | None = None) -> Batch | None:
        """The batch to upload next, or None when nothing is pending.

        A batch leased before and never acknowledged comes back first, whole and with its key,
        whatever ``limit`` is now: the same key must always mean the same records. ``busy``:
        a batch on its way to the cloud now, not to be handed out again (a drain forms the next
        batch while the last one is sent)."""
        leased = await self.lease_ahead(limit, 1, busy=() if busy is None else (busy,))
        return leased[0] if leased else None

    async def lease_ahead(
        self, limit: int, count: int, *, busy: Collection[str] = ()
    ) -> list[Batch]:
        """Up to ``count`` batches to upload next, oldest first, in one transaction (one
        commit): those leased before and not acknowledged first, as :meth:`lease` gives them,
        then new ones. ``busy``: batches on their way now, not handed out again."""
        return await self._db.run(self._leaser(limit, count, busy))

    def _leaser(
        self, limit: int, count: int, busy: Collection[str]
    ) -> Callable[[sqlite3.Connection], list[Batch]]:
        if limit < 1:
            raise ValueError("a batch holds at least one record")

        def lease(conn: sqlite3.Connection, busy: list[str]) -> Batch | None:
            while (
                row := conn.execute(
                    "SELECT key FROM outbox_batches WHERE vendor = ? AND failed_at IS NULL "
                    f"AND key NOT IN ({', '.join('?' * len(busy))}) ORDER BY rowid LIMIT 1",
                    (self._vendor, *busy),
                ).fetchone()
            ) is not None:
                records = _sound_records(conn, row[0], self._vendor)
                if records:
                    return Batch(row[0], records)
                # An empty batch is never left by this module (acknowledge removes both in one
                # transaction) but a hand-edited store could hold one: drop it, do not send it.
                # (A batch whose rows were all damaged was set aside just now instead.)
                where, values = _rows_of(conn, row[0])
                if conn.execute(f"SELECT 1 FROM outbox WHERE {where}", values).fetchone() is None:
                    conn.execute("DELETE FROM outbox_batches WHERE key = ?", (row[0],))
            # The oldest unleased rows, as a range: no row is written but the batch's own.
            (above,) = conn.execute(
                "SELECT coalesce(max(last_id), 0) FROM outbox_batches "
                "WHERE vendor = ? AND last_id IS NOT NULL",
                (self._vendor,),
            ).fetchone()
            first, last = conn.execute(
                "SELECT min(id), max(id) FROM (SELECT id FROM outbox WHERE vendor = ? AND "
                "batch_key IS NULL AND id > ? ORDER BY id LIMIT ?)",
                (self._vendor, above, limit),
            ).fetchone()
            if first is None:
                return None
            key = uuid.uuid4().hex
            conn.execute(
                "INSERT INTO outbox_batches (key, formed_at, vendor, first_id, last_id) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, int(time.time()), self._vendor, first, last),
            )
            records = _sound_records(conn, key, self._vendor)
            if records:
                return Batch(key, records)
            # Every row of the new batch was damaged and is set aside: form the next one.
            return lease(conn, busy)

        def lease_several(conn: sqlite3.Connection) -> list[Batch]:
            taken: list[Batch] = []
            while len(taken) < count:
                batch = lease(conn, [*busy, *(b.key for b in taken)])
                if batch is None:
                    break
                taken.append(batch)
            return taken

        return lease_several

    async def acknowledge(self, *batch_keys: str) -> int:
        """Delete the batches' records (the cloud has them), in one transaction; how many. An
        unknown key (already acknowledged, say by another process) deletes nothing.

        The commit does not wait for the disk: a power cut may undo it, and the batches then go
        again under the keys the cloud already has, which it takes once. (A lease, which makes
        a key, and an append always wait.)"""
        return await self._db.run(lambda conn: _delete_batches(conn, batch_keys), durable=False)

    async def acknowledge_and_lease(
        self, batch_key: str, limit: int, *, busy: str | None = None
    ) -> tuple[int, Batch | None]:
        """:meth:`acknowledge` then :meth:`lease` in one transaction: a drain commits (and so
        waits for the disk) once a batch, not twice. All of it or none: the batch stays leased
        when forming the next fails."""
        acknowledged, leased = await self.acknowledge_and_lease_ahead(
            (batch_key,), limit, 1, busy=() if busy is None else (busy,)
        )
        return acknowledged, leased[0] if leased else None

    async def acknowledge_and_lease_ahead(
        self, batch_keys: Sequence[str], limit: int, count: int, *, busy: Collection[str] = ()
    ) -> tuple[int, list[Batch]]:
        """:meth:`acknowledge` of ``batch_keys`` then :meth:`lease_ahead`, in one transaction
        (one commit for several batches). All of it or none."""
        lease = self._leaser(limit, count, busy)
        return await self._db.run(lambda conn: (_delete_batches(conn, batch_keys), lease(conn)))

    async def split(self, batch_key: str) -> int:
        """Replace a refused batch of several locks by one batch per lock (new keys: the cloud
        took nothing under the old one), at the head of the line; how many batches now."""

        def split(conn: sqlite3.Connection) -> int:
            where, values = _rows_of(conn, batch_key)
            locks = [
                row[0]
                for row in conn.execute(
                    f"SELECT lock_id FROM outbox WHERE {where} GROUP BY lock_id ORDER BY min(id)",
                    values,
                )
            ]
            for lock in locks:
                key = uuid.uuid4().hex
                conn.execute(
                    "INSERT INTO outbox_batches (key, formed_at, vendor) VALUES (?, ?, ?)",
                    (key, int(time.time()), self._vendor),
                )
                conn.execute(
                    f"UPDATE outbox SET batch_key = ? WHERE {where} AND lock_id = ?",
                    (key, *values, lock),
                )
            conn.execute("DELETE FROM outbox_batches WHERE key = ?", (batch_key,))
            return len(locks)

        return await self._db.run(split)

    async def fail(self, batch_key: str, failure: str) -> None:
        """Set the batch aside: the cloud refused it for good. Its records stay."""

        def mark(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE outbox_batches SET failed_at = ?, failure = ? WHERE key = ?",
                (int(time.time()), failure, batch_key),
            )

        await self._db.run(mark)

    async def set_aside_damaged(self) -> int:
        """After SQLite reported damage: set aside every row of this vendor's stream the
        UNIQUE index cannot find, then, when the full ``integrity_check`` finds only the outbox's
        indexes out of step with its table, rebuild them from the table (an index is derived
        data: nothing stored is lost, and the rows it disagreed with are already set aside).
        Returns how many rows were set aside, plus one when the indexes were rebuilt; 0 when
        nothing here could help (the damage is elsewhere: the drain stops and says so)."""

        def triage(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                f"SELECT id, {_COLUMNS} FROM outbox WHERE vendor = ? AND (batch_key IS NULL OR "
                "batch_key IN (SELECT key FROM outbox_batches WHERE failed_at IS NULL))",
                (self._vendor,),
            ).fetchall()
            damaged = [row[0] for row in rows if not _indexed(conn, row)]
            _set_aside(conn, damaged, self._vendor)
            indexes = {
                str(name)
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'"
                )
            }
            problems = integrity_problems(conn)
            repairable = bool(problems) and all(
                any(name in problem for name in indexes) for problem in problems
            )
            if repairable:
                conn.execute("REINDEX outbox")
            return len(damaged) + int(repairable)

        return await self._db.run(triage)

    async def failed(self) -> list[FailedBatch]:
        """The batches set aside, oldest first."""

        def read(conn: sqlite3.Connection) -> list[FailedBatch]:
            batches = conn.execute(
                "SELECT key, failed_at, failure FROM outbox_batches "
                "WHERE vendor = ? AND failed_at IS NOT NULL ORDER BY rowid",
                (self._vendor,),
            ).fetchall()
            failed = []
            for key, at, why in batches:
                where, values = _rows_of(conn, key)
                (n,) = conn.execute(f"SELECT count(*) FROM outbox WHERE {where}", values).fetchone()
                if n:
                    failed.append(FailedBatch(key, int(n), int(at), str(why)))
            return failed

        return await self._db.run(read, write=False)

    async def retry_failed(self) -> int:
        """Put every set-aside batch back in line (same keys, same records); how many."""

        def clear(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute(
                    "UPDATE outbox_batches SET failed_at = NULL, failure = NULL "
                    "WHERE vendor = ? AND failed_at IS NOT NULL",
                    (self._vendor,),
                ).rowcount
            )

        return await self._db.run(clear)

    async def pending_count(self) -> int:
        """Records not yet acknowledged by the cloud (leased ones included)."""

        def count(conn: sqlite3.Connection) -> int:
            query = "SELECT count(*) FROM outbox WHERE vendor = ?"
            return int(conn.execute(query, (self._vendor,)).fetchone()[0])

        return await self._db.run(count, write=False)

    async def pending(self, limit: int | None = None) -> list[LogRecord]:
        """The oldest ``limit`` (all when None) records not yet acknowledged."""

        def oldest(conn: sqlite3.Connection) -> list[LogRecord]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE vendor = ? ORDER BY id LIMIT ?",
                # SQLite: a negative LIMIT means none
                (self._vendor, -1 if limit is None else limit),
            )
            return [_record(row) for row in rows]

        return await self._db.run(oldest, write=False)


def _rows_of(
    conn: sqlite3.Connection, key: str, table: str = ""
) -> tuple[str, tuple[str | int, ...]]:
    """The condition (and its values) that picks the batch's rows of ``outbox`` (its columns
    prefixed with ``table``, an alias and a dot, when given); an unknown batch has none."""
    batch = conn.execute(
        "SELECT vendor, first_id, last_id FROM outbox_batches WHERE key = ?", (key,)
    ).fetchone()
    if batch is None:
        return "0", ()
    vendor, first, last = batch
    if last is None:  # split, set aside, or leased before ranges: each row names its batch
        return f"{table}batch_key = ?", (key,)
    return (
        f"{table}vendor = ? AND {table}batch_key IS NULL AND {table}id BETWEEN ? AND ?",
        (vendor, first, last),
    )


def _batch_records(conn: sqlite3.Connection, key: str) -> tuple[LogRecord, ...]:
    where, values = _rows_of(conn, key)
    rows = conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE {where} ORDER BY id", values)
    return tuple(_record(row) for row in rows)


def _indexed(conn: sqlite3.Connection, row: tuple[int, str, str, int, str]) -> bool:
    """Whether the UNIQUE index finds this row by its own values (a damaged row: not)."""
    rowid, lock_id, session, _received_at, payload = row
    found = conn.execute(
        f"SELECT 1 FROM outbox INDEXED BY {_UNIQUE_INDEX} "
        "WHERE lock_id = ? AND session = ? AND payload = ? AND id = ?",
        (lock_id, session, payload, rowid),
    ).fetchone()
    return found is not None


def _delete_batches(conn: sqlite3.Connection, batch_keys: Sequence[str]) -> int:
    deleted = 0
    for key in batch_keys:
        where, values = _rows_of(conn, key)
        deleted += conn.execute(f"DELETE FROM outbox WHERE {where}", values).rowcount
        conn.execute("DELETE FROM outbox_batches WHERE key = ?", (key,))
    return deleted


def _sound_records(conn: sqlite3.Connection, key: str, vendor: str) -> tuple[LogRecord, ...]:
    """The batch's records, after setting aside those the index cannot find (damaged)."""
    # Each row looked up by its own values in the UNIQUE index (as _indexed does), in one
    # statement: a batch of 500 is one query, not 501.
    where, values = _rows_of(conn, key, "o.")
    rows = conn.execute(
        "SELECT o.id, o.lock_id, o.session, o.received_at, o.payload, EXISTS (SELECT 1 FROM "
        f"outbox AS i INDEXED BY {_UNIQUE_INDEX} WHERE i.lock_id = o.lock_id AND "
        "i.session = o.session AND i.payload = o.payload AND i.id = o.id) "
        f"FROM outbox AS o WHERE {where} ORDER BY o.id",
        values,
    ).fetchall()
    damaged = [row[0] for row in rows if not row[5]]
    if not damaged:
        return tuple(LogRecord(row[1], row[2], row[3], row[4]) for row in rows)
    if len(damaged) == len(rows):
        conn.execute(
            "UPDATE outbox_batches SET failed_at = ?, failure = ? WHERE key = ?",
            (int(time.time()), _reason(damaged), key),
        )
        return ()
    _set_aside(conn, damaged, vendor)
    return _batch_records(conn, key)


def _reason(rows: Sequence[int]) -> str:
    listed = ", ".join(str(row) for row in rows[:5]) + (", …" if len(rows) > 5 else "")
    return f"{DAMAGED}: outbox row(s) {listed}; run `blelock store check`"


def _set_aside(conn: sqlite3.Connection, rows: Sequence[int], vendor: str) -> None:
    """Move ``rows`` into a batch of their own, set aside with the reason (kept, not sent)."""
    if not rows:
        return
    key = uuid.uuid4().hex
    conn.execute(
        "INSERT INTO outbox_batches (key, formed_at, vendor, failed_at, failure) "
        "VALUES (?, ?, ?, ?, ?)",
        (key, int(time.time()), vendor, int(time.time()), _reason(rows)),
    )
    conn.executemany("UPDATE outbox SET batch_key = ? WHERE id = ?", [(key, row) for row in rows])


def _batch_records_of(conn: sqlite3.Connection, key: str, vendor: str) -> tuple[LogRecord, ...]:
    """The batch's records, unchecked (what ``_sound_records`` returns for a sound batch)."""
    return _batch_records(conn, key)


def _record(row: tuple[str, str, int, str]) -> LogRecord:
    lock_id, session, received_at, payload = row
    return LogRecord(lock_id, session, received_at, payload)
