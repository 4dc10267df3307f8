"""Output: rich tables for people (on stderr when --json is on), JSON for machines, one-line
errors with a hint. The only module that knows how things look."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from blelock.errors import BlelockError, ConfigError, UsageError
from blelock.model import LogRecord, Outcome, Sighting, Vendor
from blelock.protocol.dfu_package import DfuPackage
from blelock.protocol.noke import battery_percent

__all__ = [
    "activity",
    "print_json",
    "report_failure",
    "show_firmware_update",
    "show_keys",
    "show_outcomes",
    "show_package",
    "show_pending_logs",
    "show_rows",
    "show_sightings",
    "show_sync",
    "transfer_progress",
    "upload_progress",
]


PIPE_WIDTH = 120
"""Rich assumes 80 columns when stdout is no terminal; a table in a log file reads better whole."""


def _console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)


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
    if as_json:
        print_json({"ok": False, "kind": "internal", "error": type(exc).__name__})
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
    return "-" if millivolts is None else f"{battery_percent(millivolts)}% {millivolts}mV"


def sighting_payload(sighting: Sighting) -> dict[str, Any]:
    return {
        "lock_id": sighting.lock_id,
        "mac": sighting.lock_id if sighting.vendor is Vendor.NOKE else None,
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
    table.add_column("lock", no_wrap=True)
    for column in ("vendor", "name", "hardware", "firmware", "state", "RSSI"):
        table.add_column(column)
    for s in sightings:
        table.add_row(
            s.lock_id,
            s.vendor.value,
            escape(s.name),
            escape(s.hardware),
            escape(s.firmware or "-"),
            s.state.value,
            "-" if s.rssi is None else f"{s.rssi} dBm",
        )
    _console().print(table)


def outcome_payload(outcome: Outcome) -> dict[str, Any]:
    return {
        "mac": outcome.lock_id,
        "action": outcome.action.value,
        "opened": True,
        "offline": outcome.offline,
        "battery_mv": outcome.battery_mv,
        "packets_sent": outcome.packets_sent,
        "attempts": outcome.attempts,
        "logs_kept": len(outcome.logs),
    }


def show_outcomes(
    outcomes: Sequence[Outcome],
    failures: Sequence[BlelockError],
    *,
    as_json: bool,
    uploads: dict[str, int] | None = None,
    keyless: Sequence[tuple[Any, bool]] = (),
) -> None:
    """Nokē visits' outcomes, and Keyless ones as (KeylessOutcome, went online) pairs."""
    if as_json:
        print_json(
            {
                "ok": not failures and bool(outcomes or keyless),
                "results": [outcome_payload(o) for o in outcomes],
                "failures": [error_payload(f) for f in failures],
                **({"logs": uploads} if uploads is not None else {}),
                **({"keyless_results": [_keyless_payload(*k) for k in keyless]} if keyless else {}),
            }
        )
        return
    table = Table(title="blelock visits", box=box.SIMPLE_HEAD)
    table.add_column("lock", no_wrap=True)
    for column in ("action", "result", "via", "battery", "packets", "logs", "tries"):
        table.add_column(column, no_wrap=True)
    for o in outcomes:
        table.add_row(
            o.lock_id,
            o.action.value,
            "[green]opened[/]",
            "offline key" if o.offline else "cloud",
            _battery(o.battery_mv),
            str(o.packets_sent),
            str(len(o.logs)),
            str(o.attempts),
        )
    for k, online in keyless:
        via = "platform" if online else "synced key"
        table.add_row(
            k.lock_id, k.operation, "[green]opened[/]", via, "", "", str(k.audit_collected), "1"
        )
    for f in failures:
        table.add_row(f.lock_id or "-", f.step or "-", "[red]failed[/]", "", "", "", "", "")
        table.add_row("", f"[red]{escape(f.one_line())}[/]", end_section=True)
    if uploads is not None:
        table.caption = (
            f"{uploads['uploaded']} log record(s) uploaded to the cloud, "
            f"{uploads['pending']} still pending"
        )
        if "keyless_uploaded" in uploads:
            table.caption += (
                f"; {uploads['keyless_uploaded']} Keyless audit record(s) uploaded once the "
                "cloud was reachable again (online opens send theirs at once), "
                f"{uploads['keyless_pending']} still pending"
            )
    _console().print(table)


def _keyless_payload(outcome: Any, online: bool) -> dict[str, Any]:
    return {
        "device": outcome.lock_id,
        "operation": outcome.operation,
        "opened": outcome.key_id is not None,
        "online": online,
        "audit_entries_kept": outcome.audit_collected,
    }


@contextlib.contextmanager
def activity(message: str, *, enabled: bool) -> Iterator[None]:
    """A spinner on stderr while something of unknown length runs (a fleet's keys download)."""
    if not enabled:
        yield
        return
    with Console(stderr=True).status(escape(message)):
        yield


@contextlib.contextmanager
def upload_progress(total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar (records/s, ETA) on stderr; ``advance(done)`` moves it."""
    if not enabled:
        yield lambda done: None
        return
    columns = (
        TextColumn("uploading logs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("upload", total=total)
        yield lambda done: progress.update(task, completed=done)


@contextlib.contextmanager
def transfer_progress(total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar in bytes, with bytes/s and ETA, on stderr; ``advance(done)`` moves it."""
    if not enabled:
        yield lambda done: None
        return
    columns = (
        TextColumn("firmware"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("firmware", total=total)
        yield lambda done: progress.update(task, completed=done)


def show_firmware_update(outcome: Any, *, as_json: bool) -> None:
    facts = {
        "mac": outcome.lock_id,
        "version": outcome.version,
        "bytes": outcome.size,
        "connections": outcome.connections,
        "bytes_sent": outcome.bytes_sent,
    }
    if as_json:
        print_json({"ok": True, **facts})
        return
    resumed = f", resumed {outcome.connections - 1}x" if outcome.connections > 1 else ""
    if outcome.bytes_sent < outcome.size:
        resumed += f", {outcome.bytes_sent} sent in this run"
    _console().print(
        f"[green]{outcome.lock_id} now runs firmware {escape(outcome.version)}[/] "
        f"({outcome.size} bytes{resumed})"
    )


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def key_payload(key: Any) -> dict[str, Any]:
    return {
        "mac": key.lock_id,
        "tracking_key": key.tracking_key,
        "fetched_at": key.fetched_at.isoformat(),
        "expires_at": key.expires_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
    }


def show_keys(keys: Sequence[Any], *, as_json: bool) -> None:
    if as_json:
        print_json([key_payload(key) for key in keys])
        return
    now = dt.datetime.now(dt.UTC)
    table = Table(title=f"{len(keys)} cached offline key(s)")
    table.add_column("lock", no_wrap=True)
    for column in ("tracking key", "fetched", "expires", "status"):
        table.add_column(column)
    for key in keys:
        status = (
            "[red]revoked[/]"
            if key.revoked_at is not None
            else "[yellow]expired[/]"
            if key.expires_at <= now
            else "[green]usable[/]"
        )
        table.add_row(
            key.lock_id,
            escape(key.tracking_key),
            _when(key.fetched_at),
            _when(key.expires_at),
            status,
        )
    _console().print(table)


def show_pending_logs(
    count: int, records: Sequence[LogRecord], *, as_json: bool, failed: Sequence[Any] = ()
) -> None:
    """``failed``: batches the cloud refused for good (store.outbox.FailedBatch)."""
    if as_json:
        print_json(
            {
                "pending": count,
                "set_aside": [
                    {
                        "batch": f.key,
                        "records": f.records,
                        "failed_at": f.failed_at,
                        "reason": f.failure,
                    }
                    for f in failed
                ],
                "records": [
                    {
                        "mac": r.lock_id,
                        "session": r.session,
                        "received_at": r.received_at,
                        "payload": r.payload,
                    }
                    for r in records
                ],
            }
        )
        return
    table = Table(title=f"{count} log record(s) waiting for upload")
    table.add_column("lock", no_wrap=True)
    for column in ("received", "session", "record"):
        table.add_column(column)
    for r in records:
        received = dt.datetime.fromtimestamp(r.received_at, dt.UTC)
        table.add_row(r.lock_id, _when(received), r.session[:12] + "…", r.payload[:16] + "…")
    if count > len(records):
        table.caption = f"showing the oldest {len(records)}"
    _console().print(table)
    for f in failed:
        _console().print(
            f"[red]{f.records} record(s) set aside:[/] the cloud refused them "
            f"({escape(f.failure)}); fix the cause, then `blelock upload --retry-failed`"
        )


def show_sync(report: dict[str, Any], *, as_json: bool) -> None:
    keys = report.get("keys")
    counts = (
        {name: getattr(keys, name) for name in ("added", "refreshed", "revoked", "unchanged")}
        if keys is not None
        else None
    )
    keyless = report.get("keyless_keys")
    keyless_counts = (
        None
        if keyless is None
        else {
            name: getattr(keyless, name)
            for name in ("operating_keys", "offline_keys", "dropped", "certificates_pending")
        }
    )
    if as_json:
        payload = {
            "keys": counts,
            "uploaded": report.get("uploaded", 0),
            "pending": report.get("pending", 0),
        }
        if "keyless_uploaded" in report:
            payload |= {
                "keyless_keys": keyless_counts,
                "keyless_uploaded": report["keyless_uploaded"],
                "keyless_pending": report["keyless_pending"],
            }
        payload["set_aside"] = report.get("set_aside", 0)
        print_json(payload)
        return
    table = Table(title="blelock sync" if "keys" in report else "blelock upload", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, value in (counts or {}).items():
        table.add_row(f"offline keys {name}", str(value))
    if "uploaded" in report:
        table.add_row("log records uploaded", str(report["uploaded"]))
        table.add_row("log records still pending", str(report["pending"]))
    if report.get("set_aside"):
        table.add_row(
            "[red]records the cloud refused[/] (see `blelock logs`)", str(report["set_aside"])
        )
    for name, value in (keyless_counts or {}).items():
        table.add_row(f"Keyless {name.replace('_', ' ')}", str(value))
    if "keyless_uploaded" in report:
        table.add_row("Keyless audit entries uploaded", str(report["keyless_uploaded"]))
        table.add_row("Keyless records still pending", str(report["keyless_pending"]))
    _console().print(table)


def show_rows(title: str, rows: Sequence[dict[str, Any]], *, as_json: bool) -> None:
    """A list of flat records: JSON as they are, or a table with their keys as columns."""
    if as_json:
        print_json(list(rows))
        return
    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column.replace("_", " "), no_wrap=column.endswith("id"))
    for row in rows:
        table.add_row(*(escape("-" if row[c] is None else str(row[c])) for c in columns))
    _console().print(table)


def show_package(package: DfuPackage, *, as_json: bool) -> None:
    init = package.init
    facts = {
        "package": package.source,
        "hardware": package.hardware,
        "version": package.version,
        "firmware_type": init.command.fw_type.name.lower(),
        "image_bytes": package.size,
        "image_sha256": package.sha256,
        "image_crc32": f"{package.crc32:08x}",
        "signed": init.signed,
        "files": [package.dat_file, package.bin_file],
    }
    if as_json:
        print_json(facts)
        return
    table = Table(title=f"firmware package {escape(package.source)}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for name, value in facts.items():
        shown = ", ".join(value) if isinstance(value, list) else str(value)
        table.add_row(name.replace("_", " "), escape(shown))
    _console().print(table)
