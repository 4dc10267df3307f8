"""The offline-key cache: what lets a technician open a lock with no network.

One row per lock (the layout: :mod:`blelock.vendors.noke.key_rows`). Its keys' times are in the
clear; the offline keys and unlock commands of its live keys are sealed together under the data
key, with the lock and those times as associated data: a row copied to another lock (or edited)
fails to open and is refused, never used for the wrong lock.

Expiry is blelock's own policy (the Nokē Core API states none): a key is trusted for
``lifetime`` after the last sync that listed it. Every sync renews the keys it lists, so a
technician who syncs regularly never meets an expired key. A key the cloud stops listing is
marked revoked (not deleted) so that the refusal can say since when.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quoted
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
from blelock.vendors.noke.key_rows import (
    HEADER as _HEADER,
)
from blelock.vendors.noke.key_rows import (
    KeyTimes,
    Material,
    carry_over,
    decode_times,
    encode_times,
    needs_carry_over,
    pack_material,
    row_aad,
    unpack_material,
)
from blelock.vendors.noke.values import ListedKeys, OfflineGrant

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
    keys: str
    sealed: bytes


_NOT_HELD: tuple[_Row | None, int | None] = (None, None)


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
        self._carried = False

    def __repr__(self) -> str:
        return f"KeyStore({self._db!r}, lifetime={self._lifetime})"

    async def _ready(self) -> None:
        """On first use, carry the per-key rows of an older blelock into the per-lock layout
        (one write transaction; a read first, so a current store takes no write lock)."""
        if self._carried:
            return
        if await self._db.run(needs_carry_over, write=False):
            await self._db.run(self._carry_over)
        self._carried = True

    def _carry_over(self, conn: sqlite3.Connection) -> None:
        if needs_carry_over(conn):  # again under the write lock: another process may have
            carry_over(conn, self._key, self._key.source)

    async def apply_sync(
        self, grants: Sequence[OfflineGrant], *, scope_macs: Collection[MacAddress] | None
    ) -> KeySyncSummary:
        """Store every grant; mark revoked the cached keys within ``scope_macs`` (every lock
        when None) that the cloud no longer lists. One transaction: all of it or none.

        Every key the cloud lists is renewed (fetched now, expiring a lifetime from now), its
        material unchanged or not: the cloud has just vouched for it. ``unchanged`` counts those
        whose material was already cached as it is."""
        # A copy: the caller may reuse its list while the writer thread works through it.
        return await self.apply_listed(ListedKeys.of(grants), scope_macs=scope_macs)

    async def apply_listed(
        self, listed: ListedKeys, *, scope_macs: Collection[MacAddress] | None
    ) -> KeySyncSummary:
        """:meth:`apply_sync` of keys listed lock by lock (a fleet's sync, a chunk at a time;
        the writer thread reads ``listed``: leave it as it is)."""
        await self._ready()
        now = _seconds(self._clock.now_utc())
        expires = now + int(self._lifetime.total_seconds())
        scope = None if scope_macs is None else frozenset(scope_macs)

        def apply(conn: sqlite3.Connection) -> tuple[KeySyncSummary, bool]:
            summary = self._apply(conn, listed.by_lock, scope, now, expires)
            # A revocation or a replaced key raises the store's generation: a copy of the store
            # from before, put back, is refused and cannot give the old key back.
            return summary, summary.revoked > 0 or summary.refreshed > 0

        return await self._db.run_revoking(apply, self._key)

    async def usable(self, lock_id: MacAddress, tracking_key: str | None = None) -> CachedKey:
        """The freshest key for ``lock_id`` (and ``tracking_key``) that is neither revoked nor
        expired, or the OfflineKeyError that says why there is none."""
        await self._ready()
        now = _seconds(self._clock.now_utc())

        def choose(conn: sqlite3.Connection) -> CachedKey:
            found = conn.execute(
                "SELECT lock_id, keys, CAST(sealed AS BLOB) FROM noke_lock_keys WHERE lock_id = ?",
                (lock_id,),
            ).fetchone()
            return self._choose(lock_id, tracking_key, None if found is None else _Row(*found), now)

        return await self._db.run(choose, write=False)

    async def list_keys(self) -> list[KeyInfo]:
        """Every cached key (revoked and expired ones too), by lock and tracking key."""
        await self._ready()

        def listing(conn: sqlite3.Connection) -> list[KeyInfo]:
            infos: list[KeyInfo] = []
            query = "SELECT lock_id, keys FROM noke_lock_keys ORDER BY lock_id"
            for lock, text in conn.execute(query):
                mac = MacAddress(lock)
                infos += (
                    KeyInfo(
                        lock_id=mac,
                        tracking_key=times.tracking_key,
                        fetched_at=_datetime(times.fetched_at),
                        expires_at=_datetime(times.expires_at),
                        revoked_at=None
                        if times.revoked_at is None
                        else _datetime(times.revoked_at),
                    )
                    for times in sorted(_times_or_none(text))
                )
            return infos

        return await self._db.run(listing, write=False)

    async def revoke_unlisted(self, listing: FleetListing) -> KeySyncSummary:
        """Mark revoked (material wiped) every cached key of a lock that ``listing`` does not
        hold: the locks the company no longer has. Statements over the store, whatever the
        size of the fleet; the store's generation is raised if it revoked any."""
        await self._ready()
        now = _seconds(self._clock.now_utc())
        unlisted = f"lock_id NOT IN (SELECT mac FROM {listing.table})"
        live = "json_extract(value, '$[3]') IS NULL"

        def revoke(conn: sqlite3.Connection) -> tuple[KeySyncSummary, bool]:
            (revoked,) = conn.execute(
                f"SELECT count(*) FROM noke_lock_keys, json_each(noke_lock_keys.keys) "
                f"WHERE {unlisted} AND {live}"
            ).fetchone()
            if revoked:
                # No live key is left in these rows, so no material either.
                conn.execute(
                    "UPDATE noke_lock_keys SET sealed = x'', keys = ("
                    "SELECT json_group_array(json(CASE WHEN "
                    f"{live} THEN json_replace(value, '$[3]', ?) ELSE value END)) "
                    f"FROM json_each(noke_lock_keys.keys)) "
                    f"WHERE {unlisted} AND EXISTS (SELECT 1 FROM json_each(noke_lock_keys.keys) "
                    f"WHERE {live})",
                    (now,),
                )
            return KeySyncSummary(0, 0, revoked, 0), revoked > 0

        return await self._db.run_revoking(revoke, self._key)

    async def locks_held(self) -> list[MacAddress]:
        """Every lock the cache holds a key for (revoked ones too)."""
        await self._ready()

        def held(conn: sqlite3.Connection) -> list[MacAddress]:
            query = "SELECT lock_id FROM noke_lock_keys ORDER BY lock_id"
            return [MacAddress(lock) for (lock,) in conn.execute(query)]

        return await self._db.run(held, write=False)

    # --- in the writer thread -----------------------------------------------------------------

    def _apply(
        self,
        conn: sqlite3.Connection,
        listed: dict[str, Material],
        scope: frozenset[MacAddress] | None,
        now: int,
        expires: int,
    ) -> KeySyncSummary:
        visit = set(listed)
        if scope is None:
            visit.update(row[0] for row in conn.execute("SELECT lock_id FROM noke_lock_keys"))
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
        listed: dict[str, Material],
        scope: frozenset[MacAddress] | None,
        now: int,
        expires: int,
        counts: list[int],
    ) -> None:
        # Each row with the count of its key entries, counted by SQLite (None: not JSON), so
        # that telling a row listed exactly as held parses none of it here.
        held = {
            lock: (_Row(lock, keys, sealed), entries)
            for lock, keys, sealed, entries in conn.execute(
                "SELECT lock_id, keys, CAST(sealed AS BLOB), "
                "CASE WHEN json_valid(keys) THEN json_array_length(keys) END "
                f"FROM noke_lock_keys WHERE lock_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
        }
        rows: list[tuple[str, str, bool]] = []  # lock, its key times, whether it keeps material
        to_seal: list[tuple[bytes, bytes]] = []
        # The per-lock work of a fleet's sync (a hundred thousand locks): names bound once.
        quoted, header, keep, seal_of = _quoted, _HEADER.pack, rows.append, to_seal.append
        renewed = f",{now},{expires},null]"
        for mac in chunk:
            entries = listed.get(mac, {})
            row, held_entries = held.get(mac, _NOT_HELD)
            if entries:
                # The common cases of a fleet's sync: a lock the cache does not hold yet (a first
                # sync: all of them), or one listed exactly as held (a daily sync: nearly all).
                # Its row is written as encode_times and pack_material would write it.
                names = sorted(entries)
                text = "[" + ",".join(["[" + quoted(name) + renewed for name in names]) + "]"
                parts = []
                for name in names:
                    offline_key, command = entries[name]
                    encoded = name.encode()
                    parts.append(
                        header(len(encoded), len(offline_key), len(command))
                        + encoded
                        + offline_key
                        + command
                    )
                plaintext = b"".join(parts)
                if row is None or (
                    held_entries == len(names) and self._holds_exactly(row, plaintext)
                ):
                    counts[0 if row is None else 3] += len(names)
                    keep((mac, text, True))
                    seal_of((plaintext, row_aad(mac, text)))
                    continue
            if row is None:
                continue
            times: list[KeyTimes] = []
            material: Material = {}
            old_times, old_material = self._held(row)
            for before in old_times:
                if before.tracking_key in entries:
                    continue
                if before.revoked_at is None and (scope is None or mac in scope):
                    counts[2] += 1  # revoked: its material is not carried (wiped)
                    times.append(before._replace(revoked_at=now))
                    continue
                times.append(before)
                kept = old_material.get(before.tracking_key)
                if kept is not None and before.revoked_at is None:
                    material[before.tracking_key] = kept
            old = {before.tracking_key: before for before in old_times}
            for tracking, pair in entries.items():
                previous = old.get(tracking)
                if previous is None:
                    counts[0] += 1
                elif previous.revoked_at is None and old_material.get(tracking) == pair:
                    counts[3] += 1  # unchanged; sealed again below, for its renewed expiry
                else:
                    # Changed, listed again after a revocation, or damaged: a key that no
                    # longer opens is healed here rather than refused forever.
                    counts[1] += 1
                times.append(KeyTimes(tracking, now, expires, None))
                material[tracking] = pair
            if not times:
                continue
            text = encode_times(times)
            rows.append((mac, text, bool(material)))
            if material:
                to_seal.append((pack_material(material), row_aad(mac, text)))
        sealed = iter(self._key.seal_many(to_seal))
        conn.executemany(
            "INSERT INTO noke_lock_keys (lock_id, keys, sealed) VALUES (?, ?, ?) "
            "ON CONFLICT (lock_id) DO UPDATE SET keys = excluded.keys, sealed = excluded.sealed",
            # No live key, no material: x'' (a key made live again by hand has none to open).
            [(mac, text, next(sealed) if keeps else b"") for mac, text, keeps in rows],
        )

    def _holds_exactly(self, row: _Row, plaintext: bytes) -> bool:
        """Whether the held row, naming as many keys as are listed, seals exactly the listed
        keys' material (``plaintext``, packed as the row would seal them): the sync then changes
        nothing but the keys' times. Only live keys have material, so equal material and as
        many entries as listed keys leave no other case. A row that does not open is not (its
        keys are healed on the longer way)."""
        if not row.sealed:
            return False
        try:
            return self._key.open(row.sealed, row_aad(row.lock_id, row.keys)) == plaintext
        except StoreError:
            return False

    def _held(self, row: _Row) -> tuple[list[KeyTimes], Material]:
        """A held row's times and live material; a row that does not open gives no material
        (its listed keys are then healed, its others stay refused as tampered)."""
        times = _times_or_none(row.keys)
        if not row.sealed:
            return times, {}
        try:
            return times, unpack_material(
                self._key.open(row.sealed, row_aad(row.lock_id, row.keys))
            )
        except (StoreError, UnicodeDecodeError):
            return times, {}

    def _choose(
        self, lock_id: MacAddress, tracking_key: str | None, row: _Row | None, now: int
    ) -> CachedKey:
        times = [] if row is None else self._times_to_choose_from(row)
        candidates = [t for t in times if tracking_key is None or t.tracking_key == tracking_key]
        # Freshest first; among keys of one sync, the later expiry, then a stable order.
        candidates.sort(key=lambda t: (-t.fetched_at, -t.expires_at, t.tracking_key))
        which = _which(lock_id, tracking_key)
        if not candidates:
            others = len(times) if tracking_key is not None else 0
            also = f" (the cache holds {others} other tracking key(s) for it)" if others else ""
            raise OfflineKeyMissing(f"no offline key {which} was ever synced{also}")
        for chosen in candidates:
            if chosen.revoked_at is None and chosen.expires_at > now:
                assert row is not None
                return self._decrypt(row, chosen)
        best = candidates[0]  # nothing usable: explain the freshest, revocation before expiry
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

    @staticmethod
    def _times_to_choose_from(row: _Row) -> list[KeyTimes]:
        try:
            return decode_times(row.keys)
        except StoreError:
            # Not "never synced": the lock's row is there, its list of keys is what broke.
            raise StoreError(
                f"the cached offline keys for {row.lock_id} are damaged in the store (their "
                "list does not read); none was used",
                hint="run `blelock sync` while online to fetch them again",
            ) from None

    def _decrypt(self, row: _Row, chosen: KeyTimes) -> CachedKey:
        which = _which(MacAddress(row.lock_id), chosen.tracking_key)
        try:
            pair = unpack_material(self._key.open(row.sealed, row_aad(row.lock_id, row.keys))).get(
                chosen.tracking_key
            )
        except (StoreError, UnicodeDecodeError):
            pair = None
        if pair is None:
            raise StoreError(
                f"the cached offline key {which} was tampered with or sealed under another data "
                f"key ({self._key.source}); it was not used",
                hint="run `blelock sync` while online to fetch it again",
            )
        return CachedKey(
            lock_id=MacAddress(row.lock_id),
            tracking_key=chosen.tracking_key,
            fetched_at=_datetime(chosen.fetched_at),
            expires_at=_datetime(chosen.expires_at),
            offline_key=pair[0],
            unlock_command=pair[1],
        )


class FleetListing:
    """The company's locks as one sync listed them, in a temporary table of the store's
    connection: SQLite keeps temporary tables in a file with a small page cache, so a fleet
    of any size costs the same memory. Read back in MAC order a chunk at a time; dropped by
    :meth:`drop` (or with the connection).

    The listing comes in the cloud's order, so it is appended as it comes and indexed by MAC
    once complete (one sort): kept in MAC order while it arrived, each insert went to a random
    page, and past the page cache (a few hundred thousand locks) each one read a page from the
    file. 1M locks took 6.7 s so against 1.3 s appended and sorted.

    Only temporary tables are written here, so the transactions are deferred ones: another
    process's writer is not held up (``write=True`` would take the store's write lock)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._name: Final = f"noke_listed_{uuid.uuid4().hex}"
        self.table: Final = f"temp.{self._name}"
        self._index: Final = f"temp.{self._name}_by_mac"

    def __repr__(self) -> str:
        return f"FleetListing({self.table})"

    async def restart(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (mac TEXT NOT NULL)")
            conn.execute(f"DROP INDEX IF EXISTS {self._index}")
            conn.execute(f"DELETE FROM {self.table}")

        await self._db.run(create, write=False)

    async def add(self, macs: Sequence[MacAddress]) -> None:
        rows = [(mac,) for mac in macs]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(f"INSERT INTO {self.table} (mac) VALUES (?)", rows)

        await self._db.run(insert, write=False)

    async def chunks(self, size: int) -> AsyncIterator[list[MacAddress]]:
        """The listed MACs in order, each once, ``size`` at a time (one read each: only it is
        held). The listing is complete when this is first read: it is indexed then."""

        def index(conn: sqlite3.Connection) -> None:
            conn.execute(f"CREATE INDEX IF NOT EXISTS {self._index} ON {self._name} (mac)")

        await self._db.run(index, write=False)
        after = ""
        while True:

            def read(conn: sqlite3.Connection, after: str = after) -> list[MacAddress]:
                query = f"SELECT DISTINCT mac FROM {self.table} WHERE mac > ? ORDER BY mac LIMIT ?"
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


def _times_or_none(text: str) -> list[KeyTimes]:
    """A row's key times; a damaged list reads as no keys rather than breaking a listing."""
    try:
        return decode_times(text)
    except StoreError:
        return []


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
