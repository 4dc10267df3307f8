"""``blelock logs``: the records the locks gave that have not reached their vendor's cloud
yet, and any batch a cloud refused for good."""

from __future__ import annotations

import argparse
import asyncio

from blelock.cli.context import plugins_from, settings_from
from blelock.cli.render import show_pending_logs
from blelock.jobs import open_store
from blelock.model import LogRecord
from blelock.store.outbox import FailedBatch

SHOWN = 50
"""Rows in the table; the count covers them all."""


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def pending() -> tuple[int, list[tuple[str, LogRecord]], list[FailedBatch]]:
        async with open_store(settings) as store:
            count = 0
            records: list[tuple[str, LogRecord]] = []
            failed: list[FailedBatch] = []
            for plugin in plugins_from(args):  # registry order
                outbox = store.outbox(plugin.name)
                count += await outbox.pending_count()
                shown = await outbox.pending(SHOWN - len(records))
                records += [(plugin.name, record) for record in shown]
                failed += await outbox.failed()
            return count, records, failed

    count, records, failed = asyncio.run(pending())
    show_pending_logs(count, records, as_json=args.json, failed=failed)
    return 0
