"""One checker for every vendor's rules: exact, rounded (and shown), or refused with the reason."""

from __future__ import annotations

import datetime as dt

from blelock.access.rules import plan_target
from blelock.grants import (
    AccessConstraints,
    Grant,
    Holder,
    LockRef,
    Schedule,
    parse_window,
)

NOW = dt.datetime(2026, 3, 27, 8, 12, tzinfo=dt.UTC)
LOCK = LockRef("v", "L1")


def grant(**changes: object) -> Grant:
    values: dict[str, object] = {
        "id": "g1",
        "holder": Holder("Renter 214", {"who": "bob"}),
        "locks": (LOCK,),
        "schedule": Schedule(NOW, NOW + dt.timedelta(days=30), (), "Europe/Oslo"),
    }
    return Grant(**(values | changes))  # type: ignore[arg-type]


NO_SCHEDULE = AccessConstraints("v", "L1", "key", "who", enforces_period=False)
WINDOWS = AccessConstraints(
    "v", "L1", "key", "who", enforces_period=True, weekly_windows=True, windows_per_day=1,
    same_hours_every_day=True, local_zone="Europe/Oslo",
)  # fmt: skip


def test_a_vendor_without_schedules_refuses_an_end_unless_rounding_is_allowed() -> None:
    plan = plan_target(grant(), LOCK, NO_SCHEDULE, "Vee", NOW)
    assert plan.refusals and "only with --round" in plan.refusals[0]
    assert "revoked at 2026-04-26T08:12Z by the reconciler" in plan.refusals[0]
    rounded = plan_target(grant(rounded=True), LOCK, NO_SCHEDULE, "Vee", NOW)
    assert not rounded.refusals
    assert rounded.roundings == (
        "Vee keys have no schedule: revoked at 2026-04-26T08:12Z by the reconciler (its first "
        "run after each)",
    )


def test_an_open_grant_starting_now_is_exact_for_a_vendor_without_schedules() -> None:
    plan = plan_target(grant(schedule=Schedule(NOW, None)), LOCK, NO_SCHEDULE, "Vee", NOW)
    assert plan.exact and not plan.refusals


def test_windows_are_dropped_only_with_round_and_the_drop_is_shown() -> None:
    windowed = Schedule(NOW, None, (parse_window("Mon-Sat 06:00-22:00"),), "Europe/Oslo")
    refused = plan_target(grant(schedule=windowed), LOCK, NO_SCHEDULE, "Vee", NOW)
    assert any("no weekly windows" in why for why in refused.refusals)
    rounded = plan_target(grant(schedule=windowed, rounded=True), LOCK, NO_SCHEDULE, "Vee", NOW)
    assert rounded.schedule.windows == ()
    assert "Mon-Sat 06:00-22:00 dropped" in rounded.roundings[0]


def test_two_windows_a_day_become_one_where_a_vendor_takes_one() -> None:
    windowed = Schedule(
        NOW, None,
        (parse_window("Mon-Fri 06:00-12:00"), parse_window("Mon-Fri 14:00-22:00")),
        "Europe/Oslo",
    )  # fmt: skip
    plan = plan_target(grant(schedule=windowed, rounded=True), LOCK, WINDOWS, "Vee", NOW)
    assert plan.schedule.windows == (parse_window("Mon-Fri 06:00-22:00"),)
    assert "become Mon-Fri 06:00-22:00" in plan.roundings[0]


def test_a_vendor_with_one_pair_of_hours_for_all_days_rounds_to_their_span() -> None:
    windowed = Schedule(
        NOW, None,
        (parse_window("Mon-Fri 06:00-22:00"), parse_window("Sat 08:00-14:00")),
        "Europe/Oslo",
    )  # fmt: skip
    plan = plan_target(grant(schedule=windowed, rounded=True), LOCK, WINDOWS, "Vee", NOW)
    assert plan.schedule.windows == (parse_window("Mon-Sat 06:00-22:00"),)


def test_what_rounding_cannot_fix_is_refused_even_with_round() -> None:
    counted = plan_target(grant(uses=1, rounded=True), LOCK, NO_SCHEDULE, "Vee", NOW)
    assert any("not rounded to unlimited" in why for why in counted.refusals)
    nobody = plan_target(
        grant(holder=Holder("Renter 214"), rounded=True), LOCK, NO_SCHEDULE, "Vee", NOW
    )
    assert nobody.refusals == ("Vee needs the holder's who (--who)",)
    other_zone = Schedule(NOW, None, (parse_window("Mon 06:00-22:00"),), "Europe/London")
    zoned = plan_target(grant(schedule=other_zone, rounded=True), LOCK, WINDOWS, "Vee", NOW)
    assert any("keeps Europe/Oslo time" in why for why in zoned.refusals)
    # A zone with the same clock throughout the grant (Berlin's DST rules are Oslo's) is fine.
    berlin = Schedule(NOW, None, (parse_window("Mon 06:00-22:00"),), "Europe/Berlin")
    assert not plan_target(grant(schedule=berlin), LOCK, WINDOWS, "Vee", NOW).refusals
    full = AccessConstraints("v", "L1", "key", "who", enforces_period=True, capacity_left=0)
    assert plan_target(grant(rounded=True), LOCK, full, "Vee", NOW).refusals


def test_a_vendor_that_needs_an_end_gets_one_a_year_on_with_round() -> None:
    ends = AccessConstraints("v", "L1", "key", "who", enforces_period=True, needs_end=True)
    open_ended = Schedule(NOW, None)
    assert plan_target(grant(schedule=open_ended), LOCK, ends, "Vee", NOW).refusals
    plan = plan_target(grant(schedule=open_ended, rounded=True), LOCK, ends, "Vee", NOW)
    assert plan.schedule.ends_at == NOW + dt.timedelta(days=366)


def test_a_vendor_whose_day_ends_at_2359_rounds_a_window_to_midnight() -> None:
    late = AccessConstraints("v", "L1", "key", "who", enforces_period=True,
                             weekly_windows=True, latest_end=23 * 60 + 59)  # fmt: skip
    windowed = Schedule(NOW, None, (parse_window("Sat 10:00-24:00"),), "Europe/Oslo")
    assert plan_target(grant(schedule=windowed), LOCK, late, "Vee", NOW).refusals
    plan = plan_target(grant(schedule=windowed, rounded=True), LOCK, late, "Vee", NOW)
    assert plan.schedule.windows[0].end == 23 * 60 + 59 and "end at 23:59" in plan.roundings[0]
