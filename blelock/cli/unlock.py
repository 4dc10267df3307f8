"""``blelock unlock MAC`` and ``blelock unshackle MAC``: one visit to a Nokē lock.

Online by default; when the cloud cannot be reached the unlock falls back to the cached offline
key (``--offline`` forces it). Every record the lock gives is in the outbox before we return.
"""

from __future__ import annotations

import argparse
import asyncio

from blelock.cli.context import open_store, settings_from
from blelock.cli.render import show_outcomes
from blelock.cloud.noke import NokeCloud
from blelock.config import Settings
from blelock.errors import lock_context
from blelock.model import Action, MacAddress, Outcome, parse_mac
from blelock.transport.ble import open_link
from blelock.transport.scan import Found, find_lock
from blelock.vendors.noke import NokeVisit, VisitMode


def run(args: argparse.Namespace) -> int:

    mac = parse_mac(args.mac)
    settings = settings_from(args)
    action = Action.UNSHACKLE if args.command == "unshackle" else Action.UNLOCK
    mode: VisitMode = "offline" if getattr(args, "offline", False) else "auto"
    outcome = asyncio.run(visit(mac, action, settings, tracking_key=args.tracking_key, mode=mode))
    show_outcomes([outcome], [], as_json=args.json)
    return 0


async def visit(
    mac: MacAddress,
    action: Action,
    settings: Settings,
    *,
    tracking_key: str | None = None,
    found: Found | None = None,
    mode: VisitMode = "auto",
) -> Outcome:
    """Find the lock (unless a scan just did), then run one Nokē visit."""

    # Without an API key an unattended "auto" unlock can still use the offline key.
    needs_cloud = mode == "online" or (
        mode == "auto" and (settings.noke_api_key is not None or action is not Action.UNLOCK)
    )
    cloud = NokeCloud.from_settings(settings) if needs_cloud else None
    if cloud is None and mode == "auto":
        mode = "offline"
    try:
        async with open_store(settings) as store:
            if found is None:
                with lock_context(mac, "scan"):
                    found = await find_lock(mac, settings)
            device, name = found.device, found.sighting.name
            noke_visit = NokeVisit(
                mac,
                lambda: open_link(device, settings, name=name),
                cloud,
                settings.timeouts,
                offline_keys=store.keys,
                logs=store.outbox,
            )
            return await noke_visit.run(action, tracking_key=tracking_key, mode=mode)
    finally:
        if cloud is not None:
            await cloud.aclose()
