"""Variables changed for a while come back as they were, even when the body fails."""

from __future__ import annotations

import os

import pytest

from blelock.cli.environ import variables_set


def test_variables_are_set_unset_and_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLELOCK_TEST_KEPT", "before")
    monkeypatch.setenv("BLELOCK_TEST_UNSET", "there")
    monkeypatch.delenv("BLELOCK_TEST_NEW", raising=False)
    changes = {"BLELOCK_TEST_KEPT": "during", "BLELOCK_TEST_UNSET": None, "BLELOCK_TEST_NEW": "x"}
    seen: dict[str, str | None] = {}

    def fail_midway() -> None:
        with variables_set(changes):
            seen.update({name: os.environ.get(name) for name in changes})
            raise RuntimeError("the body failed")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert seen == changes
    assert os.environ["BLELOCK_TEST_KEPT"] == "before"
    assert os.environ["BLELOCK_TEST_UNSET"] == "there"
    assert "BLELOCK_TEST_NEW" not in os.environ
