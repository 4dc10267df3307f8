"""`blelock noke …` as an office user runs it: fresh processes against a `blelock-sim` process.
Quick-click codes go in on standard input, never on the command line, and never come out."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.conftest import cli_environment

CLI_TIMEOUT = 60


def blelock(sim: dict[str, Any], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blelock", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=cli_environment(**(sim["env"] | {"BLELOCK_SCAN_TIMEOUT": "3"})),
        timeout=CLI_TIMEOUT,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_quick_clicks_issue_list_revoke(sim: dict[str, Any]) -> None:
    mac = sim["locks"][0]["mac"]
    issued = blelock(
        sim, "noke", "quick-clicks", "issue", mac, "--uses", "3", "--json",
        stdin="10110\n0101 255\n",
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    answer = json.loads(issued.stdout)
    assert answer["ok"] and "next online unlock" in answer["note"]
    assert [(r["code"], r["uses"]) for r in answer["quick_clicks"]] == [
        ("5 presses", 3),
        ("4 presses", "unlimited"),
    ]
    assert "10110" not in issued.stdout + issued.stderr

    table = blelock(sim, "noke", "quick-clicks", "list", mac)
    assert table.returncode == 0 and "pending (not on the lock yet)" in table.stdout

    revoked = blelock(sim, "noke", "quick-clicks", "revoke", mac, "--json", stdin="10110\n")
    assert revoked.returncode == 0, revoked.stderr
    states = [r["state"] for r in json.loads(revoked.stdout)["quick_clicks"]]
    assert states == ["revoked (still on the lock)", "pending (not on the lock yet)"]


@pytest.mark.parametrize(
    ("stdin", "rule"),
    [
        ("1021 3\n", "made of 1 and 0 only (rule 1)"),
        ("10 3\n", "3 to 24 characters, not 2 (rule 2)"),
        ("101 254\n", "not 254 (rule 3)"),
        ("111 1\n111 2\n", "unique code (rule 4)"),
        ("\n", "needs at least one (rule 7)"),
        ("101\n", "give its uses"),
    ],
)
def test_a_broken_rule_is_one_line_naming_it(sim: dict[str, Any], stdin: str, rule: str) -> None:
    result = blelock(sim, "noke", "quick-clicks", "issue", sim["locks"][1]["mac"], stdin=stdin)
    assert result.returncode == 2
    line = one_line_error(result)
    assert rule in line
    codes = [part for part in stdin.split()[::2] if len(part) >= 3]
    assert not any(code in line for code in codes)  # the code is never echoed


def test_locks_activity_and_key_revocation(sim: dict[str, Any]) -> None:
    mac = sim["locks"][1]["mac"]
    assert blelock(sim, "sync", "--macs", mac, "--tracking-key", "tech-7").returncode == 0
    opened = blelock(sim, "unlock", mac, "--tracking-key", "tech-7")
    assert opened.returncode == 0, opened.stderr

    locks = blelock(sim, "noke", "locks", mac, "--json")
    assert locks.returncode == 0, locks.stderr
    (row,) = json.loads(locks.stdout)
    assert row["status"] == "ready" and row["internal_battery_mv"] > 0
    assert row["hardware"] == sim["locks"][1]["hardware"]

    activity = blelock(sim, "noke", "activity", "--locks", mac, "--action", "unlocked", "--json")
    assert activity.returncode == 0, activity.stderr
    (entry,) = json.loads(activity.stdout)
    assert entry["tracking_key"] == "tech-7" and entry["from"] == entry["to"]

    revoked = blelock(sim, "noke", "revoke-keys", "--macs", mac, "--tracking-key", "tech-7")
    assert revoked.returncode == 0, revoked.stderr
    assert "1 cached key(s) marked revoked here" in revoked.stdout
    assert "still opens its lock until an online unlock" in revoked.stdout
    flagged = json.loads(blelock(sim, "noke", "locks", mac, "--json").stdout)
    assert "keys" in flagged[0]["waiting_to_sync"]

    nothing = blelock(sim, "noke", "revoke-keys")
    assert nothing.returncode == 2 and "tracking keys" in one_line_error(nothing)
    bad_date = blelock(sim, "noke", "activity", "--before", "yesterday")
    assert bad_date.returncode == 2 and "--before" in one_line_error(bad_date)
