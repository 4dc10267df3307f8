"""The CLI's own behaviour: options anywhere, and output that survives hostile text."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from rich.console import Console

from blelock.cli import build_parser, render
from blelock.cli.context import moment_option
from blelock.errors import UsageError
from blelock.model import LockState, MacAddress, Sighting


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--config", "prod.toml", "--data-dir", "d", "scan"],
        ["scan", "--json", "--config", "prod.toml", "--data-dir", "d"],
        ["--json", "scan", "--config", "prod.toml", "--data-dir", "d"],
    ],
)
def test_common_options_count_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.json, args.config, args.data_dir, args.debug) == (True, "prod.toml", "d", False)


def test_advertised_names_are_not_rich_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(render, "_console", lambda: Console(file=out, width=200))
    hostile = Sighting(
        vendor="noke",
        lock_id=MacAddress("C7:E6:B0:C6:75:38"),
        address="x",
        name="[/x][bold]NOKE",
        hardware="4I",
        firmware=None,
        state=LockState.UNKNOWN,
        rssi=-40,
    )
    render.show_sightings([hostile], as_json=False)
    assert "[/x][bold]NOKE" in out.getvalue()


def test_a_date_time_option_needs_iso_8601_with_a_zone() -> None:
    assert moment_option(None, "--before") is None
    moment = moment_option("2026-11-24T09:00+01:00", "--start")
    assert moment is not None and moment.utcoffset() == dt.timedelta(hours=1)
    with pytest.raises(UsageError, match=r"--before 'yesterday' is not an ISO 8601"):
        moment_option("yesterday", "--before")
    with pytest.raises(UsageError, match=r"--end '2026-11-24T09:00' needs a time zone"):
        moment_option("2026-11-24T09:00", "--end")
