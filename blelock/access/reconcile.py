"""The reconciler: drive every vendor to the grants in the store, and back out at their end.

Idempotent and crash-safe. Each vendor-side object (an :class:`Item`) is recorded as
*applying* before the vendor is asked for it, and as *applied* (with the vendor's id) after; a
run killed in between leaves *applying*, and the next run first looks for what the killed one
may have created — by listing and matching, since no vendor here takes idempotency keys — and
adopts it rather than creating a second. Removal is recorded the same way, and removing what is
already gone is no error.

Work is taken by leases on whole grants (:meth:`GrantStore.lease`), so reconcilers on several
machines sharing one PostgreSQL store do not work on one grant at once, and a grant whose
reconciler died is taken over once its lease runs out. A turn may outlast its lease (a slow
vendor), so the lease is renewed (:meth:`GrantStore.renew`) before every vendor call, and a turn
that finds it taken over stops at once without asking the vendor again (``lost_leases``). Each
call runs under a deadline of half the lease, so a call is given up before the lease it was
renewed for can run out and another reconciler take over. What a deadline cannot stop is a
vendor acting on a request after the client gave up on it (or a process paused past its lease
by the operating system): that object is found by listing and matching, as after a kill -9,
whenever it has landed before the next look at the grant; one that lands later still is the
remaining window for a duplicate.

A grant is looked at only when it is due (``next_check_at``): a reconcile with nothing to change
reads one index and calls no vendor.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from blelock.access.rules import TargetPlan
from blelock.access.store import GrantRecord, GrantResult, GrantStore, ItemRow, ItemState
from blelock.clock import Clock
from blelock.errors import (
    AuthFailed,
    BlelockError,
    CloudError,
    CloudRejected,
    RateLimited,
    StoreError,
)
from blelock.grants import GrantStatus, Item, LockRef, Target, zone, zone_known
from blelock.vendors.base import (
    AccessSession,
    AccessTranslation,
    Applied,
    VendorContext,
    VendorPlugin,
)

__all__ = ["LOOKAHEAD", "ReconcileReport", "Reconciler", "permanent_refusal"]

LOOKAHEAD = dt.timedelta(days=1)
"""A live grant is looked at again at least this often (its rolling items, a lock's drift)."""
RETRY_AFTER = dt.timedelta(seconds=60)
"""After a vendor could not be reached, its grants wait this long (the kiosk's upkeep runs
every sync interval anyway)."""
LEASE_S = 60.0
CALL_SHARE = 0.5
"""A vendor call's deadline, as a share of the lease it was renewed for: the rest is margin for
the renewal's own round trip and for clocks that differ between machines."""
_ANSWERS: contextvars.ContextVar[dict[tuple[LockRef, str], ItemRow]] = contextvars.ContextVar(
    "blelock_access_answers"
)
"""The vendor answers one grant's turn has had, written when the turn ends."""
_LIVE = frozenset({ItemState.APPLYING, ItemState.APPLIED, ItemState.REMOVING})
BATCH = 10
"""Grants leased at a time: small enough that reconcilers sharing a database interleave."""


def permanent_refusal(exc: BaseException) -> bool:
    """The vendor refused this item for good (its content), rather than for now."""
    if not isinstance(exc, CloudRejected) or isinstance(exc, AuthFailed | RateLimited):
        return False
    if exc.transient:
        return False
    if exc.about_content:
        return True
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 423, 425)


@dataclass
class ReconcileReport:
    grants: int = 0
    """Grants looked at (due ones)."""
    applied: int = 0
    found: int = 0
    """Items an interrupted run had created, found by listing and adopted."""
    confirmed: int = 0
    removed: int = 0
    refused: int = 0
    vendor_calls: int = 0
    lost_leases: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.applied + self.found + self.removed + self.confirmed + self.refused


class _LeaseLost(Exception):
    """Another reconciler took this grant over during the turn (not a BlelockError: nothing a
    vendor did, and it ends the grant's turn, not one lock's)."""


Deadline = Callable[[float], contextlib.AbstractAsyncContextManager[object]]
"""A deadline for one call, in seconds (``asyncio.timeout``; a test's clock gives its own)."""


@dataclass
class _Counted:
    """An access session whose calls are counted for the report."""

    inner: AccessSession
    report: ReconcileReport

    async def find(self, target: Target, item: Item, taken: frozenset[str]) -> str | None:
        self.report.vendor_calls += 1
        return await self.inner.find(target, item, taken)

    async def apply(self, target: Target, item: Item) -> object:
        self.report.vendor_calls += 1
        return await self.inner.apply(target, item)

    async def confirm(self, target: Target, item: Item, ref: str) -> str | None:
        self.report.vendor_calls += 1
        return await self.inner.confirm(target, item, ref)

    async def revoke(self, target: Target, item: Item, ref: str | None) -> None:
        self.report.vendor_calls += 1
        await self.inner.revoke(target, item, ref)


@dataclass
class _Leased:
    """One grant's calls to a vendor: its lease renewed before each (the turn ends if it was
    lost), and each under a deadline shorter than the lease."""

    inner: AccessSession
    renew: Callable[[], Awaitable[None]]
    deadline: Callable[[], contextlib.AbstractAsyncContextManager[object]]

    async def find(self, target: Target, item: Item, taken: frozenset[str]) -> str | None:
        await self.renew()
        async with self.deadline():
            return await self.inner.find(target, item, taken)

    async def apply(self, target: Target, item: Item) -> Applied:
        await self.renew()
        async with self.deadline():
            return await self.inner.apply(target, item)

    async def confirm(self, target: Target, item: Item, ref: str) -> str | None:
        await self.renew()
        async with self.deadline():
            return await self.inner.confirm(target, item, ref)

    async def revoke(self, target: Target, item: Item, ref: str | None) -> None:
        await self.renew()
        async with self.deadline():
            await self.inner.revoke(target, item, ref)


def effective_target(record: GrantRecord, plan: TargetPlan) -> Target:
    """The target as the vendor is to hold it now: the plan's schedule, cut at a revocation."""
    grant = record.grant
    schedule = plan.schedule
    end = grant.ends()
    # A revocation before the start leaves the schedule as it was: the grant is over anyway.
    if (
        end is not None
        and end > schedule.starts_at
        and (schedule.ends_at is None or end < schedule.ends_at)
    ):
        schedule = replace(schedule, ends_at=end)
    return Target(grant.id, plan.lock, grant.holder, schedule, grant.uses)


def desired_items(
    access: AccessTranslation, target: Target, now: dt.datetime, revoked: bool
) -> dict[str, Item]:
    """The items that should exist at the vendor now."""
    if revoked:
        return {}
    desired: dict[str, Item] = {}
    for item in access.items(target, now, now + access.lead + dt.timedelta(seconds=1)):
        if item.ends_at is not None and item.ends_at <= now:
            continue
        due = item.starts_at if item.enforced_by == "reconciler" else item.starts_at - access.lead
        if due <= now:
            desired[item.key] = item
    return desired


def next_change(
    access: AccessTranslation, target: Target, now: dt.datetime, revoked: bool
) -> dt.datetime | None:
    """When something about this target next changes (an item due, one over, the end)."""
    if revoked:
        return None
    moments: list[dt.datetime] = []
    span_to = now + access.lead + LOOKAHEAD
    for item in access.items(target, now, span_to):
        due = item.starts_at if item.enforced_by == "reconciler" else item.starts_at - access.lead
        if due > now:
            moments.append(due)
        if item.ends_at is not None and item.ends_at > now:
            moments.append(item.ends_at)
    end = target.schedule.ends_at
    if end is not None and end > now:
        moments.append(end)
    if end is None or end > now + LOOKAHEAD:
        moments.append(now + LOOKAHEAD)
    return min(moments) if moments else None


@dataclass
class _Prepared:
    """A grant's turn, before any vendor is asked: what each lock needs and the intents."""

    record: GrantRecord
    now: dt.datetime
    revoked: bool
    statuses: dict[LockRef, tuple[GrantStatus, str | None]] = field(default_factory=dict)
    intents: list[ItemRow] = field(default_factory=list)
    interrupted: set[tuple[LockRef, str]] = field(default_factory=set)
    work: list[tuple[AccessTranslation, Target, dict[str, Item], dict[str, ItemRow]]] = field(
        default_factory=list
    )


class Reconciler:
    """One reconciler (one process, or one of several sharing a PostgreSQL store)."""

    def __init__(
        self,
        grants: GrantStore,
        plugins: Mapping[str, VendorPlugin],
        context: Callable[[VendorPlugin], VendorContext],
        clock: Clock,
        *,
        owner: str | None = None,
        lease_s: float = LEASE_S,
        batch: int = BATCH,
        timeout: Deadline = asyncio.timeout,
    ) -> None:
        self._grants = grants
        self._plugins = plugins
        self._context = context
        self._clock = clock
        self.owner = owner or uuid.uuid4().hex
        self._lease_s = lease_s
        self._call_s = lease_s * CALL_SHARE
        self._timeout = timeout
        self._batch = batch
        self._claims: dict[LockRef, dict[tuple[str, str], str]] = {}
        """Vendor ids this reconciler adopted or made, by (grant, item), before they are
        written (with its answers); dropped again when the item is removed or refused."""
        self._finding: dict[LockRef, asyncio.Lock] = {}
        self._opening = asyncio.Lock()

    async def run(self, *, until_settled: bool = False) -> ReconcileReport:
        """Every grant due now, batch by batch. ``until_settled``: also wait out leases that
        others hold on due grants (a reconciler that died), until none is due."""
        report = ReconcileReport()
        async with contextlib.AsyncExitStack() as stack:
            sessions: dict[str, AccessSession] = {}
            while True:
                now = self._clock.now_utc()
                taken = await self._grants.lease(self.owner, now, self._lease_s, self._batch)
                if taken:
                    await self._batch_of(taken, sessions, stack, report)
                    continue
                if not until_settled:
                    break
                due, leased_until = await self._grants.next_due(self._clock.now_utc())
                if not due or leased_until is None:
                    break
                wait = leased_until - self._clock.now_utc().timestamp()
                await self._clock.sleep(max(wait, 0.05))
        return report

    async def _session(
        self,
        vendor: str,
        access: AccessTranslation,
        sessions: dict[str, AccessSession],
        stack: contextlib.AsyncExitStack,
        report: ReconcileReport,
    ) -> AccessSession:
        async with self._opening:  # one session per vendor, however many grants ask at once
            if vendor not in sessions:
                ctx = self._context(self._plugins[vendor])
                inner = await stack.enter_async_context(access.session(ctx))
                sessions[vendor] = _Counted(inner, report)  # type: ignore[assignment]
        return sessions[vendor]

    async def _batch_of(
        self,
        records: list[GrantRecord],
        sessions: dict[str, AccessSession],
        stack: contextlib.AsyncExitStack,
        report: ReconcileReport,
    ) -> None:
        """A leased batch of grants: every item that is due is first recorded as *applying*
        (one durable write for the batch, before any vendor is asked), then the vendors are
        asked, and their answers are written with each grant's status in one more
        transaction. A run killed in between leaves *applying* rows, which the next run looks
        for first (by listing and matching) before it asks again."""
        now = self._clock.now_utc()
        for zone_name in {t.plan.schedule.timezone for r in records for t in r.targets}:
            if not zone_known(zone_name):
                await asyncio.to_thread(zone, zone_name)
        prepared = [self._prepare(record, now) for record in records]
        intents = [row for grant in prepared for row in grant.intents]
        if intents:
            lost = await self._grants.save_items(self.owner, intents, now, self._lease_s)
            if lost:
                report.lost_leases += len(lost)
                prepared = [grant for grant in prepared if grant.record.grant.id not in lost]
        report.grants += len(prepared)
        # The batch's grants at once (each one's items in order): the vendors' round trips,
        # not the work here, are what a reconcile waits for.
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._execute(grant, sessions, stack, report))
                for grant in prepared
            ]
        results = [result for task in tasks if (result := task.result()) is not None]
        lost = await self._grants.finish(self.owner, results, self._clock.now_utc())
        report.lost_leases += len(lost)
        report.problems.extend(f"grant {gid}: another reconciler took it over" for gid in lost)

    def _prepare(self, record: GrantRecord, now: dt.datetime) -> _Prepared:
        grant = record.grant
        end = grant.ends()
        prepared = _Prepared(record, now, end is not None and end <= now)
        rows = {(row.lock, row.item.key): row for row in record.items}
        for target_row in record.targets:
            lock = target_row.plan.lock
            plugin = self._plugins.get(lock.vendor)
            access = plugin.access() if plugin is not None else None
            if access is None:
                prepared.statuses[lock] = (
                    GrantStatus.ERROR,
                    f"no vendor {lock.vendor!r} takes grants here",
                )
                continue
            target = effective_target(record, target_row.plan)
            desired = desired_items(access, target, now, prepared.revoked)
            mine = {key: row for (where, key), row in rows.items() if where == lock}
            for key, item in desired.items():
                row = mine.get(key)
                if row is None or row.state is ItemState.APPLYING:
                    if row is not None:
                        prepared.interrupted.add((lock, key))
                    attempts = (row.attempts if row is not None else 0) + 1
                    mine[key] = ItemRow(grant.id, lock, item, ItemState.APPLYING, attempts=attempts)
                    prepared.intents.append(mine[key])
            prepared.work.append((access, target, desired, mine))
        return prepared

    async def _execute(
        self,
        prepared: _Prepared,
        sessions: dict[str, AccessSession],
        stack: contextlib.AsyncExitStack,
        report: ReconcileReport,
    ) -> GrantResult | None:
        """One grant's turn at the vendors; None when another reconciler took it over
        meanwhile (what this turn learnt is dropped: the new owner finds it by listing)."""
        gid = prepared.record.grant.id
        try:
            return await self._turn(prepared, sessions, stack, report)
        except _LeaseLost:
            report.lost_leases += 1
            report.problems.append(f"grant {gid}: another reconciler took it over mid-turn")
            return None

    async def _renew(self, grant_id: str) -> None:
        now = self._clock.now_utc()
        if not await self._grants.renew(self.owner, grant_id, now, self._lease_s):
            raise _LeaseLost(grant_id)

    async def _turn(
        self,
        prepared: _Prepared,
        sessions: dict[str, AccessSession],
        stack: contextlib.AsyncExitStack,
        report: ReconcileReport,
    ) -> GrantResult:
        now, revoked = prepared.now, prepared.revoked
        gid = prepared.record.grant.id
        unsaved: dict[tuple[LockRef, str], ItemRow] = {}
        _ANSWERS.set(unsaved)  # this grant's task's own (each task runs in a copied context)
        checks: list[dt.datetime] = []
        statuses = prepared.statuses
        for access, target, desired, mine in prepared.work:
            lock = target.lock
            problem: str | None = None
            try:
                shared = await self._session(lock.vendor, access, sessions, stack, report)
                session = _Leased(
                    shared, lambda: self._renew(gid), lambda: self._timeout(self._call_s)
                )
                for key, item in desired.items():
                    row = mine[key]
                    if row.state is ItemState.APPLYING:
                        interrupted = (lock, key) in prepared.interrupted
                        mine[key] = await self._apply(
                            session, target, item, row, interrupted, report
                        )
                    elif row.state is ItemState.APPLIED and not row.confirmed:
                        mine[key] = await self._confirm(session, target, row, report)
                for key, row in list(mine.items()):
                    if key not in desired and row.state in _LIVE:
                        mine[key] = await self._remove(session, target, row, report)
            except StoreError:
                raise
            except (BlelockError, TimeoutError) as exc:
                # The vendor cannot be reached or set up now: this lock waits, the rest go on.
                problem = (
                    exc.one_line()
                    if isinstance(exc, BlelockError)
                    else f"the vendor timed out (no answer within {self._call_s:g} s)"
                )
                report.problems.append(f"{lock.text()}: {problem}")
                checks.append(now + RETRY_AFTER)
            statuses[lock] = _status(target, desired, mine, now, revoked, problem)
            if any(r.state is ItemState.APPLIED and not r.confirmed for r in mine.values()):
                checks.append(now + access.confirm_after)
            upcoming = next_change(access, target, now, revoked)
            if upcoming is not None:
                checks.append(upcoming)
            elif any(r.state in _LIVE for r in mine.values()):
                checks.append(now + RETRY_AFTER)
        return GrantResult(
            gid,
            dict(statuses),
            min(checks) if checks else None,
            tuple(unsaved.values()),
        )

    def _save(self, row: ItemRow) -> ItemRow:
        """A vendor's answer, written with the grant's status at the end of its turn (losing
        it to a crash costs the next run a listing, never a duplicate)."""
        _ANSWERS.get()[(row.lock, row.item.key)] = row
        claims = self._claims.setdefault(row.lock, {})
        if row.ref is not None and row.state in _LIVE:
            claims[(row.grant_id, row.item.key)] = row.ref
        else:
            claims.pop((row.grant_id, row.item.key), None)
        return row

    async def _apply(
        self,
        session: AccessSession,
        target: Target,
        item: Item,
        applying: ItemRow,
        interrupted: bool,
        report: ReconcileReport,
    ) -> ItemRow:
        if interrupted:
            # An earlier run asked the vendor and may have been killed before recording the
            # answer: adopt what it made rather than make a second. One look at a time per
            # lock, so that two grants never adopt the same object.
            async with self._finding.setdefault(target.lock, asyncio.Lock()):
                taken = await self._taken(target.lock, target.grant_id, item.key)
                ref = await session.find(target, item, taken)
                adopted = None
                if ref is not None:
                    adopted = self._save(
                        replace(applying, state=ItemState.APPLIED, ref=ref, confirmed=False)
                    )
            if adopted is not None:
                report.found += 1
                # Found is not yet done (a job the killed run started may still be running).
                return await self._confirm(session, target, adopted, report)
        try:
            applied = await session.apply(target, item)
        except CloudError as exc:
            if not permanent_refusal(exc):
                raise
            report.refused += 1
            return self._save(replace(applying, state=ItemState.ERROR, error=exc.one_line()))
        report.applied += 1
        return self._save(
            replace(applying, state=ItemState.APPLIED, ref=applied.ref, confirmed=applied.confirmed)
        )

    async def _taken(self, lock: LockRef, grant_id: str, key: str) -> frozenset[str]:
        """Vendor ids on this lock that other live items own (written, or this run's)."""
        stored = {
            ref
            for other, other_key, ref in await self._grants.live_refs(lock)
            if (other, other_key) != (grant_id, key)
        }
        claimed = {
            ref for owner, ref in self._claims.get(lock, {}).items() if owner != (grant_id, key)
        }
        return frozenset(stored | claimed)

    async def _confirm(
        self, session: AccessSession, target: Target, row: ItemRow, report: ReconcileReport
    ) -> ItemRow:
        assert row.ref is not None
        try:
            done = await session.confirm(target, row.item, row.ref)
        except CloudError as exc:
            if not permanent_refusal(exc):
                raise
            report.refused += 1
            return self._save(replace(row, state=ItemState.ERROR, error=exc.one_line()))
        if done is None:
            return row
        report.confirmed += 1
        return self._save(replace(row, confirmed=True, ref=done))

    async def _remove(
        self, session: AccessSession, target: Target, row: ItemRow, report: ReconcileReport
    ) -> ItemRow:
        # No intent is written first: a revoke repeated after a crash finds the object gone,
        # which is no error.
        ref = row.ref
        taken = await self._taken(target.lock, target.grant_id, row.item.key)
        if ref is None:
            ref = await session.find(target, row.item, taken)
        # A credential another live grant shares (one Nokē key per tracking key) stays.
        if ref is not None and ref not in taken:
            await session.revoke(target, row.item, ref)
        report.removed += 1
        return self._save(replace(row, state=ItemState.REMOVED, ref=ref))


def _status(
    target: Target,
    desired: Mapping[str, Item],
    rows: Mapping[str, ItemRow],
    now: dt.datetime,
    revoked: bool,
    problem: str | None,
) -> tuple[GrantStatus, str | None]:
    states = [rows[key].state if key in rows else None for key in desired]
    errors = [rows[key].error for key in desired if key in rows and rows[key].error]
    if errors:
        return GrantStatus.ERROR, errors[0]
    if revoked:
        live = any(r.state is not ItemState.REMOVED and r.state is not ItemState.ERROR
                   for r in rows.values())  # fmt: skip
        return (GrantStatus.REVOKING if live else GrantStatus.REVOKED), problem
    if any(state is None for state in states):
        return GrantStatus.PENDING, problem
    if any(state is ItemState.APPLYING for state in states) or any(
        not rows[key].confirmed for key in desired
    ):
        return GrantStatus.APPLYING, problem
    if now < target.schedule.starts_at:
        return GrantStatus.SCHEDULED, problem
    if target.schedule.ends_at is not None and now >= target.schedule.ends_at:
        return GrantStatus.REVOKED, problem
    return GrantStatus.ACTIVE, problem


def by_vendor(records: Iterable[GrantRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        for target in record.targets:
            counts[target.lock.vendor] = counts.get(target.lock.vendor, 0) + 1
    return counts
