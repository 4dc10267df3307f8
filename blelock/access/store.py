"""The durable record of access grants: what was asked for (grants and their locks), and what
each vendor was given (items), with leases so that several reconcilers do not work on one grant
at once.

One implementation of the queries serves both databases: the embedded SQLite store (one
kiosk, the default) and PostgreSQL (several kiosks or an office service sharing grants). Each
call is one transaction over a DB-API cursor; only the lease query differs (PostgreSQL takes
rows with ``FOR UPDATE SKIP LOCKED``; SQLite's write transaction is already exclusive).

Every write a reconciler makes is fenced by its lease: one whose lease ran out (it was presumed
dead and another took the grant) has its writes for that grant refused, rather than writing over
the new owner's work (which finds what the slow one made by listing, as after a crash). A lease
is renewed the same way (:meth:`GrantStore.renew`) before each vendor call, so a slow reconciler
learns it was overtaken before it asks a vendor again, not only when it writes.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from blelock.access.rules import TargetPlan
from blelock.errors import ConfigError, UsageError
from blelock.grants import Code, Grant, GrantStatus, Holder, Item, LockRef, Schedule
from blelock.store.crypto import DataKey

__all__ = [
    "GrantRecord",
    "GrantResult",
    "GrantStore",
    "ItemRow",
    "ItemState",
    "SqlGrants",
    "TargetRow",
]

Dialect = Literal["sqlite", "postgres"]


class ItemState(enum.StrEnum):
    APPLYING = "applying"
    """Recorded before the vendor is asked: a crash after this is found by listing."""
    APPLIED = "applied"
    REMOVING = "removing"
    REMOVED = "removed"
    ERROR = "error"
    """The vendor refused it for good (the reason is kept); not retried until granted again."""


@dataclass(frozen=True, slots=True)
class ItemRow:
    grant_id: str
    lock: LockRef
    item: Item
    state: ItemState
    ref: str | None = None
    confirmed: bool = True
    attempts: int = 0
    error: str | None = None
    updated_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class TargetRow:
    plan: TargetPlan
    status: GrantStatus
    reason: str | None = None
    updated_at: dt.datetime | None = None

    @property
    def lock(self) -> LockRef:
        return self.plan.lock


@dataclass(frozen=True, slots=True)
class GrantResult:
    """What one reconciler turn did to a grant, to be written with its lease given up."""

    grant_id: str
    statuses: Mapping[LockRef, tuple[GrantStatus, str | None]]
    next_check_at: dt.datetime | None
    rows: Sequence[ItemRow] = ()


@dataclass(frozen=True, slots=True)
class GrantRecord:
    grant: Grant
    targets: tuple[TargetRow, ...]
    items: tuple[ItemRow, ...] = ()
    next_check_at: dt.datetime | None = None
    lease_owner: str | None = None
    sealed: bytes = field(default=b"", repr=False)
    """The holder's codes, sealed (opened only for the reconciler)."""

    def status(self) -> GrantStatus:
        """The grant's status over its locks: the least settled one wins."""
        order = [
            GrantStatus.ERROR,
            GrantStatus.APPLYING,
            GrantStatus.REVOKING,
            GrantStatus.PENDING,
            GrantStatus.SCHEDULED,
            GrantStatus.ACTIVE,
            GrantStatus.REVOKED,
        ]
        present = {target.status for target in self.targets}
        return next((status for status in order if status in present), GrantStatus.PENDING)


class GrantStore(Protocol):
    """What the reconciler and the surfaces need of a grant store (SQLite or PostgreSQL)."""

    kind: str

    async def add(self, grant: Grant, plans: Sequence[TargetPlan], now: dt.datetime) -> None: ...
    async def get(self, grant_id: str) -> GrantRecord | None: ...
    async def grants(self) -> list[GrantRecord]: ...
    async def revoke(self, grant_id: str, now: dt.datetime) -> GrantRecord: ...
    async def lease(
        self, owner: str, now: dt.datetime, lease_s: float, limit: int
    ) -> list[GrantRecord]: ...
    async def renew(self, owner: str, grant_id: str, now: dt.datetime, lease_s: float) -> bool:
        """Extend ``owner``'s lease on the grant to ``now + lease_s``, in one statement, only
        while it is still theirs; False when another reconciler has taken it (or the turn was
        finished). Asked before each vendor call, so that no call is made for a lost grant."""
        ...

    async def save_items(
        self, owner: str, rows: Sequence[ItemRow], now: dt.datetime, lease_s: float
    ) -> set[str]:
        """Write these items in one transaction, each only while its grant's lease is this
        owner's (extended); the grants whose lease was lost."""
        ...

    async def finish(
        self, owner: str, results: Sequence[GrantResult], now: dt.datetime
    ) -> set[str]:
        """For each grant still leased by ``owner``: its items and each lock's status, its
        next look, and the lease given up — one transaction; the grants whose lease was lost."""
        ...

    async def next_due(self, now: dt.datetime) -> tuple[int, float | None]: ...
    async def live_refs(self, lock: LockRef) -> list[tuple[str, str, str]]:
        """(grant id, item key, vendor id) of every live item on ``lock`` with an id."""
        ...

    async def counts(self) -> dict[str, int]: ...


# --- the queries, over any DB-API cursor --------------------------------------------------


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...

    @property
    def rowcount(self) -> int: ...


Runner = Callable[[Callable[["Sql"], Any], bool], Any]


@dataclass
class Sql:
    """A cursor inside one transaction, in one dialect (``?`` placeholders either way)."""

    cursor: Cursor
    dialect: Dialect

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self.cursor.execute(self._text(sql), params)
        return list(self.cursor.fetchall())

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cursor.execute(self._text(sql), params)
        return int(self.cursor.rowcount)

    def _text(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql


def _seconds(moment: dt.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _instant(value: int | float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(int(value), dt.UTC)


_GRANT_COLUMNS = (
    "id, holder_name, identities, starts_at, ends_at, windows, timezone, uses, rounded, "
    "created_at, revoked_at, next_check_at, lease_owner, sealed"
)


def _grant(row: Sequence[Any]) -> tuple[Grant, dt.datetime | None, str | None, bytes]:
    (gid, name, identities, starts, ends, windows, tz, uses, rounded, created, revoked) = row[:11]
    schedule = Schedule.from_json(
        {
            "starts_at": _iso(starts),
            "ends_at": None if ends is None else _iso(ends),
            "windows": json.loads(windows),
            "timezone": tz,
        }
    )
    grant = Grant(
        id=gid,
        holder=Holder(name, json.loads(identities)),
        locks=(),
        schedule=schedule,
        uses=uses,
        rounded=bool(rounded),
        created_at=_instant(created),
        revoked_at=_instant(revoked),
    )
    return grant, _instant(row[11]), row[12], bytes(row[13] or b"")


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).isoformat()


def _target(row: Sequence[Any]) -> tuple[str, TargetRow]:
    gid, plan, status, reason, updated = row
    return gid, TargetRow(
        TargetPlan.from_json(json.loads(plan)), GrantStatus(status), reason, _instant(updated)
    )


def _item(row: Sequence[Any]) -> ItemRow:
    (gid, vendor, lock, key, starts, ends, enforced, native, state, ref, confirmed) = row[:11]
    attempts, error, updated = row[11:]
    start = _instant(starts)
    assert start is not None
    return ItemRow(
        gid,
        LockRef(vendor, lock),
        Item(key, start, _instant(ends), enforced, json.loads(native)),
        ItemState(state),
        ref,
        bool(confirmed),
        attempts,
        error,
        _instant(updated),
    )


def _records(sql: Sql, where: str, params: Sequence[Any]) -> list[GrantRecord]:
    grants = sql.rows(f"SELECT {_GRANT_COLUMNS} FROM access_grants {where}", params)
    if not grants:
        return []
    ids = [row[0] for row in grants]
    targets: dict[str, list[TargetRow]] = {gid: [] for gid in ids}
    items: dict[str, list[ItemRow]] = {gid: [] for gid in ids}
    for chunk in _chunks(ids, 500):
        marks = ",".join("?" * len(chunk))
        for row in sql.rows(
            "SELECT grant_id, plan, status, reason, updated_at FROM access_targets "
            f"WHERE grant_id IN ({marks}) ORDER BY grant_id, vendor, lock_id",
            chunk,
        ):
            gid, target = _target(row)
            targets[gid].append(target)
        for row in sql.rows(
            "SELECT grant_id, vendor, lock_id, item_key, starts_at, ends_at, enforced_by, "
            "native, state, ref, confirmed, attempts, error, updated_at FROM access_items "
            f"WHERE grant_id IN ({marks}) ORDER BY grant_id, vendor, lock_id, item_key",
            chunk,
        ):
            items[row[0]].append(_item(row))
    records = []
    for row in grants:
        grant, next_check, owner, sealed = _grant(row)
        own = tuple(targets[grant.id])
        grant = replace(grant, locks=tuple(t.lock for t in own))
        records.append(GrantRecord(grant, own, tuple(items[grant.id]), next_check, owner, sealed))
    return records


def _codes_aad(grant_id: str) -> bytes:
    return b"blelock grant codes " + grant_id.encode()


def _chunks(values: Sequence[str], size: int) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def insert_grant(
    sql: Sql, grant: Grant, plans: Sequence[TargetPlan], now: dt.datetime, sealed: bytes = b""
) -> None:
    if sql.rows("SELECT 1 FROM access_grants WHERE id = ?", (grant.id,)):
        raise UsageError(f"a grant {grant.id} exists already")
    schedule = grant.schedule
    sql.run(
        f"INSERT INTO access_grants ({_GRANT_COLUMNS}) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            grant.id,
            grant.holder.name,
            json.dumps(dict(grant.holder.identities), sort_keys=True),
            _seconds(schedule.starts_at),
            _seconds(schedule.ends_at),
            json.dumps([w.as_json() for w in schedule.windows]),
            schedule.timezone,
            grant.uses,
            int(grant.rounded),
            _seconds(grant.created_at or now),
            None,
            _seconds(now),
            None,
            sealed,
        ),
    )
    for plan in plans:
        sql.run(
            "INSERT INTO access_targets (grant_id, vendor, lock_id, plan, status, reason, "
            "updated_at) VALUES (?, ?, ?, ?, ?, NULL, ?)",
            (
                grant.id,
                plan.lock.vendor,
                plan.lock.lock_id,
                json.dumps(plan.as_json(), sort_keys=True),
                GrantStatus.PENDING.value,
                _seconds(now),
            ),
        )


def request_revoke(sql: Sql, grant_id: str, now: dt.datetime) -> None:
    changed = sql.run(
        "UPDATE access_grants SET revoked_at = COALESCE(revoked_at, ?), next_check_at = ? "
        "WHERE id = ?",
        (_seconds(now), _seconds(now), grant_id),
    )
    if not changed:
        raise UsageError(f"no grant {grant_id}", hint="`blelock access list` shows them")


def take_leases(
    sql: Sql, owner: str, now: dt.datetime, lease_s: float, limit: int
) -> list[GrantRecord]:
    moment = now.timestamp()
    due = (
        "SELECT id FROM access_grants WHERE next_check_at <= ? "
        "AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_check_at LIMIT ?"
    )
    if sql.dialect == "postgres":
        due += " FOR UPDATE SKIP LOCKED"
    ids = [row[0] for row in sql.rows(due, (int(moment), moment, limit))]
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    sql.run(
        f"UPDATE access_grants SET lease_owner = ?, lease_until = ? WHERE id IN ({marks})",
        (owner, moment + lease_s, *ids),
    )
    return _records(sql, f"WHERE id IN ({marks}) ORDER BY next_check_at, id", ids)


def _holds(sql: Sql, owner: str, grant_id: str, now: dt.datetime, lease_s: float) -> bool:
    """Extend this owner's lease; False when it is no longer theirs."""
    moment = now.timestamp()
    # Only the owner matters: a lease that ran out and was not taken is still this one's (no
    # one else can have worked on the grant meanwhile). One UPDATE with the owner in its WHERE
    # is atomic against a takeover on both databases: SQLite's write transaction is
    # exclusive, and PostgreSQL re-checks the WHERE on the row a concurrent taker committed.
    held = sql.run(
        "UPDATE access_grants SET lease_until = ? WHERE id = ? AND lease_owner = ?",
        (moment + lease_s, grant_id, owner),
    )
    return bool(held)


def store_items(
    sql: Sql, owner: str, rows: Sequence[ItemRow], now: dt.datetime, lease_s: float
) -> set[str]:
    lost = {g for g in {row.grant_id for row in rows} if not _holds(sql, owner, g, now, lease_s)}
    for row in rows:
        if row.grant_id not in lost:
            _store_item(sql, row, now)
    return lost


def _store_item(sql: Sql, row: ItemRow, now: dt.datetime) -> None:
    item = row.item
    values = (
        _seconds(item.starts_at),
        _seconds(item.ends_at),
        item.enforced_by,
        json.dumps(dict(item.native), sort_keys=True),
        row.state.value,
        row.ref,
        int(row.confirmed),
        row.attempts,
        row.error,
        _seconds(now),
    )
    key = (row.grant_id, row.lock.vendor, row.lock.lock_id, item.key)
    updated = sql.run(
        "UPDATE access_items SET starts_at = ?, ends_at = ?, enforced_by = ?, native = ?, "
        "state = ?, ref = ?, confirmed = ?, attempts = ?, error = ?, updated_at = ? "
        "WHERE grant_id = ? AND vendor = ? AND lock_id = ? AND item_key = ?",
        (*values, *key),
    )
    if not updated:
        sql.run(
            "INSERT INTO access_items (grant_id, vendor, lock_id, item_key, starts_at, ends_at, "
            "enforced_by, native, state, ref, confirmed, attempts, error, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, *values),
        )


def finish_grants(
    sql: Sql, owner: str, results: Sequence[GrantResult], now: dt.datetime
) -> set[str]:
    lost: set[str] = set()
    for result in results:
        if not _holds(sql, owner, result.grant_id, now, 0.0):
            lost.add(result.grant_id)
            continue
        for row in result.rows:
            _store_item(sql, row, now)
        for lock, (status, reason) in result.statuses.items():
            differs = "IS DISTINCT FROM" if sql.dialect == "postgres" else "IS NOT"
            sql.run(
                "UPDATE access_targets SET status = ?, reason = ?, updated_at = ? "
                "WHERE grant_id = ? AND vendor = ? AND lock_id = ? AND (status <> ? OR "
                f"reason {differs} ?)",
                (status.value, reason, _seconds(now), result.grant_id, lock.vendor, lock.lock_id,
                 status.value, reason),
            )  # fmt: skip
        sql.run(
            "UPDATE access_grants SET next_check_at = ?, lease_owner = NULL, lease_until = NULL "
            "WHERE id = ? AND lease_owner = ?",
            (_seconds(result.next_check_at), result.grant_id, owner),
        )
    return lost


def due_summary(sql: Sql, now: dt.datetime) -> tuple[int, float | None]:
    """How many grants are due now, and when the earliest lease held on one of them ends."""
    moment = now.timestamp()
    (count, leased_until) = sql.rows(
        "SELECT count(*), min(lease_until) FROM access_grants WHERE next_check_at <= ?",
        (int(moment),),
    )[0]
    return int(count), None if leased_until is None else float(leased_until)


def live_refs(sql: Sql, lock: LockRef) -> list[tuple[str, str, str]]:
    return [
        (str(g), str(k), str(r))
        for g, k, r in sql.rows(
            "SELECT grant_id, item_key, ref FROM access_items WHERE vendor = ? AND lock_id = ? "
            "AND ref IS NOT NULL AND state IN ('applying', 'applied', 'removing')",
            (lock.vendor, lock.lock_id),
        )
    ]


def status_counts(sql: Sql) -> dict[str, int]:
    return {
        str(status): int(count)
        for status, count in sql.rows("SELECT status, count(*) FROM access_targets GROUP BY status")
    }


@dataclass
class SqlGrants:
    """A :class:`GrantStore` over a transaction runner: ``run(fn, write)`` calls
    ``fn(Sql)`` inside one transaction in the database's own thread."""

    runner: Callable[[Callable[[Sql], Any], bool], Any]
    kind: str
    keys: Callable[[], Awaitable[DataKey]] | None = None
    """The key the holders' codes are sealed under (None: this store takes no codes)."""

    async def _key(self) -> DataKey:
        if self.keys is None:
            raise ConfigError(
                "grants with codes in the shared grant database need access_code_key (the "
                "same on every kiosk)",
                hint="set access_code_key to 32 random bytes in URL-safe base64 on each kiosk",
            )
        return await self.keys()

    async def _seal(self, grant: Grant) -> bytes:
        if not grant.holder.codes:
            return b""
        text = json.dumps({name: code.reveal() for name, code in grant.holder.codes.items()})
        return (await self._key()).seal(text.encode(), _codes_aad(grant.id))

    async def _opened(self, records: list[GrantRecord]) -> list[GrantRecord]:
        """The records with their holders' codes (what the vendors are given)."""
        if not any(record.sealed for record in records):
            return records
        key = await self._key()
        opened = []
        for record in records:
            if record.sealed:
                values = json.loads(key.open(record.sealed, _codes_aad(record.grant.id)))
                codes = {n: Code(v, key.tag(v.encode())) for n, v in values.items()}
                holder = replace(record.grant.holder, codes=codes)
                record = replace(record, grant=replace(record.grant, holder=holder))
            opened.append(record)
        return opened

    async def _call(self, fn: Callable[[Sql], Any], write: bool = True) -> Any:
        return await self.runner(fn, write)

    async def add(self, grant: Grant, plans: Sequence[TargetPlan], now: dt.datetime) -> None:
        sealed = await self._seal(grant)
        await self._call(lambda sql: insert_grant(sql, grant, plans, now, sealed))

    async def get(self, grant_id: str) -> GrantRecord | None:
        found: list[GrantRecord] = await self._call(
            lambda sql: _records(sql, "WHERE id = ?", (grant_id,)), False
        )
        return found[0] if found else None

    async def grants(self) -> list[GrantRecord]:
        found: list[GrantRecord] = await self._call(
            lambda sql: _records(sql, "ORDER BY created_at, id", ()), False
        )
        return found

    async def revoke(self, grant_id: str, now: dt.datetime) -> GrantRecord:
        await self._call(lambda sql: request_revoke(sql, grant_id, now))
        record = await self.get(grant_id)
        assert record is not None
        return record

    async def lease(
        self, owner: str, now: dt.datetime, lease_s: float, limit: int
    ) -> list[GrantRecord]:
        taken: list[GrantRecord] = await self._call(
            lambda sql: take_leases(sql, owner, now, lease_s, limit)
        )
        return await self._opened(taken)

    async def renew(self, owner: str, grant_id: str, now: dt.datetime, lease_s: float) -> bool:
        held: bool = await self._call(lambda sql: _holds(sql, owner, grant_id, now, lease_s))
        return held

    async def save_items(
        self, owner: str, rows: Sequence[ItemRow], now: dt.datetime, lease_s: float
    ) -> set[str]:
        lost: set[str] = await self._call(lambda sql: store_items(sql, owner, rows, now, lease_s))
        return lost

    async def finish(
        self, owner: str, results: Sequence[GrantResult], now: dt.datetime
    ) -> set[str]:
        lost: set[str] = await self._call(lambda sql: finish_grants(sql, owner, results, now))
        return lost

    async def next_due(self, now: dt.datetime) -> tuple[int, float | None]:
        summary: tuple[int, float | None] = await self._call(
            lambda sql: due_summary(sql, now), False
        )
        return summary

    async def live_refs(self, lock: LockRef) -> list[tuple[str, str, str]]:
        refs: list[tuple[str, str, str]] = await self._call(lambda sql: live_refs(sql, lock), False)
        return refs

    async def counts(self) -> dict[str, int]:
        counts: dict[str, int] = await self._call(status_counts, False)
        return counts
