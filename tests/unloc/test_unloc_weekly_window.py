"""A Mon-Fri 09:00-17:00 key on a lock in Europe/Oslo, read through blelock's client over real
HTTP: active at 09:30 and inactive at 17:30 local time on both sides of each daylight-saving
change (UTC+1 in winter, UTC+2 in summer)."""

from __future__ import annotations

import datetime as dt

import pytest

from blelock.vendors.unloc.models import new_key
from tests.unloc.conftest import Unloc

UTC = dt.UTC
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
# (UTC instant, Oslo wall clock it is, expected state)
MOMENTS = [
    # Friday before the spring change, CET (UTC+1)
    (dt.datetime(2026, 3, 27, 8, 30, tzinfo=UTC), "Fri 09:30 CET", "active"),
    (dt.datetime(2026, 3, 27, 16, 30, tzinfo=UTC), "Fri 17:30 CET", "inactive"),
    # the weekend between is outside the window altogether
    (dt.datetime(2026, 3, 28, 8, 30, tzinfo=UTC), "Sat 09:30 CET", "inactive"),
    # Monday after it, CEST (UTC+2): a fixed +1 offset would read 08:30 and 16:30 here
    (dt.datetime(2026, 3, 30, 7, 30, tzinfo=UTC), "Mon 09:30 CEST", "active"),
    (dt.datetime(2026, 3, 30, 15, 30, tzinfo=UTC), "Mon 17:30 CEST", "inactive"),
    # Friday before the autumn change, CEST
    (dt.datetime(2026, 10, 23, 7, 30, tzinfo=UTC), "Fri 09:30 CEST", "active"),
    (dt.datetime(2026, 10, 23, 15, 30, tzinfo=UTC), "Fri 17:30 CEST", "inactive"),
    # Monday after it, CET again
    (dt.datetime(2026, 10, 26, 8, 30, tzinfo=UTC), "Mon 09:30 CET", "active"),
    (dt.datetime(2026, 10, 26, 16, 30, tzinfo=UTC), "Mon 17:30 CET", "inactive"),
]


@pytest.fixture
async def office_hours_key(unloc: Unloc) -> str:
    spans = [{"weekday": d, "startHour": 9, "startMinute": 0, "endHour": 17, "endMinute": 0}
             for d in WEEKDAYS]  # fmt: skip
    key = new_key(lockId=unloc.oslo.id, appUserId="+4799887766",
                  recurrence={"timeSpans": spans})  # fmt: skip
    job = await unloc.cloud.wait_for_job(await unloc.cloud.create_keys([key]))
    assert job.result_data is not None and job.result_data.created_keys[0].id is not None
    return job.result_data.created_keys[0].id


async def test_office_hours_follow_oslo_wall_clock_across_dst(
    unloc: Unloc, office_hours_key: str
) -> None:
    seen = []
    for instant, _, _ in MOMENTS:
        assert instant >= unloc.clock.at  # time only moves on
        unloc.clock.set(instant)
        unloc.state.forget_tokens()  # months pass between readings: a fresh token each time
        seen.append((await unloc.cloud.key(office_hours_key)).state)
    assert seen == [state for _, _, state in MOMENTS], list(
        zip([label for _, label, _ in MOMENTS], seen, strict=True)
    )


def test_the_moments_are_the_local_times_they_claim() -> None:
    from zoneinfo import ZoneInfo

    oslo = ZoneInfo("Europe/Oslo")
    for instant, label, _ in MOMENTS:
        local = instant.astimezone(oslo)
        assert f"{local:%a %H:%M} {local.tzname()}" == label


def test_time_zones_are_found_without_a_system_database() -> None:
    """With no system zone files (Windows, slim containers), zoneinfo falls back to the tzdata
    package, which is why it is a dependency."""
    import os
    import subprocess
    import sys

    probe = (
        "import datetime as dt, zoneinfo\n"
        "assert zoneinfo.TZPATH == ()\n"
        "oslo = zoneinfo.ZoneInfo('Europe/Oslo')\n"
        "when = dt.datetime(2026, 3, 30, 7, 30, tzinfo=dt.UTC).astimezone(oslo)\n"
        "print(when.strftime('%H:%M %Z'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True,
        env=os.environ | {"PYTHONTZPATH": ""},
    )  # fmt: skip
    assert out.stdout.strip() == "09:30 CEST"
