"""``blelock logs``: the records the locks gave (Nokē and Keyless) that have not reached their
cloud yet."""

from __future__ import annotations

import argparse
import asyncio

from blelock.cli.context import settings_from
from blelock.cli.render import show_pending_logs
from blelock.jobs import open_store
from blelock.model import LogRecord
from blelock.store.outbox import FailedBatch

SHOWN = 50
"""Rows in the table; the count covers them all."""


def run(args: argparse.Namespace) -> int:

    async def pending() -> tuple[int, list[LogRecord], list[FailedBatch]]:
        async with open_store(settings_from(args)) as store:
            count = 0
            records: list[LogRecord] = []
            failed: list[FailedBatch] = []
            for outbox in (store.outbox, store.keyless_outbox):  # Nokē first, then Keyless
                count += await outbox.pending_count()
                records += await outbox.pending(SHOWN - len(records))
                failed += await outbox.failed()
            return count, records, failed

    count, records, failed = asyncio.run(pending())
    show_pending_logs(count, records, as_json=args.json, failed=failed)
    return 0
