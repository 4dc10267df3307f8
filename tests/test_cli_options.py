"""The CLI's own behaviour: options anywhere, and output that survives hostile text."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from blelock.cli import build_parser, render
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
