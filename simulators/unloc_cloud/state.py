"""The simulated Unloc's own model: projects, locks with their time zones, client credentials,
keys and the jobs that create them. Pure: no HTTP (``app.py`` serves it), no sleeping.

Time is read from an injectable clock (``now``), and everything that depends on it is computed
when asked: a job is ``pending``, then ``inProgress`` for its delay, then finished; a key is
``creating`` while its job runs, then ``scheduled`` / ``active`` / ``inactive`` / ``expired`` by
its start, end and weekly window in the lock's time zone. So a test moves its clock and reads the
state, and the cloud process of ``blelock-sim`` runs on the wall clock plus an offset that
``/_sim/clock`` sets.

What the simulator knows of Unloc comes from the vendor document (managing keys) and
shared/research §C: job statuses, key states and the live API's quirks (null start refused,
revoking an expired key 409, revoked keys gone from listings) as DriftIQ reported them.
Shapes the documents leave open (a lock's fields, the bulk-revoke answer, a job's result for a
batch where one key failed) are this simulator's choice and say so where they are made.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "MAX_LIMIT",
    "WEEKDAYS",
    "Invalid",
    "JobOutcome",
    "SimJob",
    "SimKey",
    "SimLock",
    "UnlocFaults",
    "UnlocState",
    "WallClock",
]

MAX_LIMIT = 2500
"""GET keys: ``limit`` defaults to and is at most 2500."""
TOKEN_LIFETIME = dt.timedelta(seconds=3600)
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SCOPES = frozenset({"project.admin", "organization.admin", "project.installer"})


class Invalid(Exception):
    """A request refused with 400 and ``invalidParams`` (name → reason)."""

    def __init__(self, params: Mapping[str, str], detail: str = "validation failed") -> None:
        super().__init__(detail)
        self.params = dict(params)
        self.detail = detail


class Conflict(Exception):
    """409."""


class Gone(Exception):
    """404."""


class JobOutcome(enum.Enum):
    SUCCEED = "succeed"
    FAILED_JOB = "failedJob"
    FAILED_VALIDATION = "failedValidation"
    TIMEOUT = "timeout"
    ONE_KEY_ERROR = "oneKeyError"
    """The job succeeds, but the vendor lock system could not be reached for one key: it is in
    ``error`` and listed in ``failedKeys`` (the simulator's reading; the docs do not say)."""


@dataclass
class UnlocFaults:
    """Fault switches: the next ``count`` jobs end so (-1: every job from now on)."""

    outcome: JobOutcome = JobOutcome.SUCCEED
    count: int = 0

    def take(self) -> JobOutcome:
        if self.count == 0:
            return JobOutcome.SUCCEED
        if self.count > 0:
            self.count -= 1
        return self.outcome


class WallClock:
    """The wall clock plus an offset that ``/_sim/clock`` moves (the cloud process's clock)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def set(self, at: dt.datetime) -> None:
        self.offset = at - dt.datetime.now(dt.UTC)


@dataclass
class SimLock:
    id: str
    name: str
    timezone: str
    connection_id: str
    zone: dt.tzinfo = field(repr=False, compare=False, default=dt.UTC)
    """Loaded once, with the lock (reading the zone file blocks: never in a request)."""
    removed_at_vendor: bool = False
    """Fault switch: the vendor no longer has it; the next connection refresh offboards it."""


@dataclass
class SimConnection:
    id: str
    vendor: str
    state: str = "connected"


@dataclass(frozen=True, slots=True)
class Span:
    weekday: str
    start: int
    """Minutes after the local midnight."""
    end: int


@dataclass
class SimKey:
    id: str
    lock_id: str
    app_user_id: str
    start: dt.datetime | None
    end: dt.datetime | None
    spans: tuple[Span, ...] | None
    created: dt.datetime
    job_id: str
    metadata: Any = None
    failed: bool = False
    revoked_at: dt.datetime | None = None


@dataclass
class SimJob:
    id: str
    type: str
    created: dt.datetime
    done_at: dt.datetime
    outcome: JobOutcome
    key_ids: list[str] = field(default_factory=list)
    connection_id: str | None = None
    settled: bool = False


def _parse_instant(value: object, name: str, problems: dict[str, str]) -> dt.datetime | None:
    if value is None:
        # The live API refuses null although the docs allow it (DriftIQ, 05.09.2026).
        problems[name] = "must be of type string"
        return None
    if not isinstance(value, str):
        problems[name] = "must be of type string"
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        problems[name] = "must be an ISO 8601 date-time"
        return None
    if moment.tzinfo is None:
        problems[name] = "must be an ISO 8601 date-time with a time zone"
        return None
    return moment.astimezone(dt.UTC)


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _parse_spans(value: object, name: str, problems: dict[str, str]) -> tuple[Span, ...] | None:
    if not isinstance(value, dict):
        problems[name] = "must be an object"
        return None
    raw = value.get("timeSpans", value.get("timespans"))
    if not isinstance(raw, list) or not raw:
        problems[f"{name}.timeSpans"] = "must be a non-empty array"
        return None
    spans: list[Span] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"{name}.timeSpans[{index}]"
        if not isinstance(item, dict):
            problems[where] = "must be an object"
            continue
        weekday = item.get("weekday")
        if weekday not in WEEKDAYS:
            problems[f"{where}.weekday"] = f"must be one of {', '.join(WEEKDAYS)}"
            continue
        if weekday in seen:
            problems[f"{where}.weekday"] = "only one time span per weekday is supported"
            continue
        seen.add(weekday)
        fields = {
            "startHour": (0, 24),
            "endHour": (0, 24),
            "startMinute": (0, 59),
            "endMinute": (0, 59),
        }
        bad = [f for f, (low, high) in fields.items() if not _int_in(item.get(f), low, high)]
        for f in bad:
            low, high = fields[f]
            problems[f"{where}.{f}"] = f"must be an integer {low}-{high}"
        if bad:
            continue
        start = item["startHour"] * 60 + item["startMinute"]
        end = item["endHour"] * 60 + item["endMinute"]
        if start >= 24 * 60 or end > 24 * 60:
            problems[where] = "must lie within the day (24 only as 24:00)"
        elif start >= end:
            problems[where] = "must start before it ends"
        else:
            spans.append(Span(weekday, start, end))
    return tuple(spans)


@dataclass
class UnlocState:
    """One simulated Unloc: its projects' locks, credentials, keys and jobs."""

    now: Callable[[], dt.datetime]
    project_id: str
    client_id: str
    client_secret: str
    job_delay: dt.timedelta = dt.timedelta(seconds=1)
    pending_for: dt.timedelta = dt.timedelta()
    locks: dict[str, SimLock] = field(default_factory=dict)
    connections: dict[str, SimConnection] = field(default_factory=dict)
    keys: dict[str, SimKey] = field(default_factory=dict)
    jobs: dict[str, SimJob] = field(default_factory=dict)
    tokens: dict[str, dt.datetime] = field(default_factory=dict)
    faults: UnlocFaults = field(default_factory=UnlocFaults)
    token_requests: int = 0
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    """API requests by handler (the token route counts in ``token_requests``)."""
    _running: dict[str, SimJob] = field(default_factory=dict, repr=False)
    """Jobs not settled yet: what :meth:`settle` looks at (every read calls it)."""

    @classmethod
    def create(cls, now: Callable[[], dt.datetime], **options: Any) -> UnlocState:
        return cls(
            now=now,
            project_id=str(uuid.uuid4()),
            client_id=f"sim-unloc-{secrets.token_hex(6)}",
            client_secret=secrets.token_urlsafe(24),
            **options,
        )

    def add_connection(self, vendor: str = "danalock") -> SimConnection:
        connection = SimConnection(str(uuid.uuid4()), vendor)
        self.connections[connection.id] = connection
        return connection

    def add_lock(self, name: str, timezone: str, connection_id: str | None = None) -> SimLock:
        zone = ZoneInfo(timezone)  # a zone the simulator cannot read is a bug in the world
        connection = connection_id or next(iter(self.connections), None)
        if connection is None:
            connection = self.add_connection().id
        lock = SimLock(str(uuid.uuid1()), name, timezone, connection, zone)
        self.locks[lock.id] = lock
        return lock

    # --- tokens -------------------------------------------------------------------------

    def issue_token(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The client-credentials grant; ValueError(description) when refused (401)."""
        self.token_requests += 1
        if body.get("grant_type") != "client_credentials":
            raise Invalid({"grant_type": "must be client_credentials"})
        given_id, given_secret = body.get("client_id"), body.get("client_secret")
        if not (isinstance(given_id, str) and isinstance(given_secret, str)) or not (
            secrets.compare_digest(given_id, self.client_id)
            and secrets.compare_digest(given_secret, self.client_secret)
        ):
            raise PermissionError("invalid client credentials")
        scope = body.get("scope")
        scopes = scope.split() if isinstance(scope, str) else scope
        if not isinstance(scopes, list) or not scopes or not set(scopes) <= _SCOPES:
            raise Invalid({"scope": f"must be among {', '.join(sorted(_SCOPES))}"})
        if body.get("project_id") not in (None, self.project_id):
            raise PermissionError("the credentials do not reach that project")
        token = secrets.token_urlsafe(32)
        self.tokens[token] = self.now() + TOKEN_LIFETIME
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(TOKEN_LIFETIME.total_seconds()),
            "scope": scopes,
        }

    def token_valid(self, token: str) -> bool:
        expires = self.tokens.get(token)
        return expires is not None and self.now() < expires

    def forget_tokens(self) -> None:
        """Fault switch: every token stops working (as after a credentials rotation)."""
        self.tokens.clear()

    # --- jobs ---------------------------------------------------------------------------

    def _new_job(self, kind: str) -> SimJob:
        created = self.now()
        job = SimJob(str(uuid.uuid4()), kind, created, created + self.job_delay, self.faults.take())
        self.jobs[job.id] = job
        self._running[job.id] = job
        return job

    def settle(self) -> None:
        """Apply what finished jobs did (computed from the clock when anything is read)."""
        now = self.now()
        for job in [job for job in self._running.values() if now >= job.done_at]:
            del self._running[job.id]
            job.settled = True
            if job.type == "createKeys":
                self._settle_keys(job)
            elif job.type == "refreshLockConnection" and job.outcome is JobOutcome.SUCCEED:
                self._offboard(job)

    def _settle_keys(self, job: SimJob) -> None:
        outcome = job.outcome
        for index, key_id in enumerate(job.key_ids):
            key = self.keys[key_id]
            if outcome is not JobOutcome.SUCCEED and not (
                outcome is JobOutcome.ONE_KEY_ERROR and index > 0
            ):
                key.failed = True

    def _offboard(self, job: SimJob) -> None:
        """Locks removed at the vendor are offboarded and all their keys revoked."""
        for lock in [x for x in self.locks.values() if x.connection_id == job.connection_id]:
            if lock.removed_at_vendor:
                for key in self.keys.values():
                    if key.lock_id == lock.id and key.revoked_at is None:
                        key.revoked_at = job.done_at
                del self.locks[lock.id]

    def job_status(self, job: SimJob) -> str:
        now = self.now()
        if now < job.created + self.pending_for:
            return "pending"
        if now < job.done_at:
            return "inProgress"
        if job.outcome is JobOutcome.ONE_KEY_ERROR:
            return "succeeded"
        return "succeeded" if job.outcome is JobOutcome.SUCCEED else job.outcome.value

    def job_view(self, job: SimJob) -> dict[str, Any]:
        self.settle()
        status = self.job_status(job)
        view: dict[str, Any] = {
            "id": job.id,
            "type": job.type,
            "status": status,
            "created": _text(job.created),
        }
        if job.type == "createKeys":
            keys = [self.keys[k] for k in job.key_ids]
            running = status in ("pending", "inProgress")
            view["resultData"] = {
                "creatingKeys": [{"id": k.id} for k in keys] if running else [],
                "createdKeys": [] if running else [{"id": k.id} for k in keys if not k.failed],
                "failedKeys": []
                if running
                else [
                    {"id": k.id, "reason": "the vendor lock system could not be reached"}
                    for k in keys
                    if k.failed
                ],
            }
        if status in ("failedJob", "failedValidation", "timeout"):
            view["failureReason"] = {
                "failedJob": "the vendor lock system answered with an error",
                "failedValidation": "the vendor lock system refused the keys",
                "timeout": "the vendor lock system did not answer in time",
            }[status]
        return view

    # --- keys ---------------------------------------------------------------------------

    def create_keys(self, body: object) -> SimJob:
        """Validate the whole batch first: one invalid key refuses it whole (400, no job)."""
        items = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise Invalid({"keys": "must be a non-empty array"})
        problems: dict[str, str] = {}
        parsed = [self._parse_key(item, f"keys[{i}]", problems) for i, item in enumerate(items)]
        if problems:
            raise Invalid(problems, "one or more keys are invalid; no job was started")
        job = self._new_job("createKeys")
        for values in parsed:
            assert values is not None
            key = SimKey(id=str(uuid.uuid4()), created=job.created, job_id=job.id, **values)
            self.keys[key.id] = key
            job.key_ids.append(key.id)
        return job

    def _parse_key(self, item: object, where: str, problems: dict[str, str]) -> dict[str, Any]:
        if not isinstance(item, dict):
            problems[where] = "must be an object"
            return {}
        before = len(problems)
        lock_id = item.get("lockId")
        if not isinstance(lock_id, str) or lock_id not in self.locks:
            problems[f"{where}.lockId"] = "no such lock in this project"
        user = item.get("appUserId")
        if not isinstance(user, str) or not _E164.fullmatch(user):
            problems[f"{where}.appUserId"] = "must be a phone number in E.164 format"
        start = (
            _parse_instant(item["start"], f"{where}.start", problems) if "start" in item else None
        )
        end = _parse_instant(item["end"], f"{where}.end", problems) if "end" in item else None
        duration = item.get("durationMinutes")
        if "durationMinutes" in item:
            if "end" in item:
                problems[f"{where}.durationMinutes"] = "give end or durationMinutes, not both"
            elif not (
                isinstance(duration, int) and not isinstance(duration, bool) and duration > 0
            ):
                problems[f"{where}.durationMinutes"] = "must be a positive integer"
            else:
                end = (start or self.now()) + dt.timedelta(minutes=duration)
        if end is not None and end <= (start or self.now()):
            problems[f"{where}.end"] = (
                "must be after start"
                if start
                else "must be after start (now, when start is left out)"
            )
        spans = (
            _parse_spans(item["recurrence"], f"{where}.recurrence", problems)
            if ("recurrence" in item and item["recurrence"] is not None)
            else None
        )
        if len(problems) > before:
            return {}
        return {
            "lock_id": lock_id,
            "app_user_id": user,
            "start": start,
            "end": end,
            "spans": spans,
            "metadata": item.get("metadata"),
        }

    def key_state(self, key: SimKey) -> str:
        self.settle()
        job = self.jobs[key.job_id]
        now = self.now()
        if key.revoked_at is not None:
            return "revoked"
        if not job.settled:
            return "creating"
        if key.failed:
            return "error"
        if key.end is not None and now >= key.end:
            return "expired"
        if key.start is not None and now < key.start:
            return "scheduled"
        if key.spans is not None and not self._within(key, now):
            return "inactive"
        return "active"

    def _within(self, key: SimKey, now: dt.datetime) -> bool:
        lock = self.locks.get(key.lock_id)
        local = now.astimezone(lock.zone if lock is not None else dt.UTC)
        weekday = WEEKDAYS[
            (local.weekday() + 1) % 7
        ]  # Python's Monday is 0, Unloc's week starts sun
        minute = local.hour * 60 + local.minute
        return any(s.weekday == weekday and s.start <= minute < s.end for s in key.spans or ())

    def key_view(self, key: SimKey) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": key.id,
            "lockId": key.lock_id,
            "appUser": {"id": key.app_user_id, "name": None},
            "created": _text(key.created),
            "state": self.key_state(key),
        }
        if key.start is not None:
            view["start"] = _text(key.start)
        if key.end is not None:
            view["end"] = _text(key.end)
        if key.spans is not None:
            # The docs' own examples spell it both ways; this simulator answers with the
            # lower-case one, so a client must read both.
            view["recurrence"] = {"timespans": [_span_view(s) for s in key.spans]}
        if key.metadata is not None:
            view["metadata"] = key.metadata
        return view

    def list_keys(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        problems: dict[str, str] = {}
        limit_text = query.get("limit", str(MAX_LIMIT))
        limit = int(limit_text) if limit_text.isdigit() else -1
        if not 1 <= limit <= MAX_LIMIT:
            problems["limit"] = f"must be an integer 1-{MAX_LIMIT}"
        excluded = {s for s in query.get("excludeStates", "").split(",") if s}
        if problems:
            raise Invalid(problems)
        after = query.get("startAfterId")
        chosen: list[dict[str, Any]] = []
        for key in sorted(self.keys.values(), key=lambda k: k.id):
            if after is not None and key.id <= after:
                continue
            if key.revoked_at is not None:
                continue  # revoked keys disappear from listings (DriftIQ)
            if "appUserId" in query and key.app_user_id != query["appUserId"]:
                continue
            if "lockId" in query and key.lock_id != query["lockId"]:
                continue
            view = self.key_view(key)
            if view["state"] in excluded:
                continue
            chosen.append(view)
            if len(chosen) == limit:
                break
        return chosen

    def revoke(self, key_id: str) -> None:
        key = self.keys.get(key_id)
        if key is None or key.revoked_at is not None:
            raise Gone(f"no key {key_id}")
        if self.key_state(key) == "expired":
            raise Conflict("May not revoke expired keys")
        key.revoked_at = self.now()

    def revoke_matching(self, app_user_id: str | None, lock_id: str | None) -> list[str]:
        if app_user_id is None and lock_id is None:
            raise Invalid({"appUserId": "give appUserId or lockId (or both)"})
        revoked = []
        for key in self.matching(app_user_id, lock_id):
            if self.key_state(key) in ("expired", "revoked"):
                continue
            key.revoked_at = self.now()
            revoked.append(key.id)
        return revoked

    def matching(self, app_user_id: str | None, lock_id: str | None) -> Iterable[SimKey]:
        return [
            k
            for k in self.keys.values()
            if (app_user_id is None or k.app_user_id == app_user_id)
            and (lock_id is None or k.lock_id == lock_id)
        ]

    # --- lock connections ---------------------------------------------------------------

    def refresh_connection(self, connection_id: str) -> SimJob:
        connection = self.connections.get(connection_id)
        if connection is None:
            raise Gone(f"no lock connection {connection_id}")
        if connection.state not in ("connected", "error"):
            raise Conflict(f"the lock connection is {connection.state}, not connected or error")
        job = self._new_job("refreshLockConnection")
        job.connection_id = connection_id
        return job

    def lock_view(self, lock: SimLock) -> dict[str, Any]:
        return {
            "id": lock.id,
            "name": lock.name,
            "timezone": lock.timezone,
            "lockConnectionId": lock.connection_id,
        }


def _span_view(span: Span) -> dict[str, Any]:
    return {
        "weekday": span.weekday,
        "startHour": span.start // 60,
        "startMinute": span.start % 60,
        "endHour": span.end // 60,
        "endMinute": span.end % 60,
    }


def _text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
