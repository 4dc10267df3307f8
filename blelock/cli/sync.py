"""``blelock sync`` (offline keys + logs) and ``blelock upload`` (logs only)."""

from __future__ import annotations

import argparse
import asyncio

from blelock.cli.context import settings_from
from blelock.cli.render import activity, show_sync, upload_progress
from blelock.cloud.noke import NokeCloud
from blelock.config import Settings
from blelock.errors import UsageError
from blelock.jobs import Store, open_store
from blelock.jobs.keyless import KeylessUploader, sync_keyless
from blelock.model import MacAddress, parse_mac
from blelock.sync import drain_outbox, refresh_offline_keys


def run(args: argparse.Namespace) -> int:

    settings = settings_from(args)
    if args.command == "upload":
        report = asyncio.run(
            _sync(settings, keys=False, as_json=args.json, retry_failed=args.retry_failed)
        )
    else:
        macs = [parse_mac(text) for text in args.macs] if args.macs else None
        if args.tracking_key and not macs:
            raise UsageError(
                "--tracking-key asks the cloud to issue keys, and needs the locks to issue "
                "them for",
                hint="name them with --macs",
            )
        report = asyncio.run(
            _sync(settings, keys=True, macs=macs, issue_for=args.tracking_key, as_json=args.json)
        )
    show_sync(report, as_json=args.json)
    return 0


async def _sync(
    settings: Settings,
    *,
    keys: bool,
    as_json: bool,
    macs: list[MacAddress] | None = None,
    issue_for: list[str] | None = None,
    retry_failed: bool = False,
) -> dict[str, object]:

    report: dict[str, object] = {}
    async with open_store(settings) as store:
        if retry_failed:
            for outbox in (store.outbox, store.keyless_outbox):
                await outbox.retry_failed()
        consider_keyless = keys or await store.keyless_outbox.pending_count() > 0
        has_device = consider_keyless and await (await store.keyless()).device() is not None
        noke_configured = settings.noke_api_key is not None or settings.noke_mobile_key is not None
        # Nokē unless only Keyless is set up (then a Nokē sync could only fail for want of keys).
        if noke_configured or not has_device:
            async with NokeCloud.from_settings(settings) as cloud:
                await _sync_noke(cloud, store, report, keys, as_json, macs, issue_for)
        if has_device:
            await _sync_keyless(settings, store, report, keys, as_json)
        failed = [*await store.outbox.failed(), *await store.keyless_outbox.failed()]
        report["set_aside"] = sum(batch.records for batch in failed)
    return report


async def _sync_noke(
    cloud: NokeCloud,
    store: Store,
    report: dict[str, object],
    keys: bool,
    as_json: bool,
    macs: list[MacAddress] | None,
    issue_for: list[str] | None,
) -> None:
    if keys:
        with activity("fetching offline keys from the cloud…", enabled=not as_json):
            report["keys"] = await refresh_offline_keys(
                cloud, store.keys, macs=macs, issue_for=issue_for or ()
            )
    pending = await store.outbox.pending_count()
    if pending:
        with upload_progress(pending, enabled=not as_json) as advance:
            report["uploaded"] = await drain_outbox(cloud, store.outbox, on_progress=advance)
    else:
        report["uploaded"] = 0
    report["pending"] = await store.outbox.pending_count()


async def _sync_keyless(
    settings: Settings, store: Store, report: dict[str, object], keys: bool, as_json: bool
) -> None:
    if keys:
        with activity("fetching Keyless keys from the platform…", enabled=not as_json):
            report["keyless_keys"] = await sync_keyless(settings, store)
    pending = await store.keyless_outbox.pending_count()
    uploaded = 0
    if pending:
        async with KeylessUploader.open(settings, store) as uploader:
            with upload_progress(pending, enabled=not as_json) as advance:
                uploaded = await drain_outbox(uploader, store.keyless_outbox, on_progress=advance)
    report["keyless_uploaded"] = uploaded
    report["keyless_pending"] = await store.keyless_outbox.pending_count()
