"""``blelock keyless ...``: the operating device's
activation and clock fixes, and the administrator's view of the Keyless platform (login,
locking devices, permissions, offline keys)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from blelock.cli.context import moment_option, settings_from
from blelock.cli.render import print_json, show_rows
from blelock.config import Settings
from blelock.jobs import open_store
from blelock.vendors.keyless.cloud import KeylessCloud
from blelock.vendors.keyless.jobs import activate, set_lock_time
from blelock.vendors.keyless.models import (
    ClaimingStatus,
    OfflineKeyDelivery,
    OperationType,
    check_id,
)
from blelock.vendors.keyless.settings import keyless_settings
from blelock.vendors.keyless.visit import KeylessOutcome

T = TypeVar("T")

LIST_LIMIT = 1000
"""Rows a listing shows at most: the platform pages, a terminal does not."""


def _device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("device", metavar="DEVICE", help="the Keyless lockingDeviceId (a UUID)")


def add_arguments(parser: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    """``blelock keyless …``; ``common``: the options every command takes (--json …)."""
    actions = parser.add_subparsers(dest="keyless_command", metavar="ACTION", required=True)
    activate = actions.add_parser(
        "activate", parents=common, help="make this companion an operating device"
    )
    activate.add_argument(
        "invitation_code", metavar="CODE", help="the invitation's code; - reads it from stdin"
    )
    _device_argument(
        actions.add_parser("set-time", parents=common, help="set a lock's clock to this machine's")
    )
    actions.add_parser("login", parents=common, help="check the administrator's credentials")
    devices = actions.add_parser("devices", parents=common, help="list locking devices")
    devices.add_argument("--claiming-status", choices=("CLAIMED", "UNCLAIMED"))
    devices.add_argument("--serial", metavar="SERIAL", help="only this serial number")
    permissions = actions.add_parser("permissions", parents=common, help="list permissions")
    permissions.add_argument("--user", metavar="USER_ID", help="only this user's")
    grant = actions.add_parser("grant", parents=common, help="let a user operate a lock")
    grant.add_argument("user_id", metavar="USER_ID")
    _device_argument(grant)
    grant.add_argument(
        "--operation", choices=("OPEN", "UPDATE_FIRMWARE", "UPDATE_TIME"), default="OPEN"
    )
    grant.add_argument("--start", metavar="ISO", help="default: now")
    grant.add_argument("--end", metavar="ISO", help="default: start + 30 days")
    grant.add_argument(
        "--key-validity-days", type=_positive_days, default=8, metavar="N",
        help="how long an operating key lasts (1-31, default 8)",
    )  # fmt: skip
    revoke = actions.add_parser("revoke", parents=common, help="withdraw a permission")
    revoke.add_argument("permission_id", metavar="PERMISSION_ID")
    offline = actions.add_parser("offline-key", parents=common, help="issue or list offline keys")
    kinds = offline.add_subparsers(dest="offline_key_command", metavar="ACTION", required=True)
    kinds.add_parser("list", parents=common, help="issued offline keys (never their values)")
    issue = kinds.add_parser(
        "issue", parents=common, help="issue an offline key to an operating device"
    )
    _device_argument(issue)
    issue.add_argument("--operating-device", required=True, metavar="ID")
    issue.add_argument("--start", metavar="ISO", help="default: now")
    issue.add_argument("--end", metavar="ISO", help="default: start + 24 h (the most allowed)")
    issue.add_argument(
        "--delivery", choices=("NONE", "SMS_WITHOUT_APP_LINK", "SMS_WITH_APP_LINK"),
        default="NONE",
    )  # fmt: skip
    issue.add_argument("--phone", metavar="E164", help="for SMS delivery")
    issue.add_argument("--app-link", metavar="URL", help="appLinkBaseUrl (at most 42 characters)")


def _positive_days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    action = args.keyless_command
    if action == "activate":
        code = args.invitation_code
        if code == "-":  # from standard input: kept out of shell history and the process list
            code = sys.stdin.readline().strip()
        device_id = asyncio.run(_activate(settings, code))
        _say({"operating_device_id": device_id}, f"activated as operating device {device_id}", args)
    elif action == "set-time":
        outcome, online = asyncio.run(_set_time(settings, check_id(args.device, "device")))
        _show_outcome(outcome, online=online, as_json=args.json)
    else:
        asyncio.run(_administer(settings, args))
    return 0


async def _activate(settings: Settings, code: str) -> str:
    async with open_store(settings) as store:
        return await activate(settings, store, code)


async def _set_time(settings: Settings, device: str) -> tuple[KeylessOutcome, bool]:
    async with open_store(settings) as store:
        return await set_lock_time(device, settings, store)


async def _administer(settings: Settings, args: argparse.Namespace) -> None:
    action = args.keyless_command
    async with KeylessCloud.from_settings(settings) as cloud:
        if action == "login":
            assert (
                keyless_settings(settings).user_id is not None
            )  # from_settings refuses it missing
            user = await cloud.get_user(str(keyless_settings(settings).user_id))
            _say(
                {"user_id": user.id, "role": user.role},
                f"logged in to {keyless_settings(settings).url} as {user.id} ({user.role})",
                args,
            )
        elif action == "devices":
            status = None if args.claiming_status is None else ClaimingStatus(args.claiming_status)
            rows = [
                {
                    "id": d.id,
                    "name": d.name,
                    "claiming_status": d.claiming_status,
                    "serial_number": d.serial_number,
                    "hardware_model": d.hardware_model,
                }
                async for d in _first(
                    cloud.locking_devices(claiming_status=status, serial_number=args.serial)
                )
            ]
            show_rows(f"{len(rows)} locking device(s)", rows, as_json=args.json)
        elif action == "permissions":
            rows = [
                {
                    "id": p.id,
                    "user_id": p.user_id,
                    "locking_device_id": p.locking_device_id,
                    "operation": p.operation_type,
                    "start": p.start.isoformat(),
                    "end": p.end.isoformat(),
                }
                async for p in _first(cloud.permissions())
                if args.user is None or p.user_id == args.user
            ]
            show_rows(f"{len(rows)} permission(s)", rows, as_json=args.json)
        elif action == "grant":
            start = moment_option(args.start, "--start") or dt.datetime.now(dt.UTC)
            end = moment_option(args.end, "--end") or start + dt.timedelta(days=30)
            permission_id = await cloud.grant_permission(
                check_id(args.user_id, "user"),
                check_id(args.device, "device"),
                OperationType(args.operation),
                start,
                end,
                operating_key_validity=dt.timedelta(days=args.key_validity_days),
            )
            _say({"permission_id": permission_id}, f"granted: permission {permission_id}", args)
        elif action == "revoke":
            await cloud.revoke_permission(check_id(args.permission_id, "permission"))
            _say({"revoked": args.permission_id}, f"revoked {args.permission_id}", args)
        elif action == "offline-key":
            await _offline_key(cloud, args)


async def _offline_key(cloud: KeylessCloud, args: argparse.Namespace) -> None:
    if args.offline_key_command == "list":
        rows = [
            {
                "id": k.id,
                "locking_device_id": k.locking_device_id,
                "operating_device_id": k.operating_device_id,
                "start": k.start_datetime.isoformat(),
                "end": k.end_datetime.isoformat(),
                "delivery": k.delivery_mechanism,
            }
            async for k in _first(cloud.offline_keys())
        ]
        show_rows(f"{len(rows)} offline key(s)", rows, as_json=args.json)
        return
    start = moment_option(args.start, "--start") or dt.datetime.now(dt.UTC)
    end = moment_option(args.end, "--end") or start + dt.timedelta(hours=24)
    issued = await cloud.issue_offline_key(
        check_id(args.operating_device, "operating device"),
        check_id(args.device, "device"),
        start,
        end,
        delivery=OfflineKeyDelivery(args.delivery),
        phone_number=args.phone,
        app_link_base_url=args.app_link,
    )
    # The values stay with the platform and the operating device: never printed here.
    facts = {
        "offline_key_id": issued.primary_key.id,
        "alternative": issued.alternative_key is not None,
        "start": issued.start_datetime.isoformat(),
        "end": issued.end_datetime.isoformat(),
    }
    _say(
        facts,
        f"issued offline key {issued.primary_key.id} ({facts['start']} → {facts['end']})",
        args,
    )


async def _first(items: AsyncIterator[T]) -> AsyncIterator[T]:
    count = 0
    async for item in items:
        yield item
        count += 1
        if count >= LIST_LIMIT:
            return


def _say(payload: dict[str, Any], text: str, args: argparse.Namespace) -> None:
    if args.json:
        print_json({"ok": True, **payload})
    else:
        print(text)


def _show_outcome(outcome: KeylessOutcome, *, online: bool, as_json: bool) -> None:
    facts: dict[str, Any] = {
        "device": outcome.lock_id,
        "operation": outcome.operation,
        "online": online,
        "audit_entries_kept": outcome.audit_collected,
        "certificate_installed": outcome.certificate_installed is not None,
        "rekeying_started": outcome.csr is not None,
    }
    if outcome.time_set is not None:
        facts["clock_was"] = outcome.time_set[0].isoformat()
        facts["clock_now"] = outcome.time_set[1].isoformat()
    if as_json:
        print_json({"ok": True, **facts})
        return
    how = "online key" if online else "key synced earlier (offline)"
    extras = [
        f"{outcome.audit_collected} audit entr{'y' if outcome.audit_collected == 1 else 'ies'} "
        "kept for upload"
    ]
    if outcome.certificate_installed is not None:
        extras.append("new certificate installed")
    if outcome.csr is not None:
        extras.append("re-keying started (the request is kept until the platform has it)")
    if outcome.time_set is not None:
        extras.append(f"clock set (it read {outcome.time_set[0].isoformat()})")
    print(f"{outcome.lock_id}: {outcome.operation} done with the {how}; {'; '.join(extras)}")
