"""``blelock unlock MAC`` and ``blelock unshackle MAC``: one online visit to a Nokē lock."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from blelock.config import Settings, load_settings
from blelock.errors import ConfigError, lock_context
from blelock.model import Action, MacAddress, Outcome, parse_mac

if TYPE_CHECKING:
    from blelock.transport.scan import Found


def run(args: argparse.Namespace) -> int:
    from blelock.cli.render import show_outcomes

    mac = parse_mac(args.mac)
    settings = load_settings(Path(args.config) if args.config else None)
    action = Action.UNSHACKLE if args.command == "unshackle" else Action.UNLOCK
    outcome = asyncio.run(visit(mac, action, settings, tracking_key=args.tracking_key))
    show_outcomes([outcome], [], as_json=args.json)
    return 0


async def visit(
    mac: MacAddress,
    action: Action,
    settings: Settings,
    *,
    tracking_key: str | None = None,
    found: Found | None = None,
) -> Outcome:
    """Find the lock (unless a scan just did), then run one Nokē visit against the cloud."""
    from blelock.cloud.noke import NokeCloud
    from blelock.transport.ble import open_link
    from blelock.transport.scan import find_lock
    from blelock.vendors.noke import NokeVisit

    if settings.noke_api_key is None:
        raise ConfigError(
            "no Nokē API key is configured",
            hint="set BLELOCK_NOKE_API_KEY, or noke_api_key in the config file",
        )
    if found is None:
        with lock_context(mac, "scan"):
            found = await find_lock(mac, settings)
    device, name = found.device, found.sighting.name
    async with NokeCloud(
        settings.noke_url,
        settings.noke_api_key,
        timeouts=settings.timeouts,
        mobile_key=settings.noke_mobile_key,
    ) as cloud:
        noke_visit = NokeVisit(
            mac,
            lambda: open_link(device, settings, name=name),
            cloud,
            settings.timeouts,
        )
        return await noke_visit.run(action, tracking_key=tracking_key)
