"""``blelock unloc …``: the project's locks, keys for phones (issue, list, revoke) and the jobs
that make them, with a progress line on stderr while a job runs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape

from blelock.cli.context import moment_option, settings_from
from blelock.cli.render import print_json, show_rows
from blelock.config import Settings
from blelock.errors import UsageError
from blelock.vendors.unloc.access import IssuedKeys, issue_keys
from blelock.vendors.unloc.cloud import JobWait, Revoked, UnlocCloud, job_summary
from blelock.vendors.unloc.models import (
    KEY_STATES,
    MAX_PAGE_LIMIT,
    WEEKDAYS,
    Job,
    Key,
    TimeSpan,
    check_phone,
    new_key,
)

LIST_LIMIT = 10_000
"""Rows a listing shows at most: Unloc pages by 2500, a terminal does not."""
_HOURS = re.compile(r"(?P<days>[a-z,\-]+)\s*=?\s*(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})")


def add_arguments(parser: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    actions = parser.add_subparsers(dest="unloc_command", metavar="ACTION", required=True)
    actions.add_parser("locks", parents=common, help="the project's locks and their time zones")
    refresh = actions.add_parser(
        "refresh",
        parents=common,
        help="refresh a lock connection (a job; locks gone at the "
        "vendor are offboarded and their keys revoked)",
    )
    refresh.add_argument("connection_id", metavar="CONNECTION")
    _wait_options(refresh)
    keys = actions.add_parser("keys", parents=common, help="keys for phones")
    what = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    issue = what.add_parser("issue", parents=common, help="give a phone a key for a lock")
    issue.add_argument("lock", metavar="LOCK", help="the lock's id (see `blelock unloc locks`)")
    issue.add_argument("phone", metavar="PHONE", help="E.164, e.g. +4799887766")
    issue.add_argument("--start", metavar="ISO", help="from (default: now)")
    until = issue.add_mutually_exclusive_group()
    until.add_argument("--end", metavar="ISO", help="until (default: until revoked)")
    until.add_argument("--duration", type=int, metavar="MINUTES", help="for this long")
    issue.add_argument(
        "--hours",
        action="append",
        default=[],
        metavar="DAYS=HH:MM-HH:MM",
        help="weekly opening hours in the lock's time zone, e.g. mon-fri=09:00-17:00 or "
        "sat,sun=10:00-14:00 (repeatable; one period per weekday)",
    )
    _wait_options(issue)
    listing = what.add_parser("list", parents=common, help="the project's keys")
    listing.add_argument("--phone", metavar="PHONE", help="only this phone's")
    listing.add_argument("--lock", metavar="LOCK", help="only this lock's")
    listing.add_argument(
        "--exclude",
        action="append",
        default=[],
        choices=KEY_STATES,
        metavar="STATE",
        help="leave out keys in this state (repeatable)",
    )
    listing.add_argument(
        "--page-size",
        type=int,
        default=MAX_PAGE_LIMIT,
        metavar="N",
        help=f"keys per request (1-{MAX_PAGE_LIMIT})",
    )
    revoke = what.add_parser(
        "revoke", parents=common, help="revoke one key, or every key of a phone and/or a lock"
    )
    revoke.add_argument("key_id", nargs="?", metavar="KEY")
    revoke.add_argument("--phone", metavar="PHONE")
    revoke.add_argument("--lock", metavar="LOCK")
    jobs = actions.add_parser("jobs", parents=common, help="Unloc's jobs")
    job_actions = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    show = job_actions.add_parser("show", parents=common, help="a job's status and result")
    show.add_argument("job_id", metavar="JOB")
    show.add_argument("--wait", action="store_true", help="until it has ended")
    show.add_argument("--timeout", type=float, default=300.0, metavar="S")


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-wait", action="store_true", help="answer with the job at once")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="give up waiting for the job after this long (it goes on at Unloc; default 300)",
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    return asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    action = args.unloc_command
    if action == "keys" and args.keys_command == "issue":
        key = _key_from(args)  # checked before anything is opened or sent
    async with UnlocCloud.from_settings(settings) as cloud:
        if action == "locks":
            rows = [
                {
                    "id": lock.id,
                    "name": lock.name,
                    "timezone": lock.timezone,
                    "connection_id": lock.lock_connection_id,
                }
                for lock in await cloud.locks()
            ]
            show_rows(f"{len(rows)} Unloc lock(s)", rows, as_json=args.json)
            return 0
        if action == "refresh":
            job_id = await cloud.refresh_connection(args.connection_id)
            return await _follow(cloud, job_id, args)
        if action == "jobs":
            if not args.wait:
                return _show_job(await cloud.job(args.job_id), args)
            return await _follow(cloud, args.job_id, args)
        if args.keys_command == "issue":
            if args.no_wait:
                job_id = await cloud.create_keys([key])
                return _show_job(await cloud.job(job_id), args)
            with _progress(enabled=not args.json) as note:
                issued = await issue_keys(
                    cloud, [key], wait=JobWait(args.timeout), on_poll=_poll_note(note)
                )
            return _show_issued(issued, args)
        if args.keys_command == "list":
            return await _list(cloud, args)
        return await _revoke(cloud, args)


def _key_from(args: argparse.Namespace) -> Any:
    spans = [span for text in args.hours for span in _parse_hours(text)]
    fields: dict[str, Any] = {"lockId": args.lock, "appUserId": check_phone(args.phone)}
    if args.start is not None:
        fields["start"] = moment_option(args.start, "--start")
    if args.end is not None:
        fields["end"] = moment_option(args.end, "--end")
    if args.duration is not None:
        fields["durationMinutes"] = args.duration
    if spans:
        fields["recurrence"] = {"timeSpans": spans}
    return new_key(**fields)


def _parse_hours(text: str) -> list[dict[str, Any]]:
    """``mon-fri=09:00-17:00`` → one span per weekday."""
    found = _HOURS.fullmatch(text.strip().lower())
    if found is None:
        raise UsageError(
            f"--hours {text!r} is not DAYS=HH:MM-HH:MM", hint="e.g. mon-fri=09:00-17:00"
        )
    days: list[str] = []
    for part in found["days"].split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise UsageError(f"--hours {text!r}: {part!r} is not a weekday (sun, mon, … sat)")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        days += [WEEKDAYS[i % 7] for i in range(a, b + 1 if b >= a else b + 8)]
    (sh, sm), (eh, em) = (tuple(int(x) for x in found[n].split(":")) for n in ("start", "end"))
    return [
        {"weekday": day, "startHour": sh, "startMinute": sm, "endHour": eh, "endMinute": em}
        for day in days
    ]


@contextlib.contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[str], None]]:
    """One status line on stderr while a job runs."""
    if not enabled:
        yield lambda text: None
        return
    with Console(stderr=True).status("asking Unloc…") as status:
        yield lambda text: status.update(escape(text))


def _poll_note(note: Callable[[str], None]) -> Callable[[Job], None]:
    def polled(job: Job) -> None:
        data = job.result_data
        counts = (
            f" ({len(data.created_keys)} made, {len(data.creating_keys)} in the making)"
            if data
            else ""
        )
        note(f"Unloc job {job.id}: {job.status}{counts}")

    return polled


async def _follow(cloud: UnlocCloud, job_id: str, args: argparse.Namespace) -> int:
    if getattr(args, "no_wait", False):
        return _show_job(await cloud.job(job_id), args)
    with _progress(enabled=not args.json) as note:
        job = await cloud.wait_for_job(job_id, wait=JobWait(args.timeout), on_poll=_poll_note(note))
    return _show_job(job, args)


def _show_job(job: Job, args: argparse.Namespace) -> int:
    facts = job_summary(job)
    data = job.result_data
    facts["failed_keys"] = (
        [{"id": r.id, "reason": r.reason} for r in data.failed_keys] if data else []
    )
    ok = job.status in ("succeeded", "pending", "inProgress") and not facts["failed_keys"]
    if args.json:
        print_json({"ok": ok, **facts})
    else:
        reason = f" ({job.failure_reason})" if job.failure_reason else ""
        print(
            f"Unloc job {job.id}: {job.status}{reason}; {facts['created']} key(s) made, "
            f"{facts['failed']} failed, {facts['creating']} in the making"
        )
        for failed in facts["failed_keys"]:
            print(f"  key {failed['id']} failed: {failed['reason'] or 'no reason given'}")
    return 0 if ok else 1


def _key_row(key: Key) -> dict[str, Any]:
    spans = key.recurrence.time_spans if key.recurrence else ()
    return {
        "id": key.id,
        "lock_id": key.lock_id,
        "phone": key.phone,
        "state": key.state,
        "start": key.start.isoformat() if key.start else None,
        "end": key.end.isoformat() if key.end else None,
        "hours": ", ".join(TimeSpan.text(span) for span in spans) or None,
    }


def _show_issued(issued: IssuedKeys, args: argparse.Namespace) -> int:
    job = issued.job
    ok = job.status == "succeeded" and not issued.failed
    if args.json:
        print_json(
            {
                "ok": ok,
                **job_summary(job),
                "keys": [_key_row(k) for k in issued.keys],
                "failed_keys": [{"id": i, "reason": r} for i, r in issued.failed],
            }
        )
        return 0 if ok else 1
    reason = f" ({job.failure_reason})" if job.failure_reason else ""
    print(f"Unloc job {job.id}: {job.status}{reason}")
    failed = {key_id: why for key_id, why in issued.failed}
    for key in issued.keys:
        why = f": {failed[key.id]}" if key.id in failed else ""
        print(f"  key {key.id} for {key.phone} on lock {key.lock_id}: {key.state}{why}")
    return 0 if ok else 1


async def _list(cloud: UnlocCloud, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    async for key in cloud.list_keys(
        app_user_id=args.phone,
        lock_id=args.lock,
        exclude_states=args.exclude,
        limit=args.page_size,
    ):
        rows.append(_key_row(key))
        if len(rows) >= LIST_LIMIT:
            break
    show_rows(f"{len(rows)} Unloc key(s)", rows, as_json=args.json)
    return 0


_REVOKED_TEXT = {
    Revoked.REVOKED: "revoked",
    Revoked.ALREADY_GONE: "already gone (revoked before, or never there): nothing to do",
    Revoked.EXPIRED: "expired already: Unloc revokes no expired key, and it opens nothing",
}


async def _revoke(cloud: UnlocCloud, args: argparse.Namespace) -> int:
    if args.key_id is not None:
        if args.phone or args.lock:
            raise UsageError("give a KEY, or --phone and/or --lock, not both")
        outcome = await cloud.revoke_key(args.key_id)
        if args.json:
            print_json({"ok": True, "key_id": args.key_id, "outcome": outcome.value})
        else:
            print(f"key {args.key_id}: {_REVOKED_TEXT[outcome]}")
        return 0
    if not (args.phone or args.lock):
        raise UsageError("say what to revoke: a KEY, or --phone and/or --lock")
    count = await cloud.revoke_keys(app_user_id=args.phone, lock_id=args.lock)
    if args.json:
        print_json({"ok": True, "revoked": count})
    else:
        whose = " and ".join(
            x
            for x in (args.phone and f"phone {args.phone}", args.lock and f"lock {args.lock}")
            if x
        )
        print(f"revoked {'the' if count is None else count} key(s) of {whose}")
    return 0
