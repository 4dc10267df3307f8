"""What the companion keeps for Nuki locks: each paired lock's authorization (its shared key
sealed under the data key, the lock's public key and auth id in the clear), the lock's
security PIN once given (sealed), and the log entries read over Bluetooth.

Nuki's own cloud gets a lock's log through Nuki's bridge, not from apps, so these entries go to
no cloud from here: they are kept, shown by ``blelock logs`` and ``blelock nuki logs``.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from blelock.clock import Clock
from blelock.errors import StoreError
from blelock.store.crypto import DataKey
from blelock.store.db import Database
from blelock.vendors.nuki.protocol import Credentials, LogEntry
from blelock.vendors.nuki.schema import MIGRATIONS

__all__ = ["MIGRATIONS", "KeptEntry", "NukiStore", "PairedLock"]


@dataclass(frozen=True, slots=True)
class PairedLock:
    lock_id: str
    name: str
    credentials: Credentials = field(repr=False)
    lock_public_key: bytes
    paired_at: dt.datetime


@dataclass(frozen=True, slots=True)
class KeptEntry:
    lock_id: str
    entry: LogEntry
    received_at: dt.datetime


class NukiStore:
    def __init__(self, db: Database, data_key: DataKey, clock: Clock) -> None:
        self._db = db
        self._key = data_key
        self._clock = clock

    def __repr__(self) -> str:
        return f"NukiStore({self._db!r})"

    async def save_pairing(self, lock_id: str, name: str, paired: PairedLock) -> None:
        creds = paired.credentials
        sealed = self._key.seal(creds.key, _aad("key", lock_id, creds.auth_id))
        row = (
            lock_id,
            name,
            int(creds.ultra),
            creds.auth_id,
            creds.app_id,
            paired.lock_public_key,
            sealed,
            int(paired.paired_at.timestamp()),
        )
        await self._db.run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO nuki_locks (lock_id, name, ultra, auth_id, app_id, "
                "lock_public_key, sealed, paired_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    async def paired(self, lock_id: str) -> PairedLock | None:
        def read(conn: sqlite3.Connection) -> tuple[object, ...] | None:
            found = conn.execute(
                "SELECT name, ultra, auth_id, app_id, CAST(lock_public_key AS BLOB), "
                "CAST(sealed AS BLOB), paired_at FROM nuki_locks WHERE lock_id = ?",
                (lock_id,),
            ).fetchone()
            return None if found is None else tuple(found)

        row = await self._db.run(read, write=False)
        if row is None:
            return None
        name, ultra, auth_id, app_id, public, sealed, paired_at = row
        assert isinstance(auth_id, int) and isinstance(sealed, bytes)
        key = self._open(sealed, _aad("key", lock_id, auth_id))
        return PairedLock(
            lock_id,
            str(name),
            Credentials(auth_id, key, int(str(app_id)), bool(ultra)),
            bytes(public) if isinstance(public, bytes) else b"",
            dt.datetime.fromtimestamp(int(str(paired_at)), dt.UTC),
        )

    async def paired_locks(self) -> list[tuple[str, str, bool]]:
        """(lock id, name, Ultra) of every paired lock; no key material."""

        def read(conn: sqlite3.Connection) -> list[tuple[str, str, bool]]:
            rows = conn.execute("SELECT lock_id, name, ultra FROM nuki_locks ORDER BY lock_id")
            return [(lock, name, bool(ultra)) for lock, name, ultra in rows]

        return await self._db.run(read, write=False)

    async def save_pin(self, lock_id: str, pin: int) -> None:
        sealed = self._key.seal(struct.pack("<I", pin), _aad("pin", lock_id, 0))
        await self._db.run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO nuki_pins (lock_id, sealed) VALUES (?, ?)",
                (lock_id, sealed),
            )
        )

    async def pin(self, lock_id: str) -> int | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT CAST(sealed AS BLOB) FROM nuki_pins WHERE lock_id = ?", (lock_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        sealed = await self._db.run(read, write=False)
        if sealed is None:
            return None
        return int(struct.unpack("<I", self._open(sealed, _aad("pin", lock_id, 0)))[0])

    async def keep_log(self, lock_id: str, entries: Sequence[LogEntry]) -> int:
        """Keep entries read from the lock; how many were new (an index kept before is not)."""
        now = int(self._clock.now_utc().timestamp())
        rows = [
            (
                lock_id,
                e.index,
                None if e.timestamp is None else int(e.timestamp.timestamp()),
                e.auth_id,
                e.name,
                e.type,
                e.data,
                now,
            )
            for e in entries
        ]

        def insert(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO nuki_log (lock_id, log_index, at, auth_id, name, type, "
                "data, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return conn.total_changes - before

        return await self._db.run(insert)

    async def last_index(self, lock_id: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT max(log_index) FROM nuki_log WHERE lock_id = ?", (lock_id,)
            ).fetchone()
            return int(row[0] or 0)

        return await self._db.run(read, write=False)

    async def log(self, lock_id: str | None = None, limit: int = 50) -> tuple[int, list[KeptEntry]]:
        """How many entries are kept (of ``lock_id``, or all), and the newest ``limit``."""
        where, args = ("WHERE lock_id = ?", (lock_id,)) if lock_id else ("", ())

        def read(conn: sqlite3.Connection) -> tuple[int, list[KeptEntry]]:
            count = conn.execute(f"SELECT count(*) FROM nuki_log {where}", args).fetchone()[0]
            rows = conn.execute(
                "SELECT lock_id, log_index, at, auth_id, name, type, CAST(data AS BLOB), "
                f"received_at FROM nuki_log {where} ORDER BY received_at DESC, log_index DESC "
                "LIMIT ?",
                (*args, limit),
            ).fetchall()
            kept = [
                KeptEntry(
                    lock,
                    LogEntry(index, _when(at), auth_id, name, kind, bytes(data)),
                    dt.datetime.fromtimestamp(received, dt.UTC),
                )
                for lock, index, at, auth_id, name, kind, data, received in rows
            ]
            return int(count), kept

        return await self._db.run(read, write=False)

    def _open(self, sealed: bytes, aad: bytes) -> bytes:
        try:
            return self._key.open(sealed, aad)
        except StoreError:
            raise StoreError(
                "a sealed Nuki secret in the store was tampered with or sealed under another "
                f"data key ({self._key.source}); it was not used",
                hint="pair the lock again with `blelock nuki pair`, or give its PIN again "
                "with `blelock nuki set-pin`",
            ) from None


def _when(at: int | None) -> dt.datetime | None:
    return None if at is None else dt.datetime.fromtimestamp(at, dt.UTC)


def _aad(what: str, lock_id: str, auth_id: int) -> bytes:
    return f"nuki|{what}|{lock_id}|{auth_id}".encode()
