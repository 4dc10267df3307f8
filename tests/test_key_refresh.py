"""When a cached key is due for a refresh, and what the kiosk's health counts as due."""

from __future__ import annotations

import datetime as dt

import pytest

from blelock.model import KeyInfo, refresh_due
from blelock.sync import key_health

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
HORIZON = dt.timedelta(hours=72)


@pytest.mark.parametrize(
    ("issued_ago", "left", "due"),
    [
        (None, dt.timedelta(hours=73), False),  # no issue time: the horizon alone
        (None, dt.timedelta(hours=71), True),
        (dt.timedelta(days=30), dt.timedelta(hours=73), False),  # a long life: the horizon
        (dt.timedelta(days=30), dt.timedelta(hours=71), True),
        (dt.timedelta(minutes=1), dt.timedelta(minutes=9), False),  # ten minutes, just issued
        (dt.timedelta(minutes=6), dt.timedelta(minutes=4), True),  # past half its life
        (dt.timedelta(hours=40), dt.timedelta(hours=56), False),  # four days: at half, 48 h
        (dt.timedelta(hours=49), dt.timedelta(hours=47), True),
    ],
)
def test_a_key_is_due_within_the_horizon_or_past_half_a_short_life(
    issued_ago: dt.timedelta | None, left: dt.timedelta, due: bool
) -> None:
    issued = None if issued_ago is None else NOW - issued_ago
    assert refresh_due(NOW + left, NOW, HORIZON, issued_at=issued) is due


def test_the_health_counts_a_fresh_short_lived_key_as_not_expiring_soon() -> None:
    def key(issued_ago: dt.timedelta, left: dt.timedelta) -> KeyInfo:
        return KeyInfo("acme", "lock", "holder", "grant", NOW + left, valid_from=NOW - issued_ago)

    health = key_health(
        [
            key(dt.timedelta(minutes=1), dt.timedelta(minutes=9)),  # just issued, for minutes
            key(dt.timedelta(minutes=8), dt.timedelta(minutes=2)),  # most of it gone
            key(dt.timedelta(days=5), dt.timedelta(hours=10)),  # a long key near its end
            key(dt.timedelta(days=1), -dt.timedelta(minutes=1)),  # expired: counted apart
        ],
        NOW,
        HORIZON,
    )
    assert (health.expiring_soon, health.expired, health.cached) == (2, 1, 4)
