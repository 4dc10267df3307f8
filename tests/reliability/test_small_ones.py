"""The small wording fixes a tester asked for."""

from __future__ import annotations

import pytest

from blelock.cli import render
from simulators.__main__ import _parser


def test_upload_table_is_titled_upload(capsys: pytest.CaptureFixture[str]) -> None:
    render.show_sync({"uploaded": 2, "pending": 0, "set_aside": 0}, as_json=False)
    out = capsys.readouterr().out
    assert "blelock upload" in out and "blelock sync" not in out


def test_sync_table_is_still_titled_sync(capsys: pytest.CaptureFixture[str]) -> None:
    render.show_sync({"keys": None, "uploaded": 0, "pending": 0}, as_json=False)
    assert "blelock sync" in capsys.readouterr().out


def test_blelock_sim_help_mentions_keyless() -> None:
    assert "Keyless" in _parser().format_help()


def test_the_demo_caption_has_no_jargon() -> None:
    source = render.__loader__.get_source(render.__name__)  # type: ignore[union-attr]
    assert source is not None
    assert "entr(ies)" not in source and "back in coverage" not in source
