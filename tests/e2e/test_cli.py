"""`blelock` as a user runs it: separate processes against a `blelock-sim` process.

The simulator runs as its own process (as a harness would run it); each `blelock` call is a
fresh subprocess pointed at it by environment variables only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blelock.vendors.noke import protocol as noke
from simulators.process import simulator_process
from simulators.world import WorldSpec, build_world
from tests.conftest import closed_port_url
from tests.e2e.conftest import cli_environment

CLI_TIMEOUT = 60


@dataclass
class Sim:
    env: dict[str, str]
    locks: list[dict[str, str]]


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    """Lock 1: HD padlock; lock 2: standard padlock; lock 3: drops its link once."""
    with simulator_process(
        *("--locks", "3", "--seed", "5", "--adv-ms", "5", "--connect-ms", "2"),
        *("--interval-ms", "1", "--write-rtt-ms", "1", "--fault", "3:drop-after=1"),
    ) as announced:
        yield Sim(env=announced["env"], locks=announced["locks"])


def blelock(sim: Sim | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    simulated = {} if sim is None else sim.env | {"BLELOCK_SCAN_TIMEOUT": "3"}
    return subprocess.run(
        [sys.executable, "-m", "blelock", *args],
        capture_output=True,
        text=True,
        env=cli_environment(**(simulated | env)),
        timeout=CLI_TIMEOUT,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_scan_lists_the_simulated_locks(sim: Sim) -> None:
    result = blelock(sim, "scan", "--seconds", "1", "--json")
    assert result.returncode == 0, result.stderr
    seen = {row["lock_id"]: row["hardware"] for row in as_json(result)}
    assert seen == {lock["mac"]: lock["hardware"] for lock in sim.locks}


def test_unlock_opens_the_lock(sim: Sim) -> None:
    mac = sim.locks[0]["mac"]
    result = blelock(sim, "unlock", mac.lower(), "--tracking-key", "tech-7", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = as_json(result)["results"]
    assert row["lock_id"] == mac and row["opened"] and row["logs_kept"] >= 1


def test_unlock_survives_a_dropped_link_with_one_retry(sim: Sim) -> None:
    result = blelock(sim, "unlock", sim.locks[2]["mac"], "--json")
    assert result.returncode == 0, result.stderr
    assert as_json(result)["results"][0]["attempts"] == 2


def test_human_output_is_a_table(sim: Sim) -> None:
    result = blelock(sim, "unshackle", sim.locks[0]["mac"])
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout and sim.locks[0]["mac"] in result.stdout


def test_refusal_is_one_line_naming_lock_step_and_hint(sim: Sim) -> None:
    mac = sim.locks[1]["mac"]
    result = blelock(sim, "unshackle", mac)
    assert result.returncode == 1
    line = one_line_error(result)
    assert mac in line and "send commands" in line and "HD padlock" in line


def test_malformed_mac_is_a_usage_error(sim: Sim) -> None:
    result = blelock(sim, "unlock", "C7:E6:B0:C6:75")
    assert result.returncode == 2
    assert "malformed MAC 'C7:E6:B0:C6:75'" in one_line_error(result)


def test_lock_not_in_range(sim: Sim) -> None:
    result = blelock(
        sim, "unlock", "00:11:22:33:44:55", "--vendor", "noke", BLELOCK_SCAN_TIMEOUT="0.5"
    )
    assert result.returncode == 1
    line = one_line_error(result)
    assert "00:11:22:33:44:55" in line and "scan" in line and "not seen" in line
    # A MAC is Nokē's or Nuki's: unheard, and with no --vendor, it is refused naming both.
    result = blelock(sim, "unlock", "00:11:22:33:44:55", BLELOCK_SCAN_TIMEOUT="0.5")
    assert result.returncode == 2
    assert "could be a lock of noke, nuki" in one_line_error(result)


def test_wrong_api_key_fails_without_printing_it(sim: Sim) -> None:
    secret = "wrong-key-do-not-print-4711"
    result = blelock(sim, "unlock", sim.locks[0]["mac"], "--json", BLELOCK_NOKE_API_KEY=secret)
    assert result.returncode == 1
    assert secret not in result.stdout + result.stderr
    assert as_json(result)["kind"] == "AuthFailed"


def test_cloud_down(sim: Sim) -> None:
    result = blelock(sim, "unlock", sim.locks[0]["mac"], BLELOCK_NOKE_URL=closed_port_url())
    assert result.returncode == 1
    assert "cloud" in one_line_error(result)


def test_missing_api_key_is_a_usage_error(sim: Sim) -> None:
    result = blelock(sim, "sync", BLELOCK_NOKE_API_KEY="")
    assert result.returncode == 2
    assert "API key" in one_line_error(result)
    online = blelock(sim, "unshackle", sim.locks[0]["mac"], BLELOCK_NOKE_API_KEY="")
    assert online.returncode == 2 and "API key" in one_line_error(online)


def test_without_an_api_key_unlock_can_only_go_offline(sim: Sim) -> None:
    result = blelock(sim, "unlock", sim.locks[0]["mac"], BLELOCK_NOKE_API_KEY="")
    assert result.returncode == 1
    assert "no offline key" in one_line_error(result)


def test_issuing_keys_needs_the_locks(sim: Sim) -> None:
    result = blelock(sim, "sync", "--tracking-key", "tech-7")
    assert result.returncode == 2 and "--locks" in one_line_error(result)
    assert not (Path(os.environ["BLELOCK_DATA_DIR"]) / "blelock.db").exists()


def test_bad_setting_is_named() -> None:
    result = blelock(None, "scan", BLELOCK_SCAN_TIMEOUT="soon")
    assert result.returncode == 2
    assert "scan_timeout" in one_line_error(result)


def test_unknown_command_is_a_usage_error() -> None:
    result = blelock(None, "teleport")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_demo_runs_a_technicians_day() -> None:
    result = blelock(None, "demo", "--locks", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = as_json(result)
    assert report["ok"] and not report["failures"]
    noke = [row for row in report["results"] if row["vendor"] == "noke"]
    assert [row["offline"] for row in noke] == [False, False, True, True]
    # Nokē too: online visits upload their records at once, offline ones wait.
    kept = sum(row["logs_kept"] for row in noke if row["offline"])
    keyless = [row for row in report["results"] if row["vendor"] == "keyless"]
    assert [row["online"] for row in keyless] == [True, True, False, False]
    assert all(row["opened"] for row in keyless)
    # Online opens send their audit entries at once; the offline ones wait for the upload.
    waited = sum(row["audit_entries_kept"] for row in keyless if not row["online"])
    assert report["logs"] == {"uploaded": kept + waited, "pending": 0}
    # Unloc (cloud only): a recurring key issued, its job waited for, the simulated clock moved
    # from before its start into and out of its hours, then revoked.
    states = [note.rsplit(" is ", 1)[1] for note in report["notes"] if " is " in note]
    assert states == ["scheduled", "active", "inactive", "revoked"], report["notes"]
    # One renter, one unit per vendor, one lease: made so at each vendor.
    units = report["lease"]["units"]
    assert sorted(unit.split(":")[0] for unit in units) == ["keyless", "noke", "nuki", "unloc"]
    assert set(units.values()) == {"active"}


def test_field_day_sync_then_offline_then_upload(sim: Sim) -> None:
    mac = sim.locks[0]["mac"]
    synced = blelock(sim, "sync", "--macs", mac, "--tracking-key", "tech-7", "--json")
    assert synced.returncode == 0, synced.stderr
    (noke_sync,) = as_json(synced)["vendors"]
    assert noke_sync["vendor"] == "noke" and noke_sync["keys"]["added"] == 1

    listed = blelock(sim, "keys", "--json")
    (key,) = as_json(listed)
    assert (key["lock_id"], key["holder"], key["revoked_at"]) == (mac, "tech-7", None)
    # The same seed rebuilds the same world, so the test knows the key the cloud handed out:
    # it must show nowhere, and lie on disk only sealed.
    lock_key = build_world(WorldSpec(locks=3, seed=5)).locks[0].key
    offline_key, unlock_command = noke.offline_grant_material(lock_key, 0)
    store = Path(os.environ["BLELOCK_DATA_DIR"])
    on_disk = b"".join(path.read_bytes() for path in store.iterdir() if path.is_file())
    for secret in (offline_key, unlock_command):
        assert secret.hex() not in (listed.stdout + synced.stdout + synced.stderr).lower()
        assert secret not in on_disk and secret.hex().encode() not in on_disk

    no_signal = blelock(sim, "unlock", mac, "--json", BLELOCK_NOKE_URL=closed_port_url())
    assert no_signal.returncode == 0, no_signal.stderr
    assert as_json(no_signal)["results"][0]["offline"] is True

    pending = as_json(blelock(sim, "logs", "--json"))["pending"]
    assert pending >= 1
    uploaded = blelock(sim, "upload", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    assert (as_json(uploaded)["uploaded"], as_json(uploaded)["pending"]) == (pending, 0)


def test_a_wrong_data_key_is_refused_and_nothing_is_lost(sim: Sim) -> None:
    mac = sim.locks[0]["mac"]
    assert blelock(sim, "sync", "--macs", mac, "--tracking-key", "tech-7").returncode == 0
    wrong = "A" * 43 + "="
    refused = blelock(sim, "keys", BLELOCK_DATA_KEY=wrong)
    assert refused.returncode == 1
    assert "data key" in one_line_error(refused) and wrong not in refused.stderr
    still = blelock(sim, "keys", "--json")
    assert still.returncode == 0 and len(as_json(still)) == 1


def test_a_lost_data_key_never_strands_pending_logs(sim: Sim) -> None:
    mac = sim.locks[0]["mac"]
    assert blelock(sim, "sync", "--macs", mac, "--tracking-key", "tech-7").returncode == 0
    # Offline: an online unlock would have uploaded its records at once.
    assert blelock(sim, "unlock", mac, "--offline").returncode == 0
    (Path(os.environ["BLELOCK_KEY_DIR"]) / "data.key").unlink()

    refused = blelock(sim, "keys")
    assert refused.returncode == 1 and "data key missing" in one_line_error(refused)
    assert "blelock upload" in one_line_error(refused)
    pending = as_json(blelock(sim, "logs", "--json"))["pending"]
    uploaded = blelock(sim, "upload", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    assert pending >= 1 and as_json(uploaded)["uploaded"] == pending
    assert blelock(sim, "unlock", mac).returncode == 0  # online needs no offline key


PACKAGES = Path(__file__).resolve().parents[2] / "firmware_images"


def test_firmware_info_reads_a_package_without_a_lock() -> None:
    result = blelock(None, "firmware-info", str(PACKAGES / "noke-4i-3.15.zip"), "--json")
    assert result.returncode == 0, result.stderr
    facts = as_json(result)
    assert (facts["hardware"], facts["version"], facts["signed"]) == ("4I", "3.15", True)
    assert facts["image_bytes"] == 65_000


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"not a zip at all", "not a usable zip"), (None, "manifest.json")],
    ids=["not-a-zip", "no-manifest"],
)
def test_firmware_info_names_what_is_wrong(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    package = tmp_path / "bad.zip"
    if content is None:
        with zipfile.ZipFile(package, "w") as archive:
            archive.writestr("image.bin", b"\\x00" * 64)
    else:
        package.write_bytes(content)
    result = blelock(None, "firmware-info", str(package))
    assert result.returncode == 2
    assert problem in one_line_error(result)


def sim_state(sim: Sim) -> Any:
    import httpx

    return httpx.get(sim.env["BLELOCK_NOKE_URL"] + "_sim/state", timeout=10).json()


def test_firmware_update_goes_through_the_cloud_and_the_bootloader(sim: Sim) -> None:
    mac = sim.locks[0]["mac"]
    result = blelock(sim, "firmware-update", mac, str(PACKAGES / "noke-4i-3.15.zip"), "--json")
    assert result.returncode == 0, result.stderr
    assert as_json(result)["version"] == "3.15"
    assert sim_state(sim)["firmware"][mac] == "3.15"
    (row,) = [
        r for r in as_json(blelock(sim, "scan", "--seconds", "1", "--json")) if r["lock_id"] == mac
    ]
    assert row["firmware"] == "4I-3.15"  # the lock rebooted into the new firmware


def test_a_package_for_other_hardware_is_refused_and_the_lock_keeps_its_firmware(
    sim: Sim,
) -> None:
    mac = sim.locks[1]["mac"]
    result = blelock(sim, "firmware-update", mac, str(PACKAGES / "noke-4i-3.15.zip"))
    assert result.returncode == 1
    line = one_line_error(result)
    assert mac in line and "other hardware" in line and "old firmware" in line
    assert sim_state(sim)["firmware"][mac] == "2.10"


def test_a_bad_package_is_refused_before_any_radio_work(sim: Sim, tmp_path: Path) -> None:
    package = tmp_path / "broken.zip"
    package.write_bytes(b"PK\x03\x04 but not really")
    result = blelock(sim, "firmware-update", sim.locks[0]["mac"], str(package))
    assert result.returncode == 2 and "broken.zip" in one_line_error(result)


def test_sync_refuses_a_lock_no_vendor_could_own(capsys: pytest.CaptureFixture[str]) -> None:
    from blelock.cli import main

    assert main(["sync", "--locks", "C7:E6:B0:C6:75"]) == 2
    assert "C7:E6:B0:C6:75" in capsys.readouterr().err
