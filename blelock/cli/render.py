"""Output: rich tables for people (on stderr when --json is on), JSON for machines, one-line
errors with a hint. The only module that knows how things look."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from blelock.errors import BlelockError, ConfigError, UsageError
from blelock.model import Outcome, Sighting
from blelock.protocol.noke import battery_percent

__all__ = ["print_json", "report_failure", "show_outcomes", "show_sightings"]


def _console() -> Console:
    return Console(stderr=False, highlight=False)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def error_payload(exc: BlelockError) -> dict[str, Any]:
    return {
        "error": exc.message,
        "lock": exc.lock_id,
        "step": exc.step,
        "hint": exc.hint,
        "kind": type(exc).__name__,
    }


def report_failure(exc: Exception, *, as_json: bool, debug: bool) -> int:
    """Say what went wrong in one line on stderr (and as JSON on stdout with --json)."""
    if isinstance(exc, BlelockError):
        print(f"blelock: {exc.one_line()}", file=sys.stderr)
        if as_json:
            print_json({"ok": False, **error_payload(exc)})
        return 2 if isinstance(exc, (UsageError, ConfigError)) else 1
    if debug:
        traceback.print_exception(exc)
    else:
        print(
            f"blelock: internal error ({type(exc).__name__}); run again with --debug "
            "for the traceback and report it",
            file=sys.stderr,
        )
    return 1


def _battery(millivolts: int | None) -> str:
    return "-" if millivolts is None else f"{millivolts} mV {battery_percent(millivolts)}%"


def sighting_payload(sighting: Sighting) -> dict[str, Any]:
    return {
        "mac": sighting.lock_id,
        "vendor": sighting.vendor.value,
        "name": sighting.name,
        "hardware": sighting.hardware,
        "firmware": sighting.firmware,
        "state": sighting.state.value,
        "rssi": sighting.rssi,
    }


def show_sightings(sightings: Sequence[Sighting], *, as_json: bool) -> None:
    if as_json:
        print_json([sighting_payload(s) for s in sightings])
        return
    table = Table(title=f"{len(sightings)} lock(s) in range")
    table.add_column("MAC", no_wrap=True)
    for column in ("name", "hardware", "firmware", "state", "RSSI"):
        table.add_column(column)
    for s in sightings:
        table.add_row(
            s.lock_id,
            s.name,
            s.hardware,
            s.firmware or "-",
            s.state.value,
            "-" if s.rssi is None else f"{s.rssi} dBm",
        )
    _console().print(table)


def outcome_payload(outcome: Outcome) -> dict[str, Any]:
    return {
        "mac": outcome.lock_id,
        "action": outcome.action.value,
        "opened": outcome.opened,
        "battery_mv": outcome.battery_mv,
        "packets_sent": outcome.packets_sent,
        "attempts": outcome.attempts,
        "logs_kept": len(outcome.logs),
    }


def show_outcomes(
    outcomes: Sequence[Outcome], failures: Sequence[BlelockError], *, as_json: bool
) -> None:
    if as_json:
        print_json(
            {
                "ok": not failures and bool(outcomes),
                "results": [outcome_payload(o) for o in outcomes],
                "failures": [error_payload(f) for f in failures],
            }
        )
        return
    table = Table(title="blelock visits")
    table.add_column("lock", no_wrap=True)
    for column in ("action", "result", "battery", "packets", "logs", "tries"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(
            o.lock_id,
            o.action.value,
            "[green]opened[/]",
            _battery(o.battery_mv),
            str(o.packets_sent),
            str(len(o.logs)),
            str(o.attempts),
        )
    for f in failures:
        table.add_row(
            f.lock_id or "-", f.step or "-", f"[red]failed[/]: {f.message}", "", "", "", ""
        )
    _console().print(table)
