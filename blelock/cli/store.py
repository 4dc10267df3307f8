"""``blelock store check``: SQLite's full ``integrity_check`` of the store (every index against
its table, which the quick check at open does not do), one line per problem found."""

from __future__ import annotations

import argparse
import asyncio
import time

from blelock.cli.context import settings_from
from blelock.cli.render import print_json
from blelock.store import DATABASE_FILE
from blelock.store.db import Database, integrity_problems

EXIT_SOUND, EXIT_DAMAGED = 0, 1


def run(args: argparse.Namespace) -> int:
    path = settings_from(args).store_dir / DATABASE_FILE

    async def check() -> tuple[list[str], float]:
        async with await Database.open(path) as db:
            started = time.monotonic()
            problems = await db.run(integrity_problems, write=False)
            return problems, time.monotonic() - started

    problems, took = asyncio.run(check())
    if args.json:
        print_json({"store": str(path), "sound": not problems, "problems": problems})
    elif not problems:
        print(f"the store {path} is sound (full integrity check, {took * 1000:.0f} ms)")
    else:
        for problem in problems:
            print(f"damaged: {_explain(problem)}")
        print(
            f"the store {path} is damaged ({len(problems)} problem(s)); the next upload sets "
            "damaged log records aside (see `blelock logs`) and sends the rest"
        )
    return EXIT_DAMAGED if problems else EXIT_SOUND


def _explain(problem: str) -> str:
    """SQLite's words, with what they mean for the outbox when they are about it."""
    if "index sqlite_autoindex_outbox" in problem or "index outbox_" in problem:
        return f"{problem} (an outbox record and the outbox's index disagree)"
    return problem
