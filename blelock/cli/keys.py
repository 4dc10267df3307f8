"""``blelock keys``: the cached offline keys — which lock, which tracking key, how fresh."""

from __future__ import annotations

import argparse
import asyncio

from blelock.cli.context import settings_from
from blelock.cli.render import show_keys
from blelock.jobs import open_store


def run(args: argparse.Namespace) -> int:

    async def listing() -> list[object]:
        async with open_store(settings_from(args)) as store:
            return list(await store.keys.list_keys())

    show_keys(asyncio.run(listing()), as_json=args.json)
    return 0
