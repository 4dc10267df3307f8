"""Output: rich tables for people (on stderr when --json is on), JSON for machines, one-line
errors with a hint. The only module that knows how things look."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from blelock.errors import BlelockError, ConfigError, UsageError
from blelock.model import KeptLog, KeyInfo, LogRecord, Sighting, VisitResult

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from blelock.access.reconcile import ReconcileReport
    from blelock.protocol.dfu_package import DfuPackage
    from blelock.sync import VendorSync

__all__ = [
    "activity",
    "print_json",
    "report_failure",
    "show_firmware_update",
    "show_keys",
    "show_package",
    "show_pending_logs",
    "show_results",
    "show_rows",
    "show_sightings",
    "show_sync",
    "transfer_progress",
    "upload_progress",
]


PIPE_WIDTH = 120
"""Rich assumes 80 columns when stdout is no terminal; a table in a log file reads better whole."""


# rich is imported by what draws for people: `--json` output and a failure's line need none of
# it (~30 ms of a command's start).
DRAW_MODULES = ("rich.console", "rich.table", "rich.box", "rich.markup", "rich._emoji_codes")
"""What drawing a table of results imports (the emoji table too, which rich loads at the first
draw): a visit's command preloads them while it waits on the radio (see
:mod:`blelock.preload`)."""


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    if stderr:
        return Console(stderr=True)
    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def _table(
    title: str, *, caption: str | None = None, show_header: bool = True, simple_head: bool = False
) -> Table:
    from rich import box
    from rich.table import Table

    if simple_head:
        return Table(title=title, caption=caption, show_header=show_header, box=box.SIMPLE_HEAD)
    return Table(title=title, caption=caption, show_header=show_header)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


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
    return "-" if millivolts is None else f"{millivolts} mV"


def sighting_payload(sighting: Sighting) -> dict[str, Any]:
    return {
        "lock_id": sighting.lock_id,
        "vendor": sighting.vendor,
        "name": sighting.name,
        "hardware": sighting.hardware,
        "firmware": sighting.firmware,
        "state": sighting.state.value,
        "rssi": sighting.rssi,
        "flags": list(sighting.flags),
    }


def show_sightings(sightings: Sequence[Sighting], *, as_json: bool) -> None:
    if as_json:
        print_json([sighting_payload(s) for s in sightings])
        return
    table = _table(f"{len(sightings)} lock(s) in range")
    table.add_column("lock", no_wrap=True)
    for column in ("vendor", "name", "hardware", "firmware", "state", "RSSI"):
        table.add_column(column)
    for s in sightings:
        table.add_row(
            s.lock_id,
            s.vendor,
            _escape(s.name),
            _escape(s.hardware),
            _escape(s.firmware or "-"),
            s.state.value + (f" ({', '.join(s.flags)})" if s.flags else ""),
            "-" if s.rssi is None else f"{s.rssi} dBm",
        )
    _console().print(table)


def result_payload(result: VisitResult) -> dict[str, Any]:
    return {
        "lock_id": result.lock_id,
        "vendor": result.vendor,
        "operation": result.operation,
        "opened": True,
        "online": result.online,
        "battery_mv": result.battery_mv,
        "logs_kept": result.logs_kept,
        **result.details,
    }


def _details(details: Mapping[str, str | int | float | bool | None]) -> str:
    """The vendor's facts that say something, short: a flag only when set, long ids cut."""
    shown = []
    for name, value in details.items():
        if value is None or value is False:
            continue
        label = name.replace("_", " ")
        if value is True:
            shown.append(label)
            continue
        text = str(value)
        shown.append(f"{label} {text[:8] + '…' if len(text) > 12 else text}")
    return ", ".join(shown)


def show_results(
    results: Sequence[VisitResult],
    failures: Sequence[BlelockError],
    *,
    as_json: bool,
    caption: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Operations on locks of any vendor: what each achieved, then what failed."""
    if as_json:
        print_json(
            {
                "ok": not failures and bool(results),
                "results": [result_payload(r) for r in results],
                "failures": [error_payload(f) for f in failures],
                **(extra or {}),
            }
        )
        return
    table = _table("blelock visits", caption=caption, simple_head=True)
    table.add_column("lock", no_wrap=True)
    for column in ("vendor", "operation", "result", "via", "battery", "logs", "details"):
        table.add_column(column, no_wrap=column != "details")
    for r in results:
        details = _details(r.details)
        table.add_row(
            r.lock_id,
            r.vendor,
            r.operation,
            "[green]done[/]",
            "cloud" if r.online else "synced key",
            _battery(r.battery_mv),
            str(r.logs_kept),
            _escape(details),
        )
    for f in failures:
        table.add_row(f.lock_id or "-", "", f.step or "-", "[red]failed[/]")
        table.add_row("", "", f"[red]{_escape(f.one_line())}[/]", end_section=True)
    _console().print(table)


@contextlib.contextmanager
def activity(message: str, *, enabled: bool) -> Iterator[None]:
    """A spinner on stderr while something of unknown length runs (a fleet's keys download)."""
    if not enabled:
        yield
        return
    with _console(stderr=True).status(_escape(message)):
        yield


@contextlib.contextmanager
def upload_progress(total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar (records/s, ETA) on stderr; ``advance(done)`` moves it."""
    if not enabled:
        yield lambda done: None
        return
    # Imported here: an unlock shows no progress bar, and rich.progress costs ~10 ms to load.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("uploading logs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_console(stderr=True), transient=True) as progress:
        task = progress.add_task("upload", total=total)
        yield lambda done: progress.update(task, completed=done)


@contextlib.contextmanager
def transfer_progress(total: int, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar in bytes, with bytes/s and ETA, on stderr; ``advance(done)`` moves it."""
    if not enabled:
        yield lambda done: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("firmware"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_console(stderr=True), transient=True) as progress:
        task = progress.add_task("firmware", total=total)
        yield lambda done: progress.update(task, completed=done)


def show_firmware_update(result: VisitResult, *, as_json: bool) -> None:
    """A firmware update's result: the version the lock now runs, bytes, resumptions."""
    facts = {"lock_id": result.lock_id, "vendor": result.vendor, **result.details}
    if as_json:
        print_json({"ok": True, **facts})
        return
    size, sent, connections = (
        int(result.details.get(name) or 0) for name in ("bytes", "bytes_sent", "connections")
    )
    resumed = f", resumed {connections - 1}x" if connections > 1 else ""
    if sent < size:
        resumed += f", {sent} sent in this run"
    version = _escape(str(result.details.get("version")))
    _console().print(
        f"[green]{result.lock_id} now runs firmware {version}[/] ({size} bytes{resumed})"
    )


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def key_payload(key: KeyInfo) -> dict[str, Any]:
    return {
        "vendor": key.vendor,
        "lock_id": key.lock_id,
        "holder": key.holder,
        "kind": key.kind,
        "fetched_at": _iso(key.fetched_at),
        "valid_from": _iso(key.valid_from),
        "expires_at": key.expires_at.isoformat(),
        "revoked_at": _iso(key.revoked_at),
    }


def show_keys(keys: Sequence[KeyInfo], *, as_json: bool) -> None:
    if as_json:
        print_json([key_payload(key) for key in keys])
        return
    now = dt.datetime.now(dt.UTC)
    table = _table(f"{len(keys)} cached key(s) for offline use")
    table.add_column("lock", no_wrap=True)
    for column in ("vendor", "holder", "kind", "fetched", "expires", "status"):
        table.add_column(column)
    for key in keys:
        status = (
            "[red]revoked[/]"
            if key.revoked_at is not None
            else "[yellow]expired[/]"
            if key.expires_at <= now
            else "[yellow]not yet valid[/]"
            if key.valid_from is not None and key.valid_from > now
            else "[green]usable[/]"
        )
        table.add_row(
            key.lock_id,
            key.vendor,
            _escape(key.holder),
            _escape(key.kind),
            _when(key.fetched_at),
            _when(key.expires_at),
            status,
        )
    _console().print(table)


def show_pending_logs(
    count: int,
    records: Sequence[tuple[str, LogRecord]],
    *,
    as_json: bool,
    failed: Sequence[Any] = (),
    kept: tuple[int, Sequence[KeptLog]] = (0, ()),
) -> None:
    """``failed``: batches the cloud refused for good (store.outbox.FailedBatch); ``kept``:
    entries kept here that go to no cloud from here (how many, and the newest)."""
    kept_count, kept_logs = kept
    if as_json:
        print_json(
            {
                "pending": count,
                "kept": kept_count,
                "kept_records": [
                    {
                        "vendor": k.vendor,
                        "lock_id": k.lock_id,
                        "at": None if k.at is None else k.at.isoformat(),
                        "summary": k.summary,
                    }
                    for k in kept_logs
                ],
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
                        "vendor": vendor,
                        "lock_id": r.lock_id,
                        "context": r.context,
                        "received_at": r.received_at,
                        "payload": r.payload,
                    }
                    for vendor, r in records
                ],
            }
        )
        return
    table = _table(f"{count} log record(s) waiting for upload")
    table.add_column("lock", no_wrap=True)
    for column in ("vendor", "received", "context", "record"):
        table.add_column(column)
    for vendor, r in records:
        received = dt.datetime.fromtimestamp(r.received_at, dt.UTC)
        table.add_row(
            r.lock_id, vendor, _when(received), _escape(r.context[:12]), r.payload[:16] + "…"
        )
    if count > len(records):
        table.caption = f"showing the oldest {len(records)}"
    _console().print(table)
    if kept_count:
        kept_table = _table(f"{kept_count} log entr(ies) kept here (no cloud takes them)")
        kept_table.add_column("lock", no_wrap=True)
        for column in ("vendor", "when", "entry"):
            kept_table.add_column(column)
        for k in kept_logs:
            when = "-" if k.at is None else _when(k.at)
            kept_table.add_row(k.lock_id, k.vendor, when, _escape(k.summary))
        if kept_count > len(kept_logs):
            kept_table.caption = f"showing the newest {len(kept_logs)}"
        _console().print(kept_table)
    for f in failed:
        _console().print(
            f"[red]{f.records} record(s) set aside:[/] the cloud refused them "
            f"({_escape(f.failure)}); fix the cause, then `blelock upload --retry-failed`"
        )


def sync_payload(report: VendorSync) -> dict[str, Any]:
    return {
        "vendor": report.vendor,
        "keys": None if report.keys is None else dict(report.keys),
        "uploaded": report.uploaded,
        "pending": report.pending,
        "set_aside": report.set_aside,
    }


def grants_payload(report: ReconcileReport) -> dict[str, Any]:
    """What a reconcile run did, by count (and the problems it met, one line each)."""
    return {
        "grants_looked_at": report.grants,
        "applied": report.applied,
        "found_after_interruption": report.found,
        "confirmed": report.confirmed,
        "removed": report.removed,
        "refused": report.refused,
        "vendor_calls": report.vendor_calls,
        "problems": list(report.problems),
    }


def show_sync(
    reports: Sequence[VendorSync],
    *,
    as_json: bool,
    title: str,
    grants: dict[str, Any] | None = None,
) -> None:
    if as_json:
        payload: dict[str, Any] = {
            "vendors": [sync_payload(r) for r in reports],
            "uploaded": sum(r.uploaded for r in reports),
            "pending": sum(r.pending for r in reports),
            "set_aside": sum(r.set_aside for r in reports),
        }
        if grants is not None:
            payload["grants"] = grants
        print_json(payload)
        return
    table = _table(title, show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for r in reports:
        for name, value in (r.keys or {}).items():
            table.add_row(f"{r.vendor}: keys {name}", str(value))
        table.add_row(f"{r.vendor}: log records uploaded", str(r.uploaded))
        table.add_row(f"{r.vendor}: log records still pending", str(r.pending))
        if r.set_aside:
            table.add_row(
                f"[red]{r.vendor}: records the cloud refused[/] (see `blelock logs`)",
                str(r.set_aside),
            )
    for name, value in (grants or {}).items():
        if name == "problems":
            for problem in value:
                table.add_row(f"[red]grants: {_escape(problem)}[/]", "")
        else:
            table.add_row(f"grants: {name.replace('_', ' ')}", str(value))
    _console().print(table)


def show_rows(title: str, rows: Sequence[dict[str, Any]], *, as_json: bool) -> None:
    """A list of flat records: JSON as they are, or a table with their keys as columns."""
    if as_json:
        print_json(list(rows))
        return
    table = _table(title)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column.replace("_", " "), no_wrap=column.endswith("id"))
    for row in rows:
        table.add_row(*(_escape("-" if row[c] is None else str(row[c])) for c in columns))
    _console().print(table)


def show_package(package: DfuPackage, *, as_json: bool) -> None:
    """Every image as ``nrfutil pkg display`` shows it, and whether blelock would send it."""
    images = [image.describe() for image in package.images]
    facts: dict[str, Any] = {
        "package": package.source,
        "images": images,
        "sendable": package.refusal is None,
        "refusal": package.refusal,
    }
    if package.refusal is None:  # the one application image, as before
        update, init = package.update, package.update.init
        facts |= {
            "hardware": update.hardware,
            "version": update.version,
            "firmware_type": "application",
            "image_bytes": update.size,
            "image_sha256": update.sha256,
            "image_crc32": f"{update.crc32:08x}",
            "signed": init.signed,
            "files": [update.dat_file, update.bin_file],
        }
    if as_json:
        print_json(facts)
        return
    console = _console()
    for number, image in enumerate(images):
        title = f"{_escape(package.source)}: image #{number} of {len(images)}"
        table = _table(title, show_header=False)
        table.add_column("what")
        table.add_column("value", overflow="fold")
        for name, value in image.items():
            if name == "metadata" and not value:
                continue
            table.add_row(name.replace("_", " "), _escape(_shown(name, value)))
        console.print(table)
    if package.refusal is not None:
        console.print(f"not sendable by blelock: {_escape(package.refusal)}")


def _shown(name: str, value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(repr(item) if item == "" else str(item) for item in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{key} {item}" for key, item in value.items())
    if name in ("fw_version", "hw_version") and isinstance(value, int):
        return f"0x{value:08X} ({value})"  # as nrfutil pkg display shows them
    return "none" if value is None else str(value)
