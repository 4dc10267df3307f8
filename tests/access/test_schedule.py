"""Weekly windows in a named zone keep their local hours across daylight-saving changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blelock.errors import UsageError
from blelock.grants import Schedule, WeeklyWindow, days_text, parse_instant, parse_window

OSLO = ZoneInfo("Europe/Oslo")


def local(y: int, m: int, d: int, hh: int, mm: int) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=OSLO).astimezone(dt.UTC)


def test_a_window_is_parsed_from_days_and_hours() -> None:
    window = parse_window("Mon-Sat 06:00-22:00")
    assert window == WeeklyWindow(frozenset(range(6)), 360, 1320)
    assert window.text() == "Mon-Sat 06:00-22:00"
    assert parse_window("sat-mon 10:00-24:00").days == frozenset({5, 6, 0})
    assert days_text({0, 2, 4}) == "Mon,Wed,Fri"


@pytest.mark.parametrize(
    "text", ["Mon 22:00-02:00", "Mon 06:00", "Xyz 06:00-07:00", "Mon 25:00-26:00", "Mon 6-7"]
)
def test_a_malformed_window_is_refused_by_name(text: str) -> None:
    with pytest.raises(UsageError, match="window"):
        parse_window(text)


def test_mon_to_sat_opens_at_0630_and_not_at_2230_local_before_and_after_dst() -> None:
    schedule = Schedule(
        local(2026, 3, 23, 0, 0),
        local(2026, 11, 1, 0, 0),
        (parse_window("Mon-Sat 06:00-22:00"),),
        "Europe/Oslo",
    )
    for day in (27, 28, 30, 31):  # Fri, Sat before; Mon, Tue after the spring-forward (29th)
        assert schedule.allows(local(2026, 3, day, 6, 30))
        assert not schedule.allows(local(2026, 3, day, 22, 30))
        assert not schedule.allows(local(2026, 3, day, 5, 59))
    assert not schedule.allows(local(2026, 3, 29, 12, 0))  # a Sunday
    # And the autumn change (25 October): Saturday 24th, Monday 26th.
    assert schedule.allows(local(2026, 10, 24, 6, 30)) and schedule.allows(
        local(2026, 10, 26, 6, 30)
    )
    assert not schedule.allows(local(2026, 10, 26, 22, 30))


def test_openings_are_the_local_hours_in_utc_with_the_offset_of_their_day() -> None:
    schedule = Schedule(
        local(2026, 3, 27, 0, 0), None, (parse_window("Mon-Sat 06:00-22:00"),), "Europe/Oslo"
    )
    openings = list(schedule.openings(local(2026, 3, 27, 0, 0), local(2026, 3, 31, 0, 0)))
    utc = dt.UTC
    assert openings == [
        (dt.datetime(2026, 3, 27, 5, 0, tzinfo=utc), dt.datetime(2026, 3, 27, 21, 0, tzinfo=utc)),
        (dt.datetime(2026, 3, 28, 5, 0, tzinfo=utc), dt.datetime(2026, 3, 28, 21, 0, tzinfo=utc)),
        # After the change Oslo is UTC+2: the same local hours, two hours before in UTC.
        (dt.datetime(2026, 3, 30, 4, 0, tzinfo=utc), dt.datetime(2026, 3, 30, 20, 0, tzinfo=utc)),
    ]


def test_openings_are_cut_to_the_grants_own_period() -> None:
    start, end = local(2026, 3, 27, 9, 12), local(2026, 3, 28, 12, 0)
    schedule = Schedule(start, end, (parse_window("Mon-Sat 06:00-22:00"),), "Europe/Oslo")
    assert list(schedule.openings(start - dt.timedelta(days=3), end + dt.timedelta(days=3))) == [
        (start, local(2026, 3, 27, 22, 0)),
        (local(2026, 3, 28, 6, 0), end),
    ]


@given(
    st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2027, 12, 31)).map(
        lambda d: d.replace(tzinfo=dt.UTC)
    )
)
def test_allows_agrees_with_openings(moment: dt.datetime) -> None:
    schedule = Schedule(
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2028, 1, 1, tzinfo=dt.UTC),
        (parse_window("Mon-Fri 06:00-12:00"), parse_window("Sat 08:00-24:00")),
        "Europe/Oslo",
    )
    inside = any(
        start <= moment < end
        for start, end in schedule.openings(
            moment - dt.timedelta(days=2), moment + dt.timedelta(days=2)
        )
    )
    assert schedule.allows(moment) == inside


def test_an_instant_without_offset_is_read_in_the_facility_zone() -> None:
    assert parse_instant("2026-03-28T09:12", default_zone="Europe/Oslo") == dt.datetime(
        2026, 3, 28, 8, 12, tzinfo=dt.UTC
    )
    assert parse_instant("2026-03-28T08:12Z") == dt.datetime(2026, 3, 28, 8, 12, tzinfo=dt.UTC)
    with pytest.raises(UsageError, match="not a date"):
        parse_instant("tomorrow")
    with pytest.raises(UsageError, match="time zone"):
        Schedule(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), None, (), "Mars/Olympus")
