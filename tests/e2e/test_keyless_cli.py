"""`blelock open` and `blelock keyless ...` as a technician and an administrator run them,
against a `blelock-sim` process with Keyless locks: every run a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.conftest import closed_port_url
from tests.e2e.conftest import cli_environment

CLI_TIMEOUT = 60


@pytest.fixture(scope="module")
def sim_world() -> tuple[str, ...]:
    return ("--locks", "1", "--keyless-locks", "2", "--seed", "7")


def blelock(sim: dict[str, Any], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blelock", *args],
        capture_output=True,
        text=True,
        env=cli_environment(**(sim["env"] | {"BLELOCK_SCAN_TIMEOUT": "3"} | env)),
        timeout=CLI_TIMEOUT,
    )


def state(sim: dict[str, Any]) -> Any:
    return httpx.get(sim["env"]["BLELOCK_NOKE_URL"] + "_sim/state", timeout=10).json()["keyless"]


def test_a_technicians_day_online_then_offline_then_upload(sim: dict[str, Any]) -> None:
    device = sim["keyless_locks"][0]
    activated = subprocess.run(
        [sys.executable, "-m", "blelock", "keyless", "activate", "-", "--json"],
        input=sim["keyless_invitation"] + "\n",  # not on the command line: not in `ps`
        capture_output=True,
        text=True,
        env=cli_environment(**sim["env"]),
        timeout=CLI_TIMEOUT,
    )
    assert activated.returncode == 0, activated.stderr
    assert json.loads(activated.stdout)["operating_device_id"]
    assert sim["keyless_invitation"] not in activated.stdout + activated.stderr

    opened = blelock(sim, "open", device, "--json")
    assert opened.returncode == 0, opened.stderr
    (row,) = json.loads(opened.stdout)["results"]
    assert (row["lock_id"], row["vendor"], row["online"]) == (device, "keyless", True)
    no_network = {"BLELOCK_KEYLESS_URL": closed_port_url()}
    offline = blelock(sim, "open", device, "--json", **no_network)
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["results"][0]["online"] is False
    assert state(sim)[device]["opens"] == 2

    logs = json.loads(blelock(sim, "logs", "--json").stdout)
    assert logs["pending"] >= 1  # at least the offline open's entry waits for the network
    uploaded = blelock(sim, "upload", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    (keyless,) = [v for v in json.loads(uploaded.stdout)["vendors"] if v["vendor"] == "keyless"]
    assert keyless["pending"] == 0
    after = state(sim)[device]
    assert after["audit_received"] == after["audit_given"] == [1, 2]


def test_an_administrator_lists_and_grants(sim: dict[str, Any]) -> None:
    login = blelock(sim, "keyless", "login", "--json")
    assert login.returncode == 0, login.stderr
    assert json.loads(login.stdout)["role"] == "ADMIN"
    assert sim["env"]["BLELOCK_KEYLESS_ACCESS_KEY"] not in login.stdout + login.stderr
    devices = json.loads(blelock(sim, "keyless", "devices", "--json").stdout)
    assert {d["id"] for d in devices} == set(sim["keyless_locks"])
    assert {d["claiming_status"] for d in devices} == {"CLAIMED"}
    user = sim["env"]["BLELOCK_KEYLESS_USER_ID"]
    device = sim["keyless_locks"][1]
    granted = blelock(
        sim, "keyless", "grant", user, device, "--key-validity-days", "40"
    )  # the vendor allows 1 to 31 days: refused before anything is sent
    assert granted.returncode == 2
    assert "31" in granted.stderr and granted.stderr.count("\n") == 1
    granted = blelock(sim, "keyless", "grant", user, device, "--operation", "UPDATE_TIME", "--json")
    assert granted.returncode == 0, granted.stderr
    permission = json.loads(granted.stdout)["permission_id"]
    listed = json.loads(blelock(sim, "keyless", "permissions", "--user", user, "--json").stdout)
    assert [p["id"] for p in listed] == [permission]


def test_bad_input_names_what_is_wrong(sim: dict[str, Any]) -> None:
    not_an_id = blelock(sim, "open", "shed-12")
    assert not_an_id.returncode == 2 and "shed-12" in not_an_id.stderr
    bad_time = blelock(
        sim, "keyless", "offline-key", "issue", sim["keyless_locks"][0],
        "--operating-device", sim["keyless_locks"][0], "--start", "tomorrow",
    )  # fmt: skip
    assert bad_time.returncode == 2 and "--start" in bad_time.stderr
    wrong_key = blelock(sim, "keyless", "devices", BLELOCK_KEYLESS_API_KEY="not-the-key")
    assert wrong_key.returncode == 1 and "API key" in wrong_key.stderr
    assert "not-the-key" not in wrong_key.stderr
