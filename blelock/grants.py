"""Access grants as values: who may open which locks, when, how often — and what a vendor can
express of that. Plain frozen dataclasses and pure time arithmetic, no I/O.

Instants are UTC; weekly windows are wall-clock times in a named IANA zone (``zoneinfo``, with
the ``tzdata`` package where the platform has no database), so a window keeps its local hours
across a daylight-saving change. A window lies within one day (``end`` may be 24:00); one that
would cross midnight is two windows.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from blelock.errors import UsageError

__all__ = [
    "DAY_NAMES",
    "AccessConstraints",
    "Code",
    "CodeRules",
    "Grant",
    "GrantStatus",
    "Holder",
    "Item",
    "LockRef",
    "Schedule",
    "Target",
    "WeeklyWindow",
    "parse_instant",
    "parse_window",
    "zone",
    "zone_known",
]

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
"""Index = ``date.weekday()``."""
MINUTES_PER_DAY = 24 * 60


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or a UsageError naming it. The first use of a zone reads the
    zone database (file I/O: in async code, call it once in a thread, see :func:`zone_known`);
    after that it is held here and never read again."""
    found = _ZONES.get(name)
    if found is not None:
        return found
    try:
        loaded = _ZONES[name] = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {name!r}",
            hint="name an IANA zone, e.g. Europe/Oslo or America/New_York",
        ) from None
    return loaded


_ZONES: dict[str, ZoneInfo] = {}


def zone_known(name: str) -> bool:
    """Whether :func:`zone` has ``name`` at hand (no file to read)."""
    return name in _ZONES


def parse_instant(text: str, *, default_zone: str = "UTC") -> dt.datetime:
    """An ISO-8601 instant; one written without an offset is read in ``default_zone``."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is not a date and time",
            hint="write it as ISO 8601, e.g. 2026-03-28T09:12 or 2026-03-28T08:12:00Z",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(default_zone))
    return moment.astimezone(dt.UTC)


def _minutes(text: str) -> int:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not HH:MM")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _days(text: str) -> frozenset[int]:
    names = {name.lower(): index for index, name in enumerate(DAY_NAMES)}
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = (piece.strip().lower()[:3] for piece in part.partition("-"))
        if first not in names or (last and last not in names):
            raise ValueError(f"{part.strip()!r} is not a day or a range of days (Mon-Sat)")
        start, stop = names[first], names[last or first]
        index = start
        while True:  # a range may wrap past Sunday (Sat-Mon)
            days.add(index)
            if index == stop:
                break
            index = (index + 1) % 7
    return frozenset(days)


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    """Opening hours on some days of the week, lock-local: ``start`` ≤ t < ``end`` (minutes
    after midnight, end up to 1440)."""

    days: frozenset[int]
    start: int
    end: int

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise UsageError("a window needs at least one day of the week")
        if not 0 <= self.start < self.end <= MINUTES_PER_DAY:
            raise UsageError(
                f"a window must start before it ends within one day ({self.text()})",
                hint="split a window across midnight into two, e.g. Fri 22:00-24:00 and "
                "Sat 00:00-02:00",
            )

    def covers(self, weekday: int, minute: int) -> bool:
        return weekday in self.days and self.start <= minute < self.end

    def text(self) -> str:
        return f"{days_text(self.days)} {_hhmm(self.start)}-{_hhmm(self.end)}"

    def as_json(self) -> dict[str, object]:
        return {"days": sorted(self.days), "start": self.start, "end": self.end}

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> WeeklyWindow:
        days = value["days"]
        assert isinstance(days, list)
        return cls(
            frozenset(int(d) for d in days), int(str(value["start"])), int(str(value["end"]))
        )


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def days_text(days: Iterable[int]) -> str:
    """``Mon-Sat``, ``Mon,Wed,Fri``."""
    ordered = sorted(set(days))
    runs: list[list[int]] = []
    for day in ordered:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        DAY_NAMES[run[0]] if len(run) == 1 else f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}"
        for run in runs
    )


def parse_window(text: str) -> WeeklyWindow:
    """``Mon-Sat 06:00-22:00``, ``Mon,Wed 08:00-12:00``, ``Sun 10:00-24:00``."""
    days_part, _, hours = text.strip().partition(" ")
    start, sep, end = hours.strip().partition("-")
    try:
        if not sep:
            raise ValueError("no hours")
        return WeeklyWindow(_days(days_part), _minutes(start), _minutes(end))
    except ValueError as exc:
        raise UsageError(
            f"window {text!r}: {exc}", hint="write it as DAYS HH:MM-HH:MM, e.g. Mon-Sat 06:00-22:00"
        ) from None


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a grant opens: from ``starts_at`` until ``ends_at`` (None: until revoked), within
    the weekly windows (none: at any hour), read in ``timezone``."""

    starts_at: dt.datetime
    ends_at: dt.datetime | None
    windows: tuple[WeeklyWindow, ...] = ()
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.starts_at.tzinfo is None or (self.ends_at and self.ends_at.tzinfo is None):
            raise TypeError("a schedule's instants are aware (UTC)")
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise UsageError(
                f"the grant ends ({self.ends_at.isoformat()}) before it starts "
                f"({self.starts_at.isoformat()})"
            )
        zone(self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)

    def allows(self, moment: dt.datetime) -> bool:
        """Whether the grant lets its holder in at ``moment``."""
        if moment < self.starts_at or (self.ends_at is not None and moment >= self.ends_at):
            return False
        if not self.windows:
            return True
        local = moment.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        return any(window.covers(local.weekday(), minute) for window in self.windows)

    def openings(
        self, span_from: dt.datetime, span_to: dt.datetime
    ) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Each window's occurrence (UTC start, end) that overlaps [span_from, span_to), cut to
        the grant's own start and end, in time order. Without windows: the grant's period."""
        low = max(span_from, self.starts_at)
        high = span_to if self.ends_at is None else min(span_to, self.ends_at)
        if low >= high:
            return
        if not self.windows:
            yield self.starts_at, self.ends_at or dt.datetime.max.replace(tzinfo=dt.UTC)
            return
        tz = self.zone
        day = low.astimezone(tz).date() - dt.timedelta(days=1)
        last = high.astimezone(tz).date() + dt.timedelta(days=1)
        found: list[tuple[dt.datetime, dt.datetime]] = []
        while day <= last:
            for window in self.windows:
                if day.weekday() not in window.days:
                    continue
                start = _local_instant(day, window.start, tz)
                end = _local_instant(day, window.end, tz)
                start, end = max(start, self.starts_at), end
                if self.ends_at is not None:
                    end = min(end, self.ends_at)
                if start < end and start < high and end > low:
                    found.append((start, end))
            day += dt.timedelta(days=1)
        yield from sorted(set(found))

    def as_json(self) -> dict[str, object]:
        return {
            "starts_at": self.starts_at.isoformat(),
            "ends_at": None if self.ends_at is None else self.ends_at.isoformat(),
            "windows": [window.as_json() for window in self.windows],
            "timezone": self.timezone,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> Schedule:
        ends = value.get("ends_at")
        windows = value.get("windows") or []
        assert isinstance(windows, list)
        return cls(
            dt.datetime.fromisoformat(str(value["starts_at"])),
            None if ends is None else dt.datetime.fromisoformat(str(ends)),
            tuple(WeeklyWindow.from_json(w) for w in windows),
            str(value.get("timezone", "UTC")),
        )

    def text(self) -> str:
        until = "until revoked" if self.ends_at is None else f"to {self.ends_at.isoformat()}"
        hours = "; ".join(w.text() for w in self.windows) or "any hour"
        return f"from {self.starts_at.isoformat()} {until}, {hours} ({self.timezone})"


def _local_instant(day: dt.date, minute: int, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of ``minute`` after local midnight on ``day`` (24:00: the next day's
    midnight). A wall time that a spring-forward gap skips is read with the offset before it."""
    if minute >= MINUTES_PER_DAY:
        day, minute = day + dt.timedelta(days=1), minute - MINUTES_PER_DAY
    local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=tz)
    return local.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class LockRef:
    vendor: str
    lock_id: str

    def text(self) -> str:
        return f"{self.vendor}:{self.lock_id}"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who the grant is for: a name people read, the identity each vendor needs (a Nokē
    tracking key, a Keyless user id, …) by the identity's name, and the secret codes a vendor
    opens with (a keypad PIN, a quick click) by theirs — sealed at rest, never shown."""

    name: str
    identities: Mapping[str, str] = field(default_factory=dict)
    codes: Mapping[str, Code] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Code:
    """A secret that opens a lock by itself: kept out of every repr, log line and answer."""

    value: str = field(repr=False)
    tag: str = field(default="", repr=False, compare=False)
    """A keyed digest of the value (:meth:`blelock.store.crypto.DataKey.tag`, under the key the
    codes are sealed under), set by the grant store when it opens the codes. What an item's
    ``native`` may hold in place of the code: the value cannot be brute-forced from it."""

    def __repr__(self) -> str:
        return "Code(**********)"

    def reveal(self) -> str:
        """The one way to the value: for the vendor request that sets it."""
        return self.value

    def keyed(self) -> str:
        """The tag, for an item's ``native`` and ``ref``; an internal error when the code did
        not come through the grant store (never an unkeyed digest in its place)."""
        if not self.tag:
            raise RuntimeError(
                "internal error: a holder's code has no key tag (codes reach the vendors' "
                "items only through the grant store, which tags them)"
            )
        return self.tag


@dataclass(frozen=True, slots=True)
class Grant:
    """What the operator asked for (the desired state)."""

    id: str
    holder: Holder
    locks: tuple[LockRef, ...]
    schedule: Schedule
    uses: int | None = None
    """None: unlimited; 1: one-time; N: that many opens, where a vendor counts them."""
    rounded: bool = False
    """The operator allowed rounding to what each vendor can express (``--round``)."""
    created_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    """When a revocation was asked for (the grant ends then, whatever its schedule said)."""

    def ends(self) -> dt.datetime | None:
        """When access really ends: its schedule's end, or its revocation if earlier."""
        ends, revoked = self.schedule.ends_at, self.revoked_at
        if revoked is None:
            return ends
        return revoked if ends is None else min(ends, revoked)


class GrantStatus(enum.StrEnum):
    PENDING = "pending"
    """Asked for; nothing applied at the vendor yet."""
    APPLYING = "applying"
    SCHEDULED = "scheduled"
    """Applied (or to be applied) and not in force yet."""
    ACTIVE = "active"
    REVOKING = "revoking"
    REVOKED = "revoked"
    """Gone at the vendor: revoked, or its end came."""
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CodeRules:
    """What a vendor accepts as a code (keypad PIN, quick click)."""

    alphabet: str
    lengths: tuple[int, ...]
    forbidden_prefixes: tuple[str, ...] = ()
    unique_per_lock: bool = True

    def problem(self, code: str) -> str | None:
        if len(code) not in self.lengths:
            low, high = min(self.lengths), max(self.lengths)
            span = str(low) if low == high else f"{low} to {high}"
            return f"a code is {span} characters long (this one has {len(code)})"
        if any(ch not in self.alphabet for ch in code):
            return f"a code uses only {' '.join(self.alphabet)}"
        for prefix in self.forbidden_prefixes:
            if code.startswith(prefix):
                return f"a code must not start with {prefix!r}"
        return None


@dataclass(frozen=True, slots=True)
class AccessConstraints:
    """What one vendor can express for one lock (vendor rules as data, shown by
    ``blelock access constraints LOCK`` and checked before a grant is stored)."""

    vendor: str
    lock_id: str
    credential: str
    """What the holder is given (an offline key, a permission, a keypad code, …)."""
    identity: str | None
    """The holder identity the vendor needs (an identity option's name), None for none."""
    enforces_period: bool
    """The vendor itself starts and ends access at the grant's instants; otherwise the
    reconciler issues at the start and revokes at the end."""
    needs_end: bool = False
    weekly_windows: bool = False
    windows_per_day: int | None = None
    """At most this many windows on one weekday (None: any number)."""
    same_hours_every_day: bool = False
    """One from/until for every allowed day (a weekday mask with one pair of times)."""
    latest_end: int = MINUTES_PER_DAY
    """The latest a window may end, minutes after midnight (a vendor without 24:00: 1439)."""
    local_zone: str | None = None
    """The zone the vendor reads window times in (the lock's); None when blelock turns the
    windows into UTC instants itself."""
    uses: tuple[int, int] | None = None
    """The counted uses it can express (lowest, highest); None: it does not count uses."""
    code: CodeRules | None = None
    code_name: str | None = None
    """The holder code (a secret identity's name) the vendor opens with, when it takes one."""
    name_length: int | None = None
    capacity_left: int | None = None
    """How many more grants the lock holds (None: unknown or unbounded)."""
    takes_effect: str = "when applied"
    revocation: str = "at once"
    native: str = ""
    """How blelock writes a grant in the vendor's own form (one line)."""

    def as_json(self) -> dict[str, object]:
        return {
            "vendor": self.vendor,
            "lock_id": self.lock_id,
            "credential": self.credential,
            "identity": self.identity,
            "enforces_period": self.enforces_period,
            "needs_end": self.needs_end,
            "weekly_windows": self.weekly_windows,
            "windows_per_day": self.windows_per_day,
            "same_hours_every_day": self.same_hours_every_day,
            "latest_end": self.latest_end,
            "local_zone": self.local_zone,
            "uses": None if self.uses is None else list(self.uses),
            "code": None
            if self.code is None
            else {
                "alphabet": self.code.alphabet,
                "lengths": list(self.code.lengths),
                "forbidden_prefixes": list(self.code.forbidden_prefixes),
                "unique_per_lock": self.code.unique_per_lock,
            },
            "code_name": self.code_name,
            "name_length": self.name_length,
            "capacity_left": self.capacity_left,
            "takes_effect": self.takes_effect,
            "revocation": self.revocation,
            "native": self.native,
        }


Enforcer = Literal["vendor", "reconciler"]


@dataclass(frozen=True, slots=True)
class Item:
    """One vendor-side object a grant needs on one lock, in the vendor's own form: applied
    when due, removed when its time is over or the grant is revoked.

    ``enforced_by="vendor"``: the vendor itself keeps to ``starts_at``/``ends_at``, so the item
    is applied ahead of its start. ``"reconciler"``: the vendor has no schedule, so the item is
    applied at ``starts_at`` and removed at ``ends_at`` by the reconciler."""

    key: str
    """Stable among the grant's items on this lock (e.g. ``permission@2026-03-30T04:00Z``)."""
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    enforced_by: Enforcer
    native: Mapping[str, object]
    """The vendor's own fields (JSON-ready, no secrets): what is sent and what is matched."""


def as_utc_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


def check_uses(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UsageError(f"uses must be at least 1 (got {value})", hint="or unlimited")
    return value


def ordered_locks(locks: Sequence[LockRef]) -> tuple[LockRef, ...]:
    """Each lock once, in the order given."""
    return tuple(dict.fromkeys(locks))


@dataclass(frozen=True, slots=True)
class Target:
    """One lock of a grant, as its vendor is to be given it: the schedule after any rounding."""

    grant_id: str
    lock: LockRef
    holder: Holder
    schedule: Schedule
    uses: int | None = None
