"""``blelock unlock MAC`` and ``blelock unshackle MAC``: one visit to a Nokē lock.

Online by default; when the cloud cannot be reached the unlock falls back to the cached offline
key (``--offline`` forces it). Every record the lock gives is in the outbox before we return.
"""

from __future__ import annotations

import argparse
import asyncio

from blelock.cli.context import settings_from
from blelock.cli.render import show_outcomes
from blelock.jobs import visit
from blelock.model import Action, parse_mac
from blelock.vendors.noke import VisitMode


def run(args: argparse.Namespace) -> int:

    mac = parse_mac(args.mac)
    settings = settings_from(args)
    action = Action.UNSHACKLE if args.command == "unshackle" else Action.UNLOCK
    mode: VisitMode = "offline" if getattr(args, "offline", False) else "auto"
    outcome = asyncio.run(visit(mac, action, settings, tracking_key=args.tracking_key, mode=mode))
    show_outcomes([outcome], [], as_json=args.json)
    return 0
