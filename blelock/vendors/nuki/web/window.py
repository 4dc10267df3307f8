"""When an authorization may open: the Web API's five time fields as one value.

The Web API mixes two clocks (Nuki staff, research §B.3): ``allowedFromDate`` /
``allowedUntilDate`` are UTC instants bounding the whole grant; ``allowedWeekDays`` and
``allowedFromTime`` / ``allowedUntilTime`` (minutes after midnight) restrict each day inside it
in the **lock's own local time**. :class:`AccessWindow` keeps them apart the same way: aware
datetimes for the dates, wall-clock times for the day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from blelock.errors import UsageError
from blelock.vendors.nuki.web.rules import WEEKDAY_BITS, weekday_mask

__all__ = ["TIME_FIELDS", "AccessWindow", "api_date"]

TIME_FIELDS = (
    "allowedFromDate",
    "allowedUntilDate",
    "allowedWeekDays",
    "allowedFromTime",
    "allowedUntilTime",
)
"""Sent together on every write: an update that leaves them out clears them (research §D)."""

_ALL_DAYS = 127


def api_date(value: dt.datetime) -> str:
    """The API's date form, ``2026-03-01T09:00:00.000Z`` (UTC, milliseconds)."""
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class AccessWindow:
    """Empty (the default) means "at any time"."""

    from_date: dt.datetime | None = None
    """UTC instant the grant starts (aware)."""
    until_date: dt.datetime | None = None
    """UTC instant the grant ends (aware)."""
    weekdays: int | None = None
    """Bitmask, 64 = Monday … 1 = Sunday; None: every day."""
    from_time: dt.time | None = None
    """Lock-local wall-clock time each allowed day opens."""
    until_time: dt.time | None = None
    """Lock-local wall-clock time each allowed day closes."""

    @property
    def restricted(self) -> bool:
        return any(
            value is not None
            for value in (
                self.from_date,
                self.until_date,
                self.weekdays,
                self.from_time,
                self.until_time,
            )
        )

    def checked(self) -> AccessWindow:
        """This window, or a UsageError naming what the lock could not keep."""
        for name in ("from_date", "until_date"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise UsageError(
                    f"the window's {name.replace('_', ' ')} has no time zone",
                    hint="give dates with their offset (…Z or +01:00): the Web API takes UTC",
                )
        if self.from_date and self.until_date and self.until_date <= self.from_date:
            raise UsageError("the window ends before it starts", hint="check --from / --until")
        if self.weekdays is not None and not 1 <= self.weekdays <= _ALL_DAYS:
            raise UsageError(
                f"weekday mask {self.weekdays} is not 1..127", hint="name at least one day"
            )
        if (self.from_time is None) != (self.until_time is None):
            raise UsageError(
                "a daily window needs both its start and its end time", hint="e.g. 09:00-17:00"
            )
        if self.from_time is not None and self.until_time is not None:
            for moment in (self.from_time, self.until_time):
                if moment.second or moment.microsecond or moment.tzinfo is not None:
                    raise UsageError(
                        f"daily time {moment.isoformat()} must be whole minutes, lock-local",
                        hint="e.g. 09:00; the lock applies it in its own time zone",
                    )
            if self.until_time <= self.from_time:
                raise UsageError(
                    "a daily window ends after it starts "
                    f"({self.from_time:%H:%M}-{self.until_time:%H:%M}); "
                    "the lock has no overnight windows",
                    hint="split it into two codes, or shift it",
                )
        return self

    def starting(self, now: dt.datetime) -> AccessWindow:
        """With a start date when it restricts anything: the Web API only applies a
        restriction to an authorization that has ``allowedFromDate`` (Nuki staff)."""
        if not self.restricted or self.from_date is not None:
            return self
        return replace(self, from_date=now.astimezone(dt.UTC).replace(microsecond=0))

    # --- the wire form ----------------------------------------------------------------------

    def to_api(self) -> dict[str, Any]:
        """All five fields, null where unset (never left out)."""
        return {
            "allowedFromDate": api_date(self.from_date) if self.from_date else None,
            "allowedUntilDate": api_date(self.until_date) if self.until_date else None,
            "allowedWeekDays": self.weekdays,
            "allowedFromTime": _minutes(self.from_time),
            "allowedUntilTime": _minutes(self.until_time),
        }

    @classmethod
    def from_api(
        cls,
        *,
        from_date: dt.datetime | None,
        until_date: dt.datetime | None,
        weekdays: int | None,
        from_minutes: int | None,
        until_minutes: int | None,
    ) -> AccessWindow:
        """As the API reads back; a zero weekday mask or a 0-0 day window means unrestricted
        (how the API shows "not set" in its examples)."""
        if not from_minutes and not until_minutes:
            from_minutes = until_minutes = None
        return cls(
            from_date=from_date,
            until_date=until_date,
            weekdays=weekdays or None,
            from_time=_clock_time(from_minutes),
            until_time=_clock_time(until_minutes),
        )

    def describe(self) -> str:
        """``2026-03-01 08:00Z → 2026-03-31 22:00Z, mon,tue 09:00-17:00 lock-local``."""
        if not self.restricted:
            return "any time"
        parts = []
        if self.from_date or self.until_date:
            start = f"{self.from_date.astimezone(dt.UTC):%Y-%m-%d %H:%MZ}" if self.from_date else ""
            end = f"{self.until_date.astimezone(dt.UTC):%Y-%m-%d %H:%MZ}" if self.until_date else ""
            parts.append(f"{start} → {end}".strip())
        if self.weekdays is not None:
            parts.append(",".join(day for day, bit in WEEKDAY_BITS.items() if self.weekdays & bit))
        if self.from_time and self.until_time:
            parts.append(f"{self.from_time:%H:%M}-{self.until_time:%H:%M} lock-local")
        return ", ".join(parts)

    @classmethod
    def parse(
        cls,
        *,
        from_date: str | None = None,
        until_date: str | None = None,
        days: str | None = None,
        daily: str | None = None,
    ) -> AccessWindow:
        """From command-line text: ISO dates with offsets, ``mon-fri,sun``, ``09:00-17:00``."""
        start, _, end = (daily or "").partition("-")
        if daily is not None and not end:
            raise UsageError(f"daily window {daily!r} is not HH:MM-HH:MM", hint="e.g. 09:00-17:00")
        return cls(
            from_date=_instant(from_date, "--from"),
            until_date=_instant(until_date, "--until"),
            weekdays=weekday_mask(days.split(",")) if days else None,
            from_time=_wall_time(start) if daily else None,
            until_time=_wall_time(end) if daily else None,
        ).checked()


def _minutes(value: dt.time | None) -> int | None:
    return None if value is None else value.hour * 60 + value.minute


def _clock_time(minutes: int | None) -> dt.time | None:
    if minutes is None:
        return None
    return dt.time(min(minutes, 1439) // 60, min(minutes, 1439) % 60)


def _instant(text: str | None, option: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not an ISO date-time", hint="e.g. 2026-03-01T09:00:00Z"
        ) from None
    if value.utcoffset() is None:
        raise UsageError(
            f"{option} {text!r} has no time zone",
            hint="add Z or an offset such as +01:00 (the Web API's dates are UTC)",
        )
    return value


def _wall_time(text: str) -> dt.time:
    try:
        value = dt.time.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{text!r} is not a time of day", hint="use HH:MM, e.g. 09:00") from None
    return value
