"""``blelock logs``: the records the locks gave that have not reached their vendor's cloud
yet, any batch a cloud refused for good, and the log entries kept here that go to no cloud
from here (a vendor whose cloud gets them another way: Nuki's, through its bridge)."""

from __future__ import annotations

import argparse
import asyncio

from blelock.cli.context import plugins_from, settings_from
from blelock.cli.render import show_pending_logs
from blelock.jobs import context, open_store
from blelock.model import KeptLog, LogRecord
from blelock.store.outbox import FailedBatch

SHOWN = 50
"""Rows in the table; the count covers them all."""


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def pending() -> tuple[
        int, list[tuple[str, LogRecord]], list[FailedBatch], tuple[int, list[KeptLog]]
    ]:
        async with open_store(settings) as store:
            count = kept_count = 0
            records: list[tuple[str, LogRecord]] = []
            failed: list[FailedBatch] = []
            kept: list[KeptLog] = []
            for plugin in plugins_from(args):  # registry order
                outbox = store.outbox(plugin.name)
                count += await outbox.pending_count()
                shown = await outbox.pending(SHOWN - len(records))
                records += [(plugin.name, record) for record in shown]
                failed += await outbox.failed()
                more, newest = await plugin.kept_logs(context(plugin, settings, store), SHOWN)
                kept_count += more
                kept += newest
            return count, records, failed, (kept_count, kept[:SHOWN])

    count, records, failed, kept = asyncio.run(pending())
    show_pending_logs(count, records, as_json=args.json, failed=failed, kept=kept)
    return 0
