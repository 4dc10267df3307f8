"""``blelock nuki ...``: pair with a lock, give it its security PIN, set its clock, read its
log, and manage its keypad codes and authorizations over Bluetooth (``--via ble``, the
default) or the Nuki Web API (``--via web``).

Secrets never come from the command line: the security PIN and a keypad code are read from
standard input when it is not a terminal, else at a prompt that does not echo.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import sys
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from blelock.cli.context import settings_from
from blelock.cli.render import print_json, show_rows
from blelock.config import Settings
from blelock.errors import UsageError
from blelock.jobs import open_store
from blelock.model import parse_mac
from blelock.vendors.nuki import access, jobs
from blelock.vendors.nuki import protocol as nuki
from blelock.vendors.nuki.settings import nuki_settings
from blelock.vendors.nuki.web.window import AccessWindow

if TYPE_CHECKING:
    from blelock.vendors.nuki.web.client import NukiWeb
    from blelock.vendors.nuki.web.models import SmartlockAuth

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    actions = parser.add_subparsers(dest="nuki_command", metavar="ACTION", required=True)
    pair = actions.add_parser("pair", parents=common, help="pair with a lock in pairing mode")
    _lock(pair)
    pair.add_argument(
        "--with-pin",
        action="store_true",
        help="also give the lock's security PIN (needed for an Ultra; read from stdin or a prompt)",
    )
    _lock(actions.add_parser("set-pin", parents=common, help="give a lock's security PIN"))
    _lock(actions.add_parser("set-time", parents=common, help="set a lock's clock to this one"))
    _lock(actions.add_parser("info", parents=common, help="a lock's state, battery and config"))
    logging = actions.add_parser("logging", parents=common, help="switch a lock's log on or off")
    _lock(logging)
    logging.add_argument("switch", choices=("on", "off"))
    logs = actions.add_parser("logs", parents=common, help="read and show a lock's log")
    _lock(logs)
    _via(logs)
    logs.add_argument("--no-read", action="store_true", help="show what is kept; read nothing")
    logs.add_argument("--count", type=int, default=20, metavar="N", help="entries shown (20)")

    codes = actions.add_parser("codes", parents=common, help="keypad codes")
    code_actions = codes.add_subparsers(dest="codes_command", metavar="ACTION", required=True)
    for name, summary in (
        ("list", "the lock's keypad codes (never the codes themselves)"),
        ("add", "add a code (read from stdin or a prompt)"),
        ("update", "change a code's name, window, state or code"),
        ("remove", "remove a code"),
    ):
        sub = code_actions.add_parser(name, parents=common, help=summary)
        _lock(sub)
        _via(sub)
        if name in ("update", "remove"):
            sub.add_argument("entry", metavar="ID", help="the code's id (from `codes list`)")
        if name in ("add", "update"):
            sub.add_argument("--name", metavar="NAME", required=name == "add", help="≤ 20 bytes")
            _window(sub)
        if name == "update":
            sub.add_argument("--new-code", action="store_true", help="also change the code")
            _switches(sub)
    auths = actions.add_parser("auths", parents=common, help="authorizations (apps, fobs, ...)")
    auth_actions = auths.add_subparsers(dest="auths_command", metavar="ACTION", required=True)
    for name, summary in (
        ("list", "the lock's authorizations"),
        ("update", "change an authorization's name, window or state"),
        ("remove", "remove an authorization"),
    ):
        sub = auth_actions.add_parser(name, parents=common, help=summary)
        _lock(sub)
        _via(sub)
        if name != "list":
            sub.add_argument("entry", metavar="ID", help="the authorization's id")
        if name == "update":
            sub.add_argument("--name", metavar="NAME", help="≤ 32 bytes")
            _window(sub)
            _switches(sub)


def _lock(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "lock",
        metavar="LOCK",
        help="the lock's MAC (over Bluetooth), or its smartlockId or name (--via web)",
    )


def _via(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--via",
        choices=("ble", "web"),
        default="ble",
        help="over Bluetooth (default; the lock must be near) or the Nuki Web API",
    )


def _window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_date", metavar="ISO", help="start, with its offset")
    parser.add_argument("--until", dest="until_date", metavar="ISO", help="end, with its offset")
    parser.add_argument("--days", metavar="DAYS", help="e.g. mon-fri,sun (the lock's week)")
    parser.add_argument(
        "--daily", metavar="HH:MM-HH:MM", help="a daily window in the lock's own local time"
    )
    parser.add_argument("--any-time", action="store_true", help="clear every time restriction")


def _switches(parser: argparse.ArgumentParser) -> None:
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_const", const=True)
    state.add_argument("--disable", dest="enabled", action="store_const", const=False)


def read_secret(prompt: str) -> str:
    """A secret from standard input (not a terminal: its first line) or a prompt that does
    not echo; never from the command line."""
    if sys.stdin is None:
        raise UsageError(f"{prompt.rstrip(': ')} is needed", hint="give it on standard input")
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return getpass.getpass(prompt)


def _pin(text: str) -> int:
    if not text.isdigit() or not 4 <= len(text) <= 6:
        raise UsageError("a security PIN is 4 digits (6 on a Smart Lock Ultra)")
    return int(text)


def _window_of(args: argparse.Namespace) -> AccessWindow | None:
    """The window the options ask for: None when they name none (leave it as it is)."""
    if args.any_time:
        return AccessWindow()
    if not any((args.from_date, args.until_date, args.days, args.daily)):
        return None
    return AccessWindow.parse(
        from_date=args.from_date, until_date=args.until_date, days=args.days, daily=args.daily
    )


def time_limit(window: AccessWindow) -> nuki.TimeLimit:
    """The Web API's window as the lock's own fields (midnight to midnight: all day)."""
    return nuki.TimeLimit(
        from_date=window.from_date,
        until_date=window.until_date,
        weekdays=nuki.ALL_WEEKDAYS if window.weekdays is None else window.weekdays,
        from_time=window.from_time or dt.time(0, 0),
        until_time=window.until_time or dt.time(0, 0),
    )


def _describe(limited: bool, limit: nuki.TimeLimit) -> str:
    if not limited:
        return "any time"
    parts = []
    if limit.from_date or limit.until_date:
        start = "…" if limit.from_date is None else f"{limit.from_date:%Y-%m-%d %H:%M}Z"
        end = "…" if limit.until_date is None else f"{limit.until_date:%Y-%m-%d %H:%M}Z"
        parts.append(f"{start} to {end}")
    if limit.weekdays != nuki.ALL_WEEKDAYS:
        names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
        parts.append(",".join(n for i, n in enumerate(names) if limit.weekdays & (0x40 >> i)))
    if limit.from_time != limit.until_time:
        parts.append(f"{limit.from_time:%H:%M}-{limit.until_time:%H:%M} lock time")
    return "; ".join(parts) or "any time"


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    action = args.nuki_command
    via = getattr(args, "via", "ble")
    if via == "web":
        asyncio.run(_web(settings, args))
        return 0
    lock = parse_mac(args.lock)
    pin: int | None = None
    if action == "set-pin" or (action == "pair" and args.with_pin):
        pin = _pin(read_secret("security PIN: "))
    asyncio.run(_ble(settings, args, lock, pin))
    return 0


async def _ble(settings: Settings, args: argparse.Namespace, lock: str, pin: int | None) -> None:
    action = args.nuki_command
    async with open_store(settings) as store:
        if action == "pair":
            paired = await jobs.pair(lock, settings, store, security_pin=pin)
            if pin is not None and not paired.credentials.ultra:
                await jobs.set_pin(lock, settings, store, pin)
            name = nuki_settings(settings).app_name
            _say(
                {"lock_id": lock, "auth_id": paired.credentials.auth_id},
                f"paired with {lock} as {name!r} (authorization {paired.credentials.auth_id})",
                args,
            )
        elif action == "set-pin":
            assert pin is not None
            await jobs.set_pin(lock, settings, store, pin)
            _say({"lock_id": lock}, "the lock's security PIN checks out; kept sealed", args)
        elif action == "set-time":
            before, after = await jobs.set_time(lock, settings, store)
            was = "unset" if before is None else before.isoformat()
            _say(
                {"lock_id": lock, "clock_was": None if before is None else before.isoformat(),
                 "clock_now": after.isoformat()},
                f"the lock's clock was {was}, now {after.isoformat()}",
                args,
            )  # fmt: skip
        elif action == "info":
            info = await jobs.lock_info(lock, settings, store)
            facts = {
                "lock_id": lock,
                "name": info.config.name,
                "nuki_id": f"{info.config.nuki_id:08X}",
                "lock_state": info.states.state_name(),
                "clock": None if info.states.current_time is None
                else info.states.current_time.isoformat(),
                "utc_offset_min": info.states.timezone_offset_min,
                "battery_percent": info.states.battery_percent,
                "battery_critical": info.states.critical_battery,
                "battery_mv": info.battery.voltage_mv,
                "firmware": info.config.firmware,
                "hardware": info.config.hardware,
                "keypad": info.config.has_keypad,
            }  # fmt: skip
            if args.json:
                print_json(facts)
            else:
                show_rows(f"Nuki lock {lock}", [facts], as_json=False)
        elif action == "logging":
            await jobs.enable_logging(lock, settings, store, args.switch == "on")
            _say({"lock_id": lock, "logging": args.switch == "on"}, f"logging {args.switch}", args)
        elif action == "logs":
            kept = 0
            if not args.no_read:
                kept, _ = await jobs.read_logs(lock, settings, store)
            count, entries = await (await jobs.nuki_store(store)).log(lock, limit=args.count)
            rows = [
                {
                    "index": k.entry.index,
                    "at": None if k.entry.timestamp is None else k.entry.timestamp.isoformat(),
                    "by": k.entry.name,
                    "entry": k.entry.describe(),
                }
                for k in entries
            ]
            if args.json:
                print_json({"lock_id": lock, "read": kept, "kept": count, "entries": rows})
            else:
                show_rows(f"{lock}: {count} entries kept ({kept} new)", rows, as_json=False)
        elif action == "codes":
            await _codes(settings, store, args, lock)
        else:
            await _auths(settings, store, args, lock)


def _entry_id(text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"{text!r} is not an entry id", hint="list them to see their ids")
    return int(text)


async def _codes(settings: Settings, store: Any, args: argparse.Namespace, lock: str) -> None:
    command = args.codes_command
    if command == "list":
        codes = await access.list_codes(lock, settings, store)
        show_rows(
            f"{lock}: {len(codes)} keypad code(s)", [_code_row(c) for c in codes], as_json=args.json
        )
        return
    if command == "remove":
        await access.remove_code(lock, settings, store, _entry_id(args.entry))
        _say({"lock_id": lock, "removed": int(args.entry)}, f"code {args.entry} removed", args)
        return
    window = _window_of(args)
    limit = None if window is None else time_limit(window)
    if command == "add":
        code = read_secret("keypad code: ")
        code_id = await access.add_code(lock, settings, store, code, args.name, limit)
        _say({"lock_id": lock, "code_id": code_id}, f"code {code_id} added ({args.name})", args)
        return
    new_code = read_secret("new keypad code: ") if args.new_code else None
    change = access.CodeChange(
        code=new_code,
        name=args.name,
        enabled=args.enabled,
        limit=limit,
        time_limited=None if window is None else window.restricted,
    )
    updated = await access.update_code(lock, settings, store, _entry_id(args.entry), change)
    _say({"lock_id": lock, **_code_row(updated)}, f"code {updated.code_id} updated", args)


def _code_row(code: nuki.KeypadCode) -> dict[str, Any]:
    return {
        "id": code.code_id,
        "name": code.name,
        "enabled": code.enabled,
        "window": _describe(code.time_limited, code.limit),
        "uses": code.lock_count,
    }


async def _auths(settings: Settings, store: Any, args: argparse.Namespace, lock: str) -> None:
    command = args.auths_command
    if command == "list":
        entries = await access.list_authorizations(lock, settings, store)
        rows = [_auth_row(e) for e in entries]
        show_rows(f"{lock}: {len(rows)} authorization(s)", rows, as_json=args.json)
        return
    auth_id = _entry_id(args.entry)
    if command == "remove":
        await access.remove_authorization(lock, settings, store, auth_id)
        _say({"lock_id": lock, "removed": auth_id}, f"authorization {auth_id} removed", args)
        return
    window = _window_of(args)
    change = access.CodeChange(
        name=args.name,
        enabled=args.enabled,
        limit=None if window is None else time_limit(window),
        time_limited=None if window is None else window.restricted,
    )
    updated = await access.update_authorization(lock, settings, store, auth_id, change)
    _say({"lock_id": lock, **_auth_row(updated)}, f"authorization {auth_id} updated", args)


_ID_TYPES = {0: "app", 1: "bridge", 2: "fob", 3: "keypad"}


def _auth_row(entry: nuki.AuthorizationEntry) -> dict[str, Any]:
    return {
        "id": entry.auth_id,
        "type": _ID_TYPES.get(entry.id_type, str(entry.id_type)),
        "name": entry.name,
        "enabled": entry.enabled,
        "window": _describe(entry.time_limited, entry.limit),
        "uses": entry.lock_count,
    }


def _say(payload: dict[str, Any], text: str, args: argparse.Namespace) -> None:
    if args.json:
        print_json({"ok": True, **payload})
    else:
        print(text)


async def _web(settings: Settings, args: argparse.Namespace) -> None:
    """The same commands through the Nuki Web API (:mod:`.web.ops` checks, sends the full set
    and confirms by reading back); LOCK is a smartlockId or a name there. Pairing, the PIN
    and the lock's clock are Bluetooth's alone."""
    from blelock.vendors.nuki.web import ops
    from blelock.vendors.nuki.web.client import NukiWeb

    action = args.nuki_command
    if action not in ("logs", "codes", "auths"):
        raise UsageError(f"`nuki {action}` is done over Bluetooth", hint="drop --via web")
    async with NukiWeb.from_settings(nuki_settings(settings), settings.timeouts) as web:
        lock = await ops.find_lock(web, args.lock)
        lock_id = lock.smartlock_id
        if action == "logs":
            entries = await ops.read_logs(web, lock_id, count=args.count)
            rows = [
                {"id": e.id, "at": e.date.isoformat(), "by": e.name, "action": e.action,
                 "trigger": e.trigger, "state": e.state}
                for e in entries
            ]  # fmt: skip
            if args.json:
                print_json({"smartlock_id": lock_id, "entries": rows})
            else:
                show_rows(f"{lock.name}: the Web API's last {len(rows)}", rows, as_json=False)
            return
        command = args.codes_command if action == "codes" else args.auths_command
        if command == "list":
            if action == "codes":
                found = await ops.list_keypad_codes(web, lock_id)
            else:
                found = await web.auths(lock_id)
            kind = "keypad code" if action == "codes" else "authorization"
            title = f"{lock.name}: {len(found)} {kind}(s)"
            show_rows(title, [_web_row(a) for a in found], as_json=args.json)
            return
        if command == "remove":
            entry = await _web_entry(web, lock_id, args.entry, action)
            if action == "codes":
                await ops.remove_keypad_code(web, lock_id, entry.id)
            else:
                await ops.remove_authorization(web, lock_id, entry.id)
            _say({"smartlock_id": lock_id, "removed": entry.id}, f"{entry.name} removed", args)
            return
        window = _window_of(args)
        if command == "add":
            code = SecretStr(read_secret("keypad code: "))
            added = await ops.add_keypad_code(web, lock_id, code, args.name, window)
            _say({"smartlock_id": lock_id, **_web_row(added)}, f"code {added.name} added", args)
            return
        new_code = None
        if action == "codes" and args.new_code:
            new_code = SecretStr(read_secret("new keypad code: "))
        changes = ops.AuthChanges(
            name=args.name, enabled=args.enabled, code=new_code, window=window
        )
        entry = await _web_entry(web, lock_id, args.entry, action)
        updated = await ops.update_authorization(
            web, lock_id, entry.id, changes, keypad=action == "codes"
        )
        _say({"smartlock_id": lock_id, **_web_row(updated)}, f"{updated.name} updated", args)


async def _web_entry(web: NukiWeb, lock_id: int, text: str, action: str) -> SmartlockAuth:
    from blelock.vendors.nuki.web import ops

    if action == "codes":
        return await ops.find_keypad_code(web, lock_id, text)
    for auth in await web.auths(lock_id):
        if text in (auth.id, str(auth.auth_id), auth.name):
            return auth
    raise UsageError(f"the lock has no authorization {text!r}", hint="list them to see ids")


def _web_row(auth: SmartlockAuth) -> dict[str, Any]:
    return {
        "id": auth.id,
        "type": auth.type,
        "name": auth.name,
        "enabled": auth.enabled,
        "window": auth.window.describe(),
        "uses": auth.lock_count,
    }
