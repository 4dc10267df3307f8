"""Access grants across vendors: one grant model (:mod:`blelock.grants`), each vendor's rules as
data (its plugin's :class:`~blelock.vendors.base.AccessTranslation`), the durable record of
what was asked for (:mod:`.store`, in the local SQLite store or a shared PostgreSQL database),
and the reconciler that makes it so (:mod:`.reconcile`).

What the CLI (``blelock access …``), the kiosk's routes and ``blelock sync`` call is here;
nothing in this package names a vendor.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from blelock import vendors
from blelock.access.reconcile import Reconciler, ReconcileReport
from blelock.access.rules import TargetPlan, plan_target
from blelock.access.store import GrantRecord, GrantStore, SqlGrants
from blelock.clock import Clock
from blelock.config import Settings
from blelock.errors import UsageError
from blelock.grants import (
    AccessConstraints,
    Code,
    Grant,
    Holder,
    LockRef,
    Schedule,
    WeeklyWindow,
    check_uses,
    ordered_locks,
    parse_window,
    zone,
    zone_known,
)
from blelock.store import Store
from blelock.vendors.base import AccessTranslation, VendorContext, VendorPlugin

__all__ = [
    "GrantRefused",
    "GrantRequest",
    "access_plugins",
    "constraints",
    "create_grant",
    "grant_payload",
    "open_grants",
    "reconcile",
    "resolve_lock",
]


class GrantRefused(UsageError):
    """A grant some vendor cannot express (each reason is listed); nothing was stored."""

    def __init__(self, reasons: Sequence[str], plans: Sequence[TargetPlan]) -> None:
        super().__init__(
            "the grant was refused: " + "; ".join(reasons),
            hint="change it, or allow rounding to what each vendor can express with --round "
            "(`blelock access constraints LOCK` shows the rules)",
        )
        self.reasons = list(reasons)
        self.plans = list(plans)


@dataclass(frozen=True, slots=True)
class GrantRequest:
    """A grant as asked for, before the vendors' rules."""

    holder: str
    locks: Sequence[str]
    starts_at: dt.datetime | None = None
    """None: now."""
    ends_at: dt.datetime | None = None
    windows: Sequence[str | WeeklyWindow] = ()
    timezone: str | None = None
    """None: the ``access_timezone`` setting (the facility's)."""
    uses: int | None = None
    identities: Mapping[str, str] | None = None
    codes: Mapping[str, Code] | None = None
    """The holder's secret codes by name (a keypad PIN, a quick click)."""
    round: bool = False
    grant_id: str | None = None
    """Chosen by the caller (a kiosk's lease id), so that a request sent twice is one grant."""


def access_plugins() -> dict[str, VendorPlugin]:
    """The registered vendors that take grants."""
    return {name: p for name, p in vendors.plugins().items() if p.access() is not None}


def _translation(plugin: VendorPlugin) -> AccessTranslation:
    access = plugin.access()
    if access is None:
        raise UsageError(f"{plugin.title} takes no access grants")
    return access


def resolve_lock(text: str, plugins: Mapping[str, VendorPlugin]) -> tuple[VendorPlugin, LockRef]:
    """``vendor:LOCK``, or a lock id only one vendor that takes grants could own."""
    vendor, sep, rest = text.partition(":")
    if sep and vendor in plugins:
        plugin = plugins[vendor]
        return plugin, LockRef(vendor, _lock_id(plugin, rest, named=True))
    owners: list[tuple[VendorPlugin, str]] = []
    first: UsageError | None = None
    for plugin in plugins.values():
        try:
            owners.append((plugin, _lock_id(plugin, text, named=False)))
        except UsageError as exc:
            first = first or exc
    if len(owners) == 1:
        plugin, lock_id = owners[0]
        return plugin, LockRef(plugin.name, lock_id)
    if not owners:
        if first is not None and len(plugins) == 1:
            raise first
        raise UsageError(
            f"no vendor that takes grants owns a lock named {text!r}",
            hint=f"write it as VENDOR:LOCK ({', '.join(plugins) or 'no vendor takes grants'})",
        )
    names = " or ".join(plugin.name for plugin, _ in owners)
    raise UsageError(
        f"{text!r} could be a lock of {names}", hint=f"write it as VENDOR:LOCK ({names})"
    )


def _lock_id(plugin: VendorPlugin, text: str, *, named: bool) -> str:
    own = _translation(plugin).lock_id(text, named=named)
    return own if own is not None else plugin.parse_lock_id(text)


async def constraints(
    lock: str,
    plugins: Mapping[str, VendorPlugin],
    context: Callable[[VendorPlugin], VendorContext],
) -> AccessConstraints:
    plugin, ref = resolve_lock(lock, plugins)
    return await _translation(plugin).constraints(context(plugin), ref.lock_id)


async def create_grant(
    request: GrantRequest,
    grants: GrantStore,
    plugins: Mapping[str, VendorPlugin],
    context: Callable[[VendorPlugin], VendorContext],
    settings: Settings,
    clock: Clock,
) -> GrantRecord:
    """Check the request against every lock's vendor rules and store it (refused whole, with
    every reason, when some vendor cannot express it and rounding was not allowed)."""
    now = clock.now_utc().replace(microsecond=0)
    if not request.holder.strip():
        raise UsageError("a grant needs a holder's name (--holder)")
    if not request.locks:
        raise UsageError("a grant needs at least one lock (--lock)")
    windows = tuple(w if isinstance(w, WeeklyWindow) else parse_window(w) for w in request.windows)
    starts = (request.starts_at or now).replace(microsecond=0)
    ends = None if request.ends_at is None else request.ends_at.replace(microsecond=0)
    if ends is not None and ends <= now:
        raise UsageError(f"the grant would end in the past ({ends.isoformat()})")
    timezone = request.timezone or settings.access_timezone
    await load_zone(timezone)
    schedule = Schedule(starts, ends, windows, timezone)
    resolved = [resolve_lock(text, plugins) for text in request.locks]
    locks = ordered_locks([ref for _, ref in resolved])
    titles = {ref.vendor: plugin.title for plugin, ref in resolved}
    grant_id = request.grant_id or uuid.uuid4().hex[:16]
    _check_grant_id(grant_id)
    grant = Grant(
        id=grant_id,
        holder=Holder(
            request.holder.strip(), dict(request.identities or {}), dict(request.codes or {})
        ),
        locks=locks,
        schedule=schedule,
        uses=check_uses(request.uses),
        rounded=request.round,
        created_at=now,
    )
    plans: list[TargetPlan] = []
    for ref in locks:
        plugin = plugins[ref.vendor]
        translation = _translation(plugin)
        rules = await translation.constraints(context(plugin), ref.lock_id)
        plan = plan_target(grant, ref, rules, titles[ref.vendor], now)
        extra = tuple(translation.refusals(grant, rules))
        plans.append(replace(plan, refusals=plan.refusals + extra) if extra else plan)
    reasons = [f"{plan.lock.text()}: {why}" for plan in plans for why in plan.refusals]
    if reasons:
        raise GrantRefused(reasons, plans)
    await grants.add(grant, plans, now)
    record = await grants.get(grant.id)
    assert record is not None
    return record


async def load_zone(name: str) -> None:
    """Read a zone's rules in a thread the first time (the zone database is files)."""
    if not zone_known(name):
        await asyncio.to_thread(zone, name)


def _check_grant_id(grant_id: str) -> None:
    if not (1 <= len(grant_id) <= 64) or not all(c.isalnum() or c in "-_." for c in grant_id):
        raise UsageError(
            f"{grant_id!r} is not a grant id", hint="use 1 to 64 letters, digits, - _ or ."
        )


@contextlib.asynccontextmanager
async def open_grants(settings: Settings, store: Store) -> AsyncIterator[GrantStore]:
    """The grant store the settings name: a shared PostgreSQL database (``access_database``)
    or, by default, the local store's own tables."""
    if settings.access_database is not None:
        from blelock.access.postgres import open_postgres

        async with open_postgres(
            settings.access_database.get_secret_value(), settings.access_code_key
        ) as shared:
            yield shared
        return
    database = store.database

    async def run(fn: Callable[..., object], write: bool) -> object:
        from blelock.access.store import Sql

        return await database.run(lambda conn: fn(Sql(conn.cursor(), "sqlite")), write=write)

    yield SqlGrants(run, "sqlite", store.data_key)


async def reconcile(
    grants: GrantStore,
    context: Callable[[VendorPlugin], VendorContext],
    settings: Settings,
    clock: Clock,
    *,
    plugins: Mapping[str, VendorPlugin] | None = None,
    until_settled: bool = False,
    owner: str | None = None,
) -> ReconcileReport:
    """One reconcile run over every due grant."""
    reconciler = Reconciler(
        grants,
        access_plugins() if plugins is None else plugins,
        context,
        clock,
        owner=owner,
        lease_s=settings.access_lease_seconds,
        batch=settings.access_batch,
    )
    return await reconciler.run(until_settled=until_settled)


def grant_payload(record: GrantRecord) -> dict[str, Any]:
    """A grant as JSON: what was asked, each lock's plan and status, what each vendor holds."""
    grant = record.grant
    return {
        "id": grant.id,
        "holder": {
            "name": grant.holder.name,
            "identities": dict(grant.holder.identities),
            "codes_sealed": bool(record.sealed),
        },
        "schedule": grant.schedule.as_json(),
        "uses": grant.uses,
        "rounded": grant.rounded,
        "created_at": None if grant.created_at is None else grant.created_at.isoformat(),
        "revoked_at": None if grant.revoked_at is None else grant.revoked_at.isoformat(),
        "status": record.status().value,
        "next_check_at": None if record.next_check_at is None else record.next_check_at.isoformat(),
        "locks": [
            {
                "vendor": t.lock.vendor,
                "lock_id": t.lock.lock_id,
                "status": t.status.value,
                "reason": t.reason,
                "schedule": t.plan.schedule.as_json(),
                "roundings": list(t.plan.roundings),
                "notes": list(t.plan.notes),
                "items": [
                    {
                        "key": row.item.key,
                        "state": row.state.value,
                        "ref": row.ref,
                        "confirmed": row.confirmed,
                        "starts_at": row.item.starts_at.isoformat(),
                        "ends_at": None
                        if row.item.ends_at is None
                        else row.item.ends_at.isoformat(),
                        "error": row.error,
                    }
                    for row in record.items
                    if row.lock == t.lock
                ],
            }
            for t in record.targets
        ],
    }


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
