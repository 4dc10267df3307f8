"""``blelock sync`` (each vendor's offline keys, then its logs) and ``blelock upload`` (logs
only), for every vendor set up here or the one ``--vendor`` names."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from blelock.access.reconcile import ReconcileReport
from blelock.cli.context import plugins_from, settings_from
from blelock.cli.render import activity, grants_payload, show_sync, upload_progress
from blelock.clock import SystemClock
from blelock.config import Settings
from blelock.errors import ConfigError
from blelock.jobs import candidates, context, open_store
from blelock.sync import VendorSync, reconcile_grants, sync_keys, sync_vendor
from blelock.vendors.base import OptionValue, VendorPlugin


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    plugins = plugins_from(args)
    keys = args.command == "sync"
    reports, grants = asyncio.run(_sync(settings, plugins, args, keys=keys))
    show_sync(
        reports,
        as_json=args.json,
        title="blelock sync" if keys else "blelock upload",
        grants=None if grants is None else grants_payload(grants),
    )
    return 0


async def _sync(
    settings: Settings, plugins: list[VendorPlugin], args: argparse.Namespace, *, keys: bool
) -> tuple[list[VendorSync], ReconcileReport | None]:
    reports: list[VendorSync] = []
    grants: ReconcileReport | None = None
    named = getattr(args, "vendor", None) is not None
    for text in getattr(args, "locks", None) or ():
        candidates(text)  # a lock no vendor's id format accepts is refused, not passed over
    for plugin in plugins if keys else ():
        # A sync that cannot be asked for so is refused before the store is opened (or made).
        plugin.check_sync(_locks(plugin, args), _options(plugin, args))
    async with open_store(settings) as store:
        for plugin in plugins:
            ctx = context(plugin, settings, store)
            if getattr(args, "retry_failed", False):
                await ctx.outbox.retry_failed()
            pending = await ctx.outbox.pending_count()
            # A vendor not set up here is passed over, unless named or holding records.
            if not (named or pending or await plugin.active(ctx)):
                continue
            locks = _locks(plugin, args)
            wants_keys = keys and locks != []  # --locks named none of this vendor's
            options = _options(plugin, args) if keys else {}
            with activity(f"fetching {plugin.title} keys…", enabled=wants_keys and not args.json):
                counts = await sync_keys(ctx, locks, options) if wants_keys else None
            with upload_progress(pending, enabled=bool(pending) and not args.json) as advance:
                reports.append(await sync_vendor(ctx, counts, on_progress=advance))
        if keys and getattr(args, "vendor", None) is None:
            # The grants' reconciler: each vendor driven to what was granted (and back out).
            grants = await reconcile_grants(
                settings, store, lambda plugin: context(plugin, settings, store), SystemClock()
            )
    if not reports and grants is None:
        raise ConfigError(
            "no vendor is set up here: nothing to sync",
            hint="set a vendor's cloud credentials in its section of the config file "
            "(see README), or activate this device with the vendor",
        )
    return reports, grants


def _options(
    plugin: VendorPlugin, args: argparse.Namespace
) -> dict[str, OptionValue | Sequence[str]]:
    return {o.name: getattr(args, o.name) for o in plugin.sync_options}


def _locks(plugin: VendorPlugin, args: argparse.Namespace) -> list[str] | None:
    """The ``--locks`` this vendor's id format accepts (all of them, for the vendor named)."""
    if not getattr(args, "locks", None):  # `blelock upload` has no --locks
        return None
    if getattr(args, "vendor", None) is not None:
        return [plugin.parse_lock_id(text) for text in args.locks]
    from blelock.errors import UsageError

    mine: list[str] = []
    for text in args.locks:
        try:
            mine.append(plugin.parse_lock_id(text))
        except UsageError:
            continue
    return mine
