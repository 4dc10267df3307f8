"""``blelock noke ...``: the Core API routes a facility's office uses — quick clicks, activity,
lock info and offline-key revocation.

Quick-click codes open the lock, so they are read from standard input (``CODE`` or ``CODE
USES`` a line; at a terminal without echo), never taken on the command line, and listings show
only their length.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from pydantic import SecretStr

from blelock.cli.context import moment_option, settings_from
from blelock.cli.render import print_json, show_rows
from blelock.config import Settings
from blelock.errors import UsageError
from blelock.jobs import context, open_store
from blelock.model import MacAddress, parse_mac
from blelock.vendors.noke import jobs
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.plugin import PLUGIN
from blelock.vendors.noke.views import (
    KEY_REVOCATION_NOTE,
    QUICK_CLICK_NOTE,
    activity_rows,
    lock_rows,
    parse_code_lines,
    quick_click_rows,
)


def _lock_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lock", metavar="MAC", help="the lock's MAC address")


def add_arguments(parser: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    """``blelock noke …``; ``common``: the options every command takes (--json …)."""
    actions = parser.add_subparsers(dest="noke_command", metavar="ACTION", required=True)
    quick = actions.add_parser(
        "quick-clicks", parents=common, help="issue, revoke or list a lock's quick clicks"
    )
    kinds = quick.add_subparsers(dest="quick_clicks_command", metavar="ACTION", required=True)
    listing = kinds.add_parser("list", parents=common, help="quick clicks (their length only)")
    listing.add_argument("locks", nargs="*", metavar="MAC", help="default: every lock with any")
    issue = kinds.add_parser(
        "issue",
        parents=common,
        help="issue quick clicks read from standard input (CODE or CODE USES a line)",
    )
    _lock_argument(issue)
    issue.add_argument(
        "--uses", type=int, metavar="N", help="uses of a code given without them (255: unlimited)"
    )
    revoke = kinds.add_parser(
        "revoke", parents=common, help="revoke quick clicks read from standard input"
    )
    _lock_argument(revoke)

    activity = actions.add_parser("activity", parents=common, help="who opened what, and when")
    activity.add_argument("--locks", "--macs", dest="locks", nargs="+", metavar="MAC")
    activity.add_argument(
        "--action", dest="actions", action="append", metavar="A",
        help="only this action (unlocked, offline_unlocked, quick_click_unlocked, …); repeatable",
    )  # fmt: skip
    activity.add_argument(
        "--tracking-key", dest="tracking_keys", action="append", metavar="K", help="repeatable"
    )
    activity.add_argument("--before", metavar="ISO", help="events that may be before this")
    activity.add_argument("--after", metavar="ISO", help="events that may be after this")

    locks = actions.add_parser(
        "locks", parents=common, help="what the cloud knows of locks (default: all)"
    )
    locks.add_argument("locks", nargs="*", metavar="MAC")

    keys = actions.add_parser(
        "revoke-keys",
        parents=common,
        help="revoke offline keys: of tracking keys, of locks, or of tracking keys on locks",
    )
    keys.add_argument("--locks", "--macs", dest="locks", nargs="+", metavar="MAC")
    keys.add_argument(
        "--tracking-key", dest="tracking_keys", action="append", metavar="K", help="repeatable"
    )


def code_lines() -> str:
    """Quick clicks, ``CODE`` or ``CODE USES`` a line: piped standard input whole, or at a
    terminal asked for one a line without echo (a code opens the lock, like a PIN) until an
    empty line."""
    if not sys.stdin.isatty():
        return sys.stdin.read()
    lines: list[str] = []
    while line := getpass.getpass("quick click (CODE or CODE USES; an empty line ends): "):
        lines.append(line)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    asyncio.run(_run(settings, args))
    return 0


def _macs(texts: list[str] | None) -> list[MacAddress] | None:
    return [parse_mac(text) for text in texts] if texts else None


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    command = args.noke_command
    if command == "quick-clicks":
        await _quick_clicks(settings, args)
    elif command == "activity":
        before = moment_option(args.before, "--before")
        after = moment_option(args.after, "--after")
        async with NokeCloud.from_settings(settings) as cloud:
            entries = await cloud.activity(
                lock_macs=_macs(args.locks),
                actions=args.actions,
                tracking_keys=args.tracking_keys,
                before=before,
                after=after,
            )
        show_rows(f"{len(entries)} activity entr(y/ies)", activity_rows(entries), as_json=args.json)
    elif command == "locks":
        async with NokeCloud.from_settings(settings) as cloud:
            found = await cloud.locks(_macs(args.locks))
        show_rows(f"{len(found)} lock(s)", lock_rows(found), as_json=args.json)
    elif command == "revoke-keys":
        await _revoke_keys(settings, args)


async def _quick_clicks(settings: Settings, args: argparse.Namespace) -> None:
    action = args.quick_clicks_command
    async with NokeCloud.from_settings(settings) as cloud:
        if action == "list":
            listed = await cloud.quick_clicks(_macs(args.locks))
            rows = quick_click_rows(listed)
            show_rows(f"{len(rows)} quick click(s)", rows, as_json=args.json)
            return
        mac = parse_mac(args.lock)
        given = parse_code_lines(code_lines(), args.uses if action == "issue" else None)
        if action == "issue":
            clicks: list[tuple[SecretStr, int]] = []
            for index, (code, uses) in enumerate(given, start=1):
                if uses is None:
                    raise UsageError(
                        f"quick click {index} of {len(given)}: give its uses",
                        hint="CODE USES on its line, or --uses N (1-244, or 255 for unlimited)",
                    )
                clicks.append((code, uses))
            listing = await cloud.issue_quick_clicks(mac, clicks)
            done = f"issued {len(clicks)} quick click(s) for {mac}"
        else:
            listing = await cloud.revoke_quick_clicks(mac, [code for code, _ in given])
            done = f"revoked {len(given)} quick click(s) of {mac}"
    rows = quick_click_rows([listing])
    if args.json:
        print_json({"ok": True, "lock_id": mac, "quick_clicks": rows, "note": QUICK_CLICK_NOTE})
        return
    print(f"{done}; {QUICK_CLICK_NOTE}")
    show_rows(f"{len(rows)} quick click(s) of {mac}", rows, as_json=False)


async def _revoke_keys(settings: Settings, args: argparse.Namespace) -> None:
    macs = _macs(args.locks)
    async with NokeCloud.from_settings(settings) as cloud:
        remaining = await cloud.revoke_offline_keys(macs, args.tracking_keys)
        # This companion's own cache stops offering the revoked keys at once.
        async with open_store(settings) as store:
            cached = await jobs.refresh_offline_keys(
                cloud, jobs.key_store(context(PLUGIN, settings, store)), macs=macs
            )
    facts: dict[str, Any] = {
        "keys_left": dict(remaining),
        "cache_revoked": cached.revoked,
        "note": KEY_REVOCATION_NOTE,
    }
    if args.json:
        print_json({"ok": True, **facts})
        return
    print(
        f"revoked at the cloud; {cached.revoked} cached key(s) marked revoked here; "
        f"{KEY_REVOCATION_NOTE}"
    )
