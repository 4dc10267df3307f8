"""A grant against a vendor's rules: what it can express exactly, what ``--round`` changes (and
says so), and what is refused whatever — vendor rules as data (:class:`AccessConstraints`), one
checker for every vendor.

Rounding never turns a limited grant into a wider one silently: it is allowed only when the
operator asked (``--round``), and each change is shown. Counted uses are never rounded: a
one-time code that became unlimited would be a different grant.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from blelock.errors import UsageError
from blelock.grants import (
    MINUTES_PER_DAY,
    AccessConstraints,
    Grant,
    LockRef,
    Schedule,
    WeeklyWindow,
    as_utc_text,
    days_text,
    zone,
)

__all__ = ["OPEN_ENDED_SPAN", "TargetPlan", "plan_target"]

OPEN_ENDED_SPAN = dt.timedelta(days=366)
"""A vendor that needs an end gets one a year after the start when the grant has none (with
``--round``); ``blelock access grant`` again renews it."""
START_TOLERANCE = dt.timedelta(minutes=1)
"""A grant starting within this of now starts now (the time to type the command)."""


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """One lock of a grant after the vendor's rules: the schedule it gets, what was rounded,
    what is refused, and when it really takes effect and ends."""

    lock: LockRef
    schedule: Schedule
    roundings: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        return not self.roundings

    def as_json(self) -> dict[str, object]:
        return {
            "vendor": self.lock.vendor,
            "lock_id": self.lock.lock_id,
            "schedule": self.schedule.as_json(),
            "roundings": list(self.roundings),
            "refusals": list(self.refusals),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, value: dict[str, object]) -> TargetPlan:
        def texts(name: str) -> tuple[str, ...]:
            items = value.get(name) or []
            assert isinstance(items, list)
            return tuple(str(item) for item in items)

        schedule = value["schedule"]
        assert isinstance(schedule, dict)
        return cls(
            LockRef(str(value["vendor"]), str(value["lock_id"])),
            Schedule.from_json(schedule),
            texts("roundings"),
            texts("refusals"),
            texts("notes"),
        )


def _flag(identity: str) -> str:
    return "--" + identity.replace("_", "-")


def plan_target(
    grant: Grant, lock: LockRef, rules: AccessConstraints, title: str, now: dt.datetime
) -> TargetPlan:
    """``grant`` on ``lock`` as its vendor (``title``) can take it. Roundings are applied to
    the schedule when the grant allows rounding; otherwise each is also a refusal."""
    schedule = grant.schedule
    refusals: list[str] = []
    roundings: list[str] = []

    if rules.identity is not None and not grant.holder.identities.get(rules.identity):
        refusals.append(
            f"{title} needs the holder's {rules.identity.replace('_', ' ')} "
            f"({_flag(rules.identity)})"
        )
    if rules.code_name is not None:
        code = grant.holder.codes.get(rules.code_name)
        if code is None:
            refusals.append(
                f"{title} opens with a {rules.code_name.replace('_', ' ')} "
                f"({_flag(rules.code_name)} -, read from stdin)"
            )
        elif rules.code is not None and (problem := rules.code.problem(code.reveal())):
            refusals.append(f"{title}: {problem}")  # never the code itself
    if rules.capacity_left is not None and rules.capacity_left <= 0:
        refusals.append(f"the lock holds no more {rules.credential}s (capacity used up)")
    if grant.uses is not None:
        if rules.uses is None:
            refusals.append(
                f"{title} {rules.credential}s do not count uses; a grant of {grant.uses} "
                "use(s) is not rounded to unlimited"
            )
        elif not rules.uses[0] <= grant.uses <= rules.uses[1]:
            refusals.append(
                f"{title} counts {rules.uses[0]} to {rules.uses[1]} uses, not {grant.uses}"
            )

    windows = schedule.windows
    if windows and not rules.weekly_windows:
        roundings.append(
            f"{title} has no weekly windows: {'; '.join(w.text() for w in windows)} dropped, "
            "it opens at any hour of the grant's period"
        )
        windows = ()
    if (
        windows
        and rules.local_zone is not None
        and not same_clock(rules.local_zone, schedule.timezone, schedule.starts_at,
                           schedule.ends_at)
    ):  # fmt: skip
        refusals.append(
            f"the lock keeps {rules.local_zone} time and the windows are in {schedule.timezone}; "
            f"give the windows in {rules.local_zone}"
        )
    if windows and rules.windows_per_day is not None:
        merged = _merge_per_day(windows, rules.windows_per_day)
        if merged != windows:
            roundings.append(
                f"{title} takes {rules.windows_per_day} window(s) a day: "
                f"{'; '.join(w.text() for w in windows)} become "
                f"{'; '.join(w.text() for w in merged)}"
            )
            windows = merged
    if windows and rules.same_hours_every_day and len({(w.start, w.end) for w in windows}) > 1:
        one = WeeklyWindow(
            frozenset().union(*(w.days for w in windows)),
            min(w.start for w in windows),
            max(w.end for w in windows),
        )
        roundings.append(
            f"{title} takes one pair of hours for all days: "
            f"{'; '.join(w.text() for w in windows)} become {one.text()}"
        )
        windows = (one,)

    if windows and any(w.end > rules.latest_end for w in windows):
        roundings.append(
            f"{title} days end at {rules.latest_end // 60:02d}:{rules.latest_end % 60:02d}: "
            "windows to 24:00 end then"
        )
        windows = tuple(
            WeeklyWindow(w.days, w.start, min(w.end, rules.latest_end)) for w in windows
        )
    starts, ends = schedule.starts_at, schedule.ends_at
    if rules.needs_end and ends is None:
        ends = starts + OPEN_ENDED_SPAN
        roundings.append(
            f"{title} {rules.credential}s need an end: this one ends {as_utc_text(ends)} "
            "(grant again to renew)"
        )
    if not rules.enforces_period and (starts > now + START_TOLERANCE or ends is not None):
        what = []
        if starts > now + START_TOLERANCE:
            what.append(f"issued at {as_utc_text(starts)}")
        if ends is not None:
            what.append(f"revoked at {as_utc_text(ends)}")
        roundings.append(
            f"{title} {rules.credential}s have no schedule: {' and '.join(what)} by the "
            "reconciler (its first run after each)"
        )

    if roundings and not grant.rounded:
        refusals.extend(f"{text} — only with --round" for text in roundings)
    effective = replace(schedule, ends_at=ends, windows=windows)
    notes = tuple(
        note
        for note in (
            f"takes effect {rules.takes_effect}" if rules.takes_effect else "",
            f"after revocation {rules.revocation}" if rules.revocation else "",
        )
        if note
    )
    return TargetPlan(lock, effective, tuple(roundings), tuple(refusals), notes)


SAME_CLOCK_SPAN = dt.timedelta(days=400)
"""How far an open-ended grant's zones are compared (a year of DST changes and then some)."""


def same_clock(a: str, b: str, starts: dt.datetime, ends: dt.datetime | None) -> bool:
    """Whether two zones show the same wall-clock time throughout [starts, ends] (Oslo and
    Berlin do; Oslo and London do not): checked hour by hour, which no DST rule slips through
    (changes fall on whole hours, or half hours in the same hour as a whole one)."""
    if a == b:
        return True
    try:
        za, zb = zone(a), zone(b)
    except UsageError:
        return False
    moment, last = starts, ends or starts + SAME_CLOCK_SPAN
    while moment <= last:
        if moment.astimezone(za).utcoffset() != moment.astimezone(zb).utcoffset():
            return False
        moment += dt.timedelta(hours=1)
    return True


def _merge_per_day(windows: tuple[WeeklyWindow, ...], per_day: int) -> tuple[WeeklyWindow, ...]:
    """Days with more windows than allowed get one spanning them (earliest start, latest
    end); the others keep theirs."""
    crowded = {day for day in range(7) if sum(1 for w in windows if day in w.days) > per_day}
    if not crowded:
        return windows
    kept: list[WeeklyWindow] = []
    for window in windows:
        days = window.days - crowded
        if days:
            kept.append(WeeklyWindow(days, window.start, window.end))
    spans: dict[tuple[int, int], set[int]] = {}
    for day in sorted(crowded):
        on_day = [w for w in windows if day in w.days]
        span = (min(w.start for w in on_day), max(w.end for w in on_day))
        spans.setdefault(span, set()).add(day)
    kept.extend(WeeklyWindow(frozenset(days), s, e) for (s, e), days in spans.items())
    assert all(0 <= w.start < w.end <= MINUTES_PER_DAY for w in kept)
    return tuple(sorted(kept, key=lambda w: (min(w.days), w.start)))


def describe_days(window: WeeklyWindow) -> str:
    return days_text(window.days)
