"""The small wording fixes a tester asked for."""

from __future__ import annotations

import pytest

from blelock.cli import main
from blelock.cli.demo import _unreachable_url
from simulators.__main__ import _parser


@pytest.mark.parametrize(
    ("command", "title"), [("upload", "blelock upload"), ("sync", "blelock sync")]
)
def test_the_table_is_titled_by_the_command(
    command: str, title: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Nokē cloud nobody answers: with nothing pending, an upload calls no cloud at all.
    monkeypatch.setenv("BLELOCK_NOKE__URL", _unreachable_url())
    monkeypatch.setenv("BLELOCK_NOKE__API_KEY", "k")
    code = main([command, "--vendor", "noke"])
    out = capsys.readouterr().out
    if command == "upload":
        assert code == 0 and title in out and "blelock sync" not in out
    else:  # the key sync cannot reach the cloud: it fails, and says so without a table
        assert code == 1


def test_blelock_sim_help_mentions_keyless() -> None:
    assert "Keyless" in _parser().format_help()


def test_the_demo_caption_has_no_jargon() -> None:
    from blelock.cli.demo import DemoReport, caption

    line = caption(DemoReport(uploaded=12, pending=0))
    assert line.startswith("12 log record(s)") and "0 still waiting" in line
    assert "entr(ies)" not in line and "coverage" not in line
