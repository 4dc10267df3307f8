"""The Web API's five time fields: dates are UTC instants, day times lock-local minutes."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import SecretStr

from blelock.errors import UsageError
from blelock.vendors.nuki.web.ops import add_keypad_code
from blelock.vendors.nuki.web.rules import check_keypad_code, weekday_mask
from blelock.vendors.nuki.web.window import AccessWindow, api_date
from tests.nuki_web.conftest import FRONT, Sim

BERLIN_WINTER = dt.timezone(dt.timedelta(hours=1))
BERLIN_SUMMER = dt.timezone(dt.timedelta(hours=2))


def test_dates_go_as_utc_and_day_times_as_lock_local_minutes_across_dst() -> None:
    winter = AccessWindow.parse(
        from_date="2030-03-01T09:00:00+01:00", daily="09:00-17:00", days="mon-fri"
    )
    summer = AccessWindow.parse(
        from_date="2030-04-01T09:00:00+02:00", daily="09:00-17:00", days="mon-fri"
    )
    assert winter.to_api() == {
        "allowedFromDate": "2030-03-01T08:00:00.000Z",
        "allowedUntilDate": None,
        "allowedWeekDays": 124,
        "allowedFromTime": 540,
        "allowedUntilTime": 1020,
    }
    # The lock applies day times in its own zone: they do not move with the offset.
    assert summer.to_api()["allowedFromDate"] == "2030-04-01T07:00:00.000Z"
    assert summer.to_api()["allowedFromTime"] == 540


def test_an_empty_window_sends_every_field_as_null() -> None:
    assert AccessWindow().to_api() == dict.fromkeys(
        [
            "allowedFromDate",
            "allowedUntilDate",
            "allowedWeekDays",
            "allowedFromTime",
            "allowedUntilTime",
        ]
    )
    assert AccessWindow().describe() == "any time"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"from_date": "2030-03-01T09:00:00"}, "no time zone"),
        ({"from_date": "tomorrow"}, "not an ISO date-time"),
        ({"daily": "17:00-09:00"}, "no overnight windows"),
        ({"daily": "09:00"}, "HH:MM-HH:MM"),
        ({"daily": "9h-17h"}, "not a time of day"),
        ({"daily": "09:00:30-17:00"}, "whole minutes"),
        ({"days": "mon,funday"}, "unknown weekday"),
        ({"days": "fri-mon"}, "runs backwards"),
        (
            {"from_date": "2030-03-02T00:00:00Z", "until_date": "2030-03-01T00:00:00Z"},
            "ends before it starts",
        ),
    ],
)
def test_windows_the_lock_cannot_keep_are_refused(options: dict[str, str], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        AccessWindow.parse(**options)


def test_half_a_day_window_and_a_naive_date_are_refused() -> None:
    with pytest.raises(UsageError, match="both its start and its end"):
        AccessWindow(from_time=dt.time(9)).checked()
    with pytest.raises(UsageError, match="has no time zone"):
        AccessWindow(from_date=dt.datetime(2030, 1, 1)).checked()
    with pytest.raises(UsageError, match=r"not 1\.\.127"):
        AccessWindow(weekdays=0).checked()


def test_reading_back_treats_zero_as_unset() -> None:
    window = AccessWindow.from_api(
        from_date=None, until_date=None, weekdays=0, from_minutes=0, until_minutes=0
    )
    assert not window.restricted
    assert AccessWindow.from_api(
        from_date=None, until_date=None, weekdays=127, from_minutes=540, until_minutes=1020
    ) == AccessWindow(weekdays=127, from_time=dt.time(9), until_time=dt.time(17))


def test_weekday_masks_and_descriptions() -> None:
    assert weekday_mask(["mon-fri"]) == 124 and weekday_mask(["sat", "Sunday"]) == 3
    assert weekday_mask(["mon-sun"]) == 127
    window = AccessWindow.parse(
        from_date="2030-03-01T08:00:00Z", days="sat,sun", daily="10:00-18:30"
    )
    assert window.describe() == "2030-03-01 08:00Z →, sat,sun, 10:00-18:30 lock-local"
    assert api_date(dt.datetime(2030, 3, 1, 9, 0, 0, 123456, tzinfo=BERLIN_WINTER)) == (
        "2030-03-01T08:00:00.123Z"
    )


def test_code_rules_accept_exactly_the_documented_codes() -> None:
    assert check_keypad_code(SecretStr("999999")) == 999_999
    assert check_keypad_code(SecretStr("211111")) == 211_111
    assert check_keypad_code(SecretStr("132456")) == 132_456
    for bad in ("120000", "129999", "000000", "99999", "9999999", "1 2345"):
        with pytest.raises(UsageError):
            check_keypad_code(SecretStr(bad))


async def test_a_restriction_without_a_start_date_starts_now(sim: Sim) -> None:
    entry = await add_keypad_code(
        sim.web, FRONT, "345678", "Cleaner", AccessWindow.parse(daily="09:00-17:00")
    )
    (_, _, body) = sim.writes("PUT")[0]
    assert isinstance(body, dict) and body["allowedFromDate"] == "2030-03-04T08:00:00.000Z"
    assert entry.window.from_date == dt.datetime(2030, 3, 4, 8, tzinfo=dt.UTC)
    assert entry.window.from_time == dt.time(9) and entry.window.until_time == dt.time(17)
