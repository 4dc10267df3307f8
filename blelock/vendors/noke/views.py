"""Flat views of the Core API's quick clicks, activity and lock info, as the plugin's CLI and
kiosk routes show them: the same rows for a table, for ``--json`` and for the HTTP API. A
quick-click code is never in a view (it opens the lock): only its length."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr

from blelock.errors import UsageError
from blelock.vendors.noke.models import ActivityEntry, LockInfo, LockQuickClicks
from blelock.vendors.noke.quick_clicks import UNLIMITED, masked

__all__ = [
    "KEY_REVOCATION_NOTE",
    "QUICK_CLICK_NOTE",
    "activity_rows",
    "lock_rows",
    "parse_code_lines",
    "quick_click_rows",
]

KEY_REVOCATION_NOTE = (
    "a revoked key still opens its lock until an online unlock of that lock carries the "
    "revocation (its /lock/ flags show 'keys' until then)"
)
QUICK_CLICK_NOTE = (
    "quick clicks reach the lock, and leave it, only with the lock's next online unlock: until "
    "then a pending one does not open and a revoked one still does"
)


def _time(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


def quick_click_rows(locks: Sequence[LockQuickClicks]) -> list[dict[str, Any]]:
    return [
        {
            "lock_id": lock.mac,
            "code": masked(qc.code),
            "uses": "unlimited" if qc.uses == UNLIMITED else qc.uses,
            "state": "revoked (still on the lock)"
            if qc.revoked
            else "pending (not on the lock yet)"
            if qc.pending
            else "on the lock",
        }
        for lock in locks
        for qc in lock.quick_clicks
    ]


def activity_rows(entries: Sequence[ActivityEntry]) -> list[dict[str, Any]]:
    return [
        {
            "lock_id": entry.lock_mac,
            "action": entry.action,
            "from": _time(entry.range_date_start),
            "to": _time(entry.range_date_end),
            "recorded": _time(entry.recorded_time),
            "tracking_key": entry.tracking_key or None,
        }
        for entry in entries
    ]


def lock_rows(locks: Sequence[LockInfo]) -> list[dict[str, Any]]:
    return [
        {
            "lock_id": lock.mac,
            "hardware": lock.hw_version,
            "firmware": lock.fw_version,
            "serial": lock.serial,
            "internal_battery_mv": lock.internal_battery,
            "external_battery_mv": lock.external_battery,
            "status": lock.status,
            "waiting_to_sync": ", ".join(lock.flags) or None,
            "setup_count": lock.setup_count,
        }
        for lock in locks
    ]


def parse_code_lines(text: str, default_uses: int | None) -> list[tuple[SecretStr, int | None]]:
    """``CODE`` or ``CODE USES`` per line (blank lines skipped): codes come on standard input
    or in a request body, never on a command line."""
    clicks: list[tuple[SecretStr, int | None]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2:
            raise UsageError(f"line {number}: expected CODE or CODE USES")
        uses = default_uses
        if len(parts) == 2:
            try:
                uses = int(parts[1])
            except ValueError:
                raise UsageError(f"line {number}: uses is not a whole number") from None
        clicks.append((SecretStr(parts[0]), uses))
    return clicks
