"""``blelock scan``: the locks of every vendor advertising nearby."""

from __future__ import annotations

import argparse
import asyncio

from blelock import vendors
from blelock.cli.context import settings_from
from blelock.cli.render import show_sightings
from blelock.transport.scan import scan


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    plugins = [plugin for plugin in vendors.plugins().values() if plugin.service_uuids]
    found = asyncio.run(scan(settings, plugins, duration=args.seconds))
    show_sightings([f.sighting for f in found], as_json=args.json)
    return 0
