"""``blelock access grant|list|show|revoke|constraints|reconcile``: who may open which locks,
when — stored as asked, driven to each vendor by the reconciler (``blelock sync``, the kiosk's
upkeep, or ``blelock access reconcile`` now)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from blelock import vendors
from blelock.errors import UsageError

if TYPE_CHECKING:
    from blelock.access.store import GrantRecord, GrantStore
    from blelock.config import Settings
    from blelock.grants import AccessConstraints
    from blelock.store import Store
    from blelock.vendors.base import OptionSpec, VendorContext, VendorPlugin

__all__ = ["add_arguments", "run"]


def identity_options(*, codes: bool = False) -> list[OptionSpec]:
    """Each vendor's holder identities (``--tracking-key``, …), or its secret codes
    (``--keypad-code``), once each."""
    seen: dict[str, OptionSpec] = {}
    for plugin in vendors.plugins().values():
        translation = plugin.access()
        if translation is None:
            continue
        for option in translation.codes if codes else translation.identities:
            seen.setdefault(option.name, option)
    return list(seen.values())


def _uses(text: str) -> int | None:
    if text in ("unlimited", "any"):
        return None
    if text in ("once", "one-time"):
        return 1
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count, once or unlimited") from None
    if value < 1:
        raise argparse.ArgumentTypeError("uses must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from blelock.cli import common_options

    # --json and the other common options are taken after the action too.
    common = [common_options(defaults=False)]
    actions = parser.add_subparsers(dest="access_action", metavar="ACTION", required=True)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help, description=help, parents=common)

    grant = action("grant", "let a holder open locks (stored, then reconciled)")
    grant.add_argument("--holder", required=True, metavar="NAME", help="who (as people read it)")
    grant.add_argument(
        "--lock", dest="locks", action="append", required=True, metavar="LOCK",
        help="a lock (VENDOR:LOCK when its id alone does not say); repeatable",
    )  # fmt: skip
    grant.add_argument("--from", dest="starts", metavar="WHEN", help="start (default now)")
    grant.add_argument("--until", dest="ends", metavar="WHEN", help="end (default: until revoked)")
    grant.add_argument(
        "--window", dest="windows", action="append", default=[], metavar="DAYS HH:MM-HH:MM",
        help="weekly opening hours in the lock's time zone, e.g. 'Mon-Sat 06:00-22:00'; "
        "repeatable (default: any hour)",
    )  # fmt: skip
    grant.add_argument(
        "--timezone", metavar="ZONE", help="IANA zone of the windows (default: access_timezone)"
    )
    grant.add_argument(
        "--uses", type=_uses, default=None, metavar="N", help="N, once or unlimited (default)"
    )
    grant.add_argument(
        "--round", action="store_true",
        help="round what a vendor cannot express to what it can (each change is shown)",
    )  # fmt: skip
    grant.add_argument("--id", dest="grant_id", metavar="ID", help="the grant's id (default: new)")
    for option in identity_options():
        grant.add_argument(
            "--" + option.name.replace("_", "-"), dest=option.name, metavar=option.metavar,
            help=option.help,
        )  # fmt: skip
    for option in identity_options(codes=True):
        grant.add_argument(
            "--" + option.name.replace("_", "-"), dest=option.name, metavar="-",
            help=option.help + " (give -: it is read from stdin, one line per code)",
        )  # fmt: skip
    listing = action("list", "every grant and its status")
    listing.add_argument("--status", metavar="STATUS", help="only grants with this status")
    show = action("show", "one grant: each lock's plan, status and items")
    show.add_argument("grant", metavar="GRANT")
    revoke = action("revoke", "end a grant now (the reconciler removes it)")
    revoke.add_argument("grant", metavar="GRANT")
    rules = action("constraints", "what a lock's vendor can express")
    rules.add_argument("lock", metavar="LOCK")
    again = action("reconcile", "drive every vendor to the grants now")
    again.add_argument(
        "--until-settled", action="store_true",
        help="also wait out leases others hold on due grants (a reconciler that died)",
    )  # fmt: skip


def parse(args: argparse.Namespace) -> argparse.Namespace:
    """The access subtree's own arguments (``blelock access ACTION …``)."""
    from blelock.cli import common_options

    parser = argparse.ArgumentParser(
        prog="blelock access",
        description="who may open which locks, when",
        parents=[common_options(defaults=False)],
    )
    add_arguments(parser)
    rest: list[str] = getattr(args, "access_arguments", None) or []
    return parser.parse_args(rest, namespace=args)


def run(args: argparse.Namespace) -> int:
    from blelock.cli.context import settings_from

    if not hasattr(args, "access_action"):
        args = parse(args)
    settings = settings_from(args)
    action: Callable[[argparse.Namespace, Settings], Any] = _ACTIONS[args.access_action]
    return int(asyncio.run(action(args, settings)))


@contextlib.asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[tuple[Store, GrantStore]]:
    from blelock import access
    from blelock.jobs import open_store

    async with open_store(settings) as store, access.open_grants(settings, store) as grants:
        yield store, grants


def _contexts(settings: Settings, store: Store) -> Callable[[VendorPlugin], VendorContext]:
    from blelock.jobs import context

    return lambda plugin: context(plugin, settings, store)


async def _grant(args: argparse.Namespace, settings: Settings) -> int:
    from blelock import access
    from blelock.clock import SystemClock
    from blelock.grants import Code, parse_instant

    zone = args.timezone or settings.access_timezone
    identities = {
        option.name: _parsed(option, getattr(args, option.name))
        for option in identity_options()
        if getattr(args, option.name, None) is not None
    }
    codes = {}
    for option in identity_options(codes=True):
        given = getattr(args, option.name, None)
        if given is None:
            continue
        flag = "--" + option.name.replace("_", "-")
        if given != "-":
            raise UsageError(
                f"{flag} takes - (the code is read from stdin, never from the command line)"
            )
        line = sys.stdin.readline().strip()
        if not line:
            raise UsageError(f"{flag} -: no code on stdin")
        codes[option.name] = Code(_parsed(option, line, secret=True))
    request = access.GrantRequest(
        holder=args.holder,
        locks=args.locks,
        starts_at=None if args.starts is None else parse_instant(args.starts, default_zone=zone),
        ends_at=None if args.ends is None else parse_instant(args.ends, default_zone=zone),
        windows=args.windows,
        timezone=args.timezone,
        uses=args.uses,
        identities=identities,
        codes=codes,
        round=args.round,
        grant_id=args.grant_id,
    )
    async with _opened(settings) as (store, grants):
        record = await access.create_grant(
            request, grants, access.access_plugins(), _contexts(settings, store), settings,
            SystemClock(),
        )  # fmt: skip
    _show_record(record, as_json=args.json, title=f"grant {record.grant.id} stored")
    return 0


def _parsed(option: OptionSpec, text: str, *, secret: bool = False) -> str:
    try:
        return str(option.parse(text))
    except ValueError as exc:
        # A parser's message may quote what it was given: never a code's.
        why = "not a valid code" if secret else str(exc)
        raise UsageError(f"--{option.name.replace('_', '-')}: {why}") from None


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    from blelock.cli.render import print_json

    async with _opened(settings) as (_, grants):
        records = await grants.grants()
    if args.status is not None:
        records = [r for r in records if r.status().value == args.status]
    if args.json:
        from blelock.access import grant_payload

        print_json([grant_payload(r) for r in records])
        return 0
    from blelock.cli.render import show_rows

    show_rows(
        "access grants",
        [
            {
                "id": r.grant.id,
                "holder": r.grant.holder.name,
                "locks": ", ".join(t.lock.text() for t in r.targets),
                "from": _short(r.grant.schedule.starts_at),
                "until": _short(r.grant.ends()),
                "status": r.status().value,
            }
            for r in records
        ],
        as_json=False,
    )
    return 0


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    async with _opened(settings) as (_, grants):
        record = await grants.get(args.grant)
    if record is None:
        raise UsageError(f"no grant {args.grant}", hint="`blelock access list` shows them")
    _show_record(record, as_json=args.json, title=f"grant {record.grant.id}")
    return 0


async def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from blelock.clock import SystemClock

    async with _opened(settings) as (_, grants):
        record = await grants.revoke(args.grant, SystemClock().now_utc().replace(microsecond=0))
    _show_record(record, as_json=args.json, title=f"grant {record.grant.id} revoked")
    return 0


async def _constraints(args: argparse.Namespace, settings: Settings) -> int:
    from blelock import access
    from blelock.jobs import open_store

    async with open_store(settings) as store:
        rules = await access.constraints(
            args.lock, access.access_plugins(), _contexts(settings, store)
        )
    _show_constraints(rules, as_json=args.json)
    return 0


async def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from blelock import access
    from blelock.cli.render import grants_payload, print_json
    from blelock.clock import SystemClock

    async with _opened(settings) as (store, grants):
        report = await access.reconcile(
            grants, _contexts(settings, store), settings, SystemClock(),
            until_settled=args.until_settled,
        )  # fmt: skip
    payload = grants_payload(report)
    if args.json:
        print_json(payload)
    else:
        from blelock.cli.render import show_rows

        show_rows(
            "blelock access reconcile",
            [
                {"what": k.replace("_", " "), "count": v}
                for k, v in payload.items()
                if k != "problems"
            ]
            + [{"what": f"problem: {p}", "count": ""} for p in report.problems],
            as_json=False,
        )
    return 1 if report.problems and not report.changed else 0


_ACTIONS: dict[str, Callable[[argparse.Namespace, Settings], Any]] = {
    "grant": _grant,
    "list": _list,
    "show": _show,
    "revoke": _revoke,
    "constraints": _constraints,
    "reconcile": _reconcile,
}


def _short(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%MZ")


def _show_record(record: GrantRecord, *, as_json: bool, title: str) -> None:
    from blelock.access import grant_payload
    from blelock.cli.render import print_json

    payload = grant_payload(record)
    if as_json:
        print_json(payload)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    grant = record.grant
    console.print(
        f"[bold]{escape(title)}[/]: {escape(grant.holder.name)}, "
        f"{escape(grant.schedule.text())}"
        + ("" if grant.uses is None else f", {grant.uses} use(s)")
        + f" — {payload['status']}"
    )
    table = Table(show_header=True)
    for column in ("lock", "status", "as the vendor has it", "items"):
        table.add_column(column)
    for lock in payload["locks"]:
        said = [*lock["roundings"], *lock["notes"]]
        if lock["reason"]:
            said.insert(0, f"[red]{escape(lock['reason'])}[/]")
        items = "\n".join(f"{i['state']}: {i['key']}" for i in lock["items"]) or "-"
        table.add_row(
            escape(f"{lock['vendor']}:{lock['lock_id']}"),
            lock["status"],
            "\n".join(escape(s) if not s.startswith("[red]") else s for s in said) or "-",
            escape(items),
        )
    console.print(table)


def _show_constraints(rules: AccessConstraints, *, as_json: bool) -> None:
    from blelock.cli.render import print_json

    payload = rules.as_json()
    if as_json:
        print_json(payload)
        return
    from blelock.cli.render import show_rows

    show_rows(
        f"what {rules.vendor} can express for {rules.lock_id}",
        [{"rule": k.replace("_", " "), "value": v} for k, v in payload.items()],
        as_json=False,
    )
