"""`blelock access …` as a user runs it, against `blelock-sim`: refused without --round (every
reason, exit 2, nothing stored), rounded and shown, made so by `blelock sync`, revoked, gone at
the simulated Nokē cloud; a code is read from stdin, never argv."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulators.process import simulator_process
from tests.e2e.conftest import cli_environment

CLI_TIMEOUT = 60


@pytest.fixture(scope="module")
def sim() -> Iterator[dict[str, Any]]:
    with simulator_process("--locks", "1", "--seed", "3") as announced:
        yield announced


def blelock(
    sim: dict[str, Any], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blelock", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=cli_environment(**sim["env"], BLELOCK_ACCESS_TIMEZONE="Europe/Oslo"),
        timeout=CLI_TIMEOUT,
    )


def keys_at_cloud(sim: dict[str, Any], mac: str) -> list[str]:
    state = httpx.post(
        sim["env"]["BLELOCK_NOKE_URL"] + "keys/",
        json={"display": {"macs": [mac]}},
        headers={"Authorization": f"Bearer {sim['env']['BLELOCK_NOKE_API_KEY']}"},
        timeout=10,
    ).json()
    return [key["tracking_key"] for lock in state["data"]["locks"] for key in lock["keys"]]


def test_grant_sync_revoke_sync_through_the_cli(sim: dict[str, Any]) -> None:
    mac = sim["locks"][0]["mac"]
    grant = (
        "access", "grant", "--holder", "Renter 214", "--lock", mac, "--until", "2030-01-01T00:00",
        "--window", "Mon-Sat 06:00-22:00", "--tracking-key", "renter-214", "--id", "lease-214",
    )  # fmt: skip
    refused = blelock(sim, *grant)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "no weekly windows" in line and "no schedule" in line and "--round" in line
    assert json.loads(blelock(sim, "--json", "access", "list").stdout) == []

    made = blelock(sim, *grant, "--round", "--json")
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    (lock,) = shown["locks"]
    assert shown["status"] == "pending" and lock["roundings"] and lock["notes"]
    assert any("until an online unlock" in note for note in lock["notes"])

    synced = blelock(sim, "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["grants"]["applied"] == 1
    assert "renter-214" in keys_at_cloud(sim, mac)
    shown = json.loads(blelock(sim, "access", "show", "lease-214", "--json").stdout)
    assert shown["status"] == "active"
    table = blelock(sim, "access", "list")
    assert table.returncode == 0 and "lease-214" in table.stdout and "active" in table.stdout

    revoked = blelock(sim, "access", "revoke", "lease-214", "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
    again = blelock(sim, "access", "reconcile", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["removed"] == 1
    assert "renter-214" not in keys_at_cloud(sim, mac)
    shown = json.loads(blelock(sim, "access", "show", "lease-214", "--json").stdout)
    assert shown["status"] == "revoked"

    rules = json.loads(blelock(sim, "access", "constraints", mac, "--json").stdout)
    assert rules["enforces_period"] is False and rules["uses"] == [1, 244]  # quick clicks count
    missing = blelock(sim, "access", "show", "nope")
    assert missing.returncode == 2 and "no grant nope" in missing.stderr
