"""The offline-key cache: what lets a technician open a lock with no network.

One row per (lock, tracking key). The offline key and its unlock command are sealed together
under the data key, with the lock and tracking key as associated data: a row copied to another
lock (or edited) fails to open and is refused, never used for the wrong lock.

Expiry is blelock's own policy (the Nokē Core API states none): a key is trusted for
``lifetime`` after the last sync that listed it. Every sync renews the keys it lists, so a
technician who syncs regularly never meets an expired key. A key the cloud stops listing is
marked revoked (not deleted) so that the refusal can say since when.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from blelock.clock import Clock
from blelock.errors import (
    OfflineKeyExpired,
    OfflineKeyMissing,
    OfflineKeyRevoked,
    StoreError,
)
from blelock.model import MacAddress
from blelock.store.crypto import DataKey
from blelock.store.db import Database
from blelock.vendors.noke.values import OfflineGrant

__all__ = [
    "DEFAULT_LIFETIME",
    "CachedKey",
    "FleetListing",
    "KeyInfo",
    "KeyStore",
    "KeySyncSummary",
]

DEFAULT_LIFETIME: Final = dt.timedelta(days=30)
"""How long a synced key is trusted without another sync: a month of working offline, short
enough that a key withdrawn in the cloud stops working on a device that never syncs."""

_IN_CHUNK: Final = 500
"""Parameters per ``IN (...)`` query, well below SQLite's limit on bound variables."""

_LENGTH = struct.Struct(">H")
"""A sealed key's plaintext: the offline key's length, the offline key, the unlock command."""


@dataclass(frozen=True, slots=True)
class KeySyncSummary:
    """What one sync did to the cache: counts only."""

    added: int
    """Keys the cache did not hold."""
    refreshed: int
    """Keys held before whose material changed, or that were revoked and are listed again."""
    revoked: int
    """Keys within the sync's scope the cloud no longer lists (kept, marked revoked)."""
    unchanged: int
    """Keys listed again as they were (their expiry is renewed all the same)."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A cached key as ``blelock keys`` shows it: no key material."""

    lock_id: MacAddress
    tracking_key: str
    fetched_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class CachedKey:
    """A usable offline key, decrypted. Key material never appears in its repr."""

    lock_id: MacAddress
    tracking_key: str
    fetched_at: dt.datetime
    expires_at: dt.datetime
    offline_key: bytes = field(repr=False)
    unlock_command: bytes = field(repr=False)


class _Row(NamedTuple):
    lock_id: str
    tracking_key: str
    sealed: bytes
    fetched_at: int
    expires_at: int
    revoked_at: int | None


class KeyStore:
    """The encrypted offline-key cache over a :class:`Database`."""

    def __init__(
        self,
        db: Database,
        data_key: DataKey,
        clock: Clock,
        lifetime: dt.timedelta = DEFAULT_LIFETIME,
    ) -> None:
        if lifetime <= dt.timedelta(0):
            raise ValueError("the offline-key lifetime must be positive")
        self._db = db
        self._key = data_key
        self._clock = clock
        self._lifetime = lifetime

    def __repr__(self) -> str:
        return f"KeyStore({self._db!r}, lifetime={self._lifetime})"

    async def apply_sync(
        self, grants: Sequence[OfflineGrant], *, scope_macs: Collection[MacAddress] | None
    ) -> KeySyncSummary:
        """Store every grant; mark revoked the cached keys within ``scope_macs`` (every lock
        when None) that the cloud no longer lists. One transaction: all of it or none.

        Every key the cloud lists is renewed (fetched now, expiring a lifetime from now), its
        material unchanged or not: the cloud has just vouched for it. ``unchanged`` counts those
        whose material was already cached as it is."""
        now = _seconds(self._clock.now_utc())
        expires = now + int(self._lifetime.total_seconds())
        # A snapshot: the caller may reuse its list while the writer thread works through it.
        listed = tuple(grants)
        scope = None if scope_macs is None else frozenset(scope_macs)

        def apply(conn: sqlite3.Connection) -> tuple[KeySyncSummary, bool]:
            summary = self._apply(conn, listed, scope, now, expires)
            # A revocation or a replaced key raises the store's generation: a copy of the store
            # from before, put back, is refused and cannot give the old key back.
            return summary, summary.revoked > 0 or summary.refreshed > 0

        return await self._db.run_revoking(apply, self._key)

    async def usable(self, lock_id: MacAddress, tracking_key: str | None = None) -> CachedKey:
        """The freshest key for ``lock_id`` (and ``tracking_key``) that is neither revoked nor
        expired, or the OfflineKeyError that says why there is none."""
        now = _seconds(self._clock.now_utc())

        def choose(conn: sqlite3.Connection) -> CachedKey:
            if tracking_key is None:
                rows = _rows(conn, "WHERE lock_id = ?", (lock_id,))
            else:
                rows = _rows(
                    conn, "WHERE lock_id = ? AND tracking_key = ?", (lock_id, tracking_key)
                )
            return self._choose(conn, lock_id, tracking_key, rows, now)

        return await self._db.run(choose, write=False)

    async def list_keys(self) -> list[KeyInfo]:
        """Every cached key (revoked and expired ones too), by lock and tracking key."""

        def listing(conn: sqlite3.Connection) -> list[KeyInfo]:
            return [
                KeyInfo(
                    lock_id=MacAddress(lock),
                    tracking_key=tracking,
                    fetched_at=_datetime(fetched),
                    expires_at=_datetime(expires),
                    revoked_at=None if revoked is None else _datetime(revoked),
                )
                for lock, tracking, fetched, expires, revoked in conn.execute(
                    "SELECT lock_id, tracking_key, fetched_at, expires_at, revoked_at "
                    "FROM offline_keys ORDER BY lock_id, tracking_key"
                )
            ]

        return await self._db.run(listing, write=False)

    async def revoke_unlisted(self, listing: FleetListing) -> KeySyncSummary:
        """Mark revoked (material wiped) every cached key of a lock that ``listing`` does not
        hold: the locks the company no longer has. One statement over the store, whatever the
        size of the fleet; the store's generation is raised if it revoked any."""
        now = _seconds(self._clock.now_utc())

        def revoke(conn: sqlite3.Connection) -> tuple[KeySyncSummary, bool]:
            revoked = conn.execute(
                "UPDATE offline_keys SET revoked_at = ?, sealed = x'' "
                f"WHERE revoked_at IS NULL AND lock_id NOT IN (SELECT mac FROM {listing.table})",
                (now,),
            ).rowcount
            return KeySyncSummary(0, 0, revoked, 0), revoked > 0

        return await self._db.run_revoking(revoke, self._key)

    async def locks_held(self) -> list[MacAddress]:
        """Every lock the cache holds a key for (revoked ones too)."""

        def held(conn: sqlite3.Connection) -> list[MacAddress]:
            query = "SELECT DISTINCT lock_id FROM offline_keys ORDER BY lock_id"
            return [MacAddress(lock) for (lock,) in conn.execute(query)]

        return await self._db.run(held, write=False)

    # --- in the writer thread -----------------------------------------------------------------

    def _apply(
        self,
        conn: sqlite3.Connection,
        grants: tuple[OfflineGrant, ...],
        scope: frozenset[MacAddress] | None,
        now: int,
        expires: int,
    ) -> KeySyncSummary:
        # Last one wins if the cloud lists a key twice; it is counted once.
        listed: dict[str, dict[str, OfflineGrant]] = {}
        for grant in grants:
            listed.setdefault(grant.lock_id, {})[grant.tracking_key] = grant
        visit = set(listed)
        if scope is None:
            visit.update(
                row[0] for row in conn.execute("SELECT DISTINCT lock_id FROM offline_keys")
            )
        else:
            visit.update(scope)
        # Lock by lock, a chunk at a time: only one chunk's cached rows are in memory, so a
        # fleet-wide sync of 100,000 locks costs little more than the grants themselves.
        ordered = sorted(visit)
        counts = [0, 0, 0, 0]  # added, refreshed, revoked, unchanged
        for start in range(0, len(ordered), _IN_CHUNK):
            chunk = ordered[start : start + _IN_CHUNK]
            self._apply_chunk(conn, chunk, listed, scope, now, expires, counts)
        added, refreshed, revoked, unchanged = counts
        return KeySyncSummary(added, refreshed, revoked, unchanged)

    def _apply_chunk(
        self,
        conn: sqlite3.Connection,
        chunk: list[str],
        listed: dict[str, dict[str, OfflineGrant]],
        scope: frozenset[MacAddress] | None,
        now: int,
        expires: int,
        counts: list[int],
    ) -> None:
        held = {
            (row.lock_id, row.tracking_key): row
            for row in _rows(conn, f"WHERE lock_id IN ({', '.join('?' * len(chunk))})", chunk)
        }
        keyed: list[tuple[str, str]] = []
        to_seal: list[tuple[bytes, bytes]] = []
        # The per-key work of a fleet's sync (hundreds of thousands of keys): names bound once.
        key_of, seal_of, aad_head = keyed.append, to_seal.append, _aad_head(expires)
        length = _LENGTH.pack
        for mac in chunk:
            entries = listed.get(mac)
            if not entries:
                continue
            aad_lock = aad_head + mac.encode() + b"|"
            for tracking, grant in entries.items():
                offline_key = grant.offline_key
                plaintext = length(len(offline_key)) + offline_key + grant.unlock_command
                row = held.get((mac, tracking)) if held else None
                if row is not None and row.revoked_at is None and self._holds(row, plaintext):
                    counts[3] += 1  # unchanged; sealed again below, for its renewed expiry
                else:
                    # New, changed, listed again after a revocation, or damaged: a row that no
                    # longer opens is healed here rather than refused forever.
                    counts[0 if row is None else 1] += 1
                key_of((mac, tracking))
                seal_of((plaintext, aad_lock + tracking.encode()))
        writes = [
            (mac, tracking, sealed, now, expires)
            for (mac, tracking), sealed in zip(keyed, self._key.seal_many(to_seal), strict=True)
        ]
        revocations = [
            (now, mac, tracking)
            for (mac, tracking), row in held.items()
            if row.revoked_at is None
            and tracking not in listed.get(mac, {})
            and (scope is None or mac in scope)
        ]
        counts[2] += len(revocations)
        conn.executemany(
            "INSERT INTO offline_keys "
            "(lock_id, tracking_key, sealed, fetched_at, expires_at, revoked_at) "
            "VALUES (?, ?, ?, ?, ?, NULL) "
            "ON CONFLICT (lock_id, tracking_key) DO UPDATE SET sealed = excluded.sealed, "
            "fetched_at = excluded.fetched_at, expires_at = excluded.expires_at, "
            "revoked_at = NULL",
            writes,
        )
        # A revoked key's material is wiped, not kept: it would still open the lock until the
        # lock hears of the revocation, and clearing revoked_at by hand must not revive it.
        conn.executemany(
            "UPDATE offline_keys SET revoked_at = ?, sealed = x'' "
            "WHERE lock_id = ? AND tracking_key = ?",
            revocations,
        )

    def _holds(self, row: _Row, plaintext: bytes) -> bool:
        try:
            aad = _aad(row.lock_id, row.tracking_key, row.expires_at)
            return self._key.open(row.sealed, aad) == plaintext
        except StoreError:
            return False

    def _choose(
        self,
        conn: sqlite3.Connection,
        lock_id: MacAddress,
        tracking_key: str | None,
        rows: list[_Row],
        now: int,
    ) -> CachedKey:
        # Freshest first; among keys of one sync, the later expiry, then a stable order.
        rows.sort(key=lambda r: (-r.fetched_at, -r.expires_at, r.tracking_key))
        which = _which(lock_id, tracking_key)
        if not rows:
            others = 0
            if tracking_key is not None:
                others = conn.execute(
                    "SELECT count(*) FROM offline_keys WHERE lock_id = ?", (lock_id,)
                ).fetchone()[0]
            also = f" (the cache holds {others} other tracking key(s) for it)" if others else ""
            raise OfflineKeyMissing(f"no offline key {which} was ever synced{also}")
        for row in rows:
            if row.revoked_at is None and row.expires_at > now:
                return self._decrypt(row)
        best = rows[0]  # nothing usable: explain the freshest, revocation before expiry
        which = _which(lock_id, best.tracking_key)
        if best.revoked_at is not None:
            raise OfflineKeyRevoked(
                f"the offline key {which} was revoked by the sync at "
                f"{_when(best.revoked_at)} ({_ago(now - best.revoked_at)})",
                hint="run `blelock sync` while online; if the key stays revoked, ask the lock's "
                "administrator for access",
            )
        raise OfflineKeyExpired(
            f"the offline key {which} expired {_ago(now - best.expires_at)} "
            f"(at {_when(best.expires_at)}; last synced {_when(best.fetched_at)})"
        )

    def _decrypt(self, row: _Row) -> CachedKey:
        which = _which(MacAddress(row.lock_id), row.tracking_key)
        try:
            offline_key, unlock_command = _unpack(
                self._key.open(row.sealed, _aad(row.lock_id, row.tracking_key, row.expires_at))
            )
        except StoreError:
            raise StoreError(
                f"the cached offline key {which} was tampered with or sealed under another data "
                f"key ({self._key.source}); it was not used",
                hint="run `blelock sync` while online to fetch it again",
            ) from None
        return CachedKey(
            lock_id=MacAddress(row.lock_id),
            tracking_key=row.tracking_key,
            fetched_at=_datetime(row.fetched_at),
            expires_at=_datetime(row.expires_at),
            offline_key=offline_key,
            unlock_command=unlock_command,
        )


class FleetListing:
    """The company's locks as one sync listed them, in a temporary table of the store's
    connection: SQLite keeps temporary tables in a file with a small page cache, so a fleet
    of any size costs the same memory. Read back in MAC order a chunk at a time; dropped by
    :meth:`drop` (or with the connection).

    Only temporary tables are written here, so the transactions are deferred ones: another
    process's writer is not held up (``write=True`` would take the store's write lock)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.table: Final = f"temp.noke_listed_{uuid.uuid4().hex}"

    def __repr__(self) -> str:
        return f"FleetListing({self.table})"

    async def restart(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (mac TEXT PRIMARY KEY) WITHOUT ROWID"
            )
            conn.execute(f"DELETE FROM {self.table}")

        await self._db.run(create, write=False)

    async def add(self, macs: Sequence[MacAddress]) -> None:
        rows = [(mac,) for mac in macs]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(f"INSERT OR IGNORE INTO {self.table} (mac) VALUES (?)", rows)

        await self._db.run(insert, write=False)

    async def chunks(self, size: int) -> AsyncIterator[list[MacAddress]]:
        """The listed MACs in order, ``size`` at a time (one read each: only it is held)."""
        after = ""
        while True:

            def read(conn: sqlite3.Connection, after: str = after) -> list[MacAddress]:
                query = f"SELECT mac FROM {self.table} WHERE mac > ? ORDER BY mac LIMIT ?"
                return [MacAddress(mac) for (mac,) in conn.execute(query, (after, size))]

            chunk = await self._db.run(read, write=False)
            if not chunk:
                return
            yield chunk
            after = chunk[-1]

    async def drop(self) -> None:
        def drop(conn: sqlite3.Connection) -> None:
            conn.execute(f"DROP TABLE IF EXISTS {self.table}")

        await self._db.run(drop, write=False)


def _rows(conn: sqlite3.Connection, where: str, params: Sequence[object]) -> list[_Row]:
    # CAST: an edited row may hold text where the blob was; it must reach the tag check (and be
    # refused as tampered), not break the query.
    query = (
        "SELECT lock_id, tracking_key, CAST(sealed AS BLOB), fetched_at, expires_at, revoked_at "
        f"FROM offline_keys {where}"
    )
    return [_Row(*row) for row in conn.execute(query, params)]


def _aad(lock_id: str, tracking_key: str, expires_at: int) -> bytes:
    """Binds a sealed key to its row and its expiry, so neither moving a row nor extending its
    life in the database goes unnoticed. The MAC has a fixed form without '|' and the expiry
    comes first, so the split is unambiguous whatever the tracking key holds."""
    return _aad_head(expires_at) + lock_id.encode() + b"|" + tracking_key.encode()


def _aad_head(expires_at: int) -> bytes:
    return b"noke|%d|" % expires_at


def _unpack(plaintext: bytes) -> tuple[bytes, bytes]:
    if len(plaintext) < _LENGTH.size:
        raise StoreError("a sealed offline key is truncated")
    (length,) = _LENGTH.unpack_from(plaintext)
    end = _LENGTH.size + length
    if end > len(plaintext):
        raise StoreError("a sealed offline key is truncated")
    return plaintext[_LENGTH.size : end], plaintext[end:]


def _which(lock_id: MacAddress, tracking_key: str | None) -> str:
    return f"for {lock_id}" + ("" if tracking_key is None else f" (tracking key {tracking_key!r})")


def _seconds(moment: dt.datetime) -> int:
    if moment.tzinfo is None:  # a clock that forgot its zone is taken at its word: UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _datetime(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _when(seconds: int) -> str:
    return _datetime(seconds).strftime("%Y-%m-%d %H:%M UTC")


def _ago(seconds: int) -> str:
    """``2 h ago``: rounded to the unit a person would use."""
    if seconds < 0:
        return "in the future (is this machine's clock right?)"
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    days = round(seconds / 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"
