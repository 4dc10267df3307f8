"""Back in coverage: for each vendor plugin, refresh what opens its locks offline, then hand
every record kept in its outbox stream to its cloud (:mod:`blelock.vendors.outbox` drains).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from blelock.access import open_grants, reconcile
from blelock.access.reconcile import ReconcileReport
from blelock.clock import Clock
from blelock.config import Settings
from blelock.model import KeyHealth, KeyInfo, refresh_due
from blelock.store import Store
from blelock.vendors.base import OptionValue, VendorContext, VendorPlugin
from blelock.vendors.outbox import drain_outbox

__all__ = [
    "VendorSync",
    "key_health",
    "reconcile_grants",
    "sync_keys",
    "sync_vendor",
    "upload",
]


@dataclass(frozen=True, slots=True)
class VendorSync:
    """What one vendor's sync or upload did."""

    vendor: str
    keys: Mapping[str, int] | None
    """Counts from the key refresh by name (None: keys were not asked for)."""
    uploaded: int
    pending: int
    set_aside: int
    """Records in batches the cloud refused for good (they wait for a person)."""


async def upload(ctx: VendorContext, *, on_progress: Callable[[int], None] | None = None) -> int:
    """Drain the plugin's outbox stream through its uploader; an empty stream calls no cloud."""
    if not await ctx.outbox.pending_count():
        return 0
    async with ctx.plugin.uploader(ctx) as uploader:
        return await drain_outbox(uploader, ctx.outbox, on_progress=on_progress)


async def sync_keys(
    ctx: VendorContext,
    locks: Sequence[str] | None = None,
    options: Mapping[str, OptionValue | Sequence[str]] | None = None,
) -> Mapping[str, int]:
    """Refresh what opens the plugin's locks offline (``locks``: only these)."""
    return await ctx.plugin.sync_keys(ctx, locks, options or {})


async def sync_vendor(
    ctx: VendorContext,
    keys: Mapping[str, int] | None = None,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> VendorSync:
    """Upload the plugin's kept records; the report holds ``keys`` (the counts of a key sync
    just done, if any) beside what the upload did."""
    uploaded = await upload(ctx, on_progress=on_progress)
    failed = await ctx.outbox.failed()
    return VendorSync(
        ctx.plugin.name,
        keys,
        uploaded,
        await ctx.outbox.pending_count(),
        sum(batch.records for batch in failed),
    )


def key_health(keys: Sequence[KeyInfo], now: dt.datetime, horizon: dt.timedelta) -> KeyHealth:
    """The kiosk's view of one vendor's cached keys."""
    live = [k for k in keys if k.revoked_at is None]
    return KeyHealth(
        cached=len(keys),
        expiring_soon=sum(
            1
            for k in live
            if now < k.expires_at
            and refresh_due(k.expires_at, now, horizon, issued_at=k.valid_from)
        ),
        expired=sum(1 for k in live if k.expires_at <= now),
        revoked=len(keys) - len(live),
        next_expiry=min((k.expires_at for k in live), default=None),
    )


async def reconcile_grants(
    settings: Settings,
    store: Store,
    context: Callable[[VendorPlugin], VendorContext],
    clock: Clock,
) -> ReconcileReport | None:
    """Drive every vendor to the stored grants that are due (None: there are no grants)."""
    async with open_grants(settings, store) as grants:
        if not await grants.counts():
            return None
        return await reconcile(grants, context, settings, clock)
