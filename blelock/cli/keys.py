"""``blelock keys``: what every vendor has cached for offline use — which lock, whose, how
fresh (never the keys themselves)."""

from __future__ import annotations

import argparse
import asyncio

from blelock.cli.context import plugins_from, settings_from
from blelock.cli.render import show_keys
from blelock.jobs import context, open_store
from blelock.model import KeyInfo


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def listing() -> list[KeyInfo]:
        keys: list[KeyInfo] = []
        async with open_store(settings) as store:
            for plugin in plugins_from(args):
                keys += await plugin.list_keys(context(plugin, settings, store))
        return keys

    show_keys(asyncio.run(listing()), as_json=args.json)
    return 0
