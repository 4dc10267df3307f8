"""blelock's main journeys through bleak's real BlueZ backend (the Raspberry Pi's code path):
scan, online and offline opens for each vendor, a firmware update, the kiosk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bluez.conftest import Served, run
from tests.conftest import closed_port_url

PACKAGES = Path(__file__).resolve().parents[2] / "firmware_images"


def test_scan_hears_every_vendors_locks_through_bluez(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code, seen, err = run(capsys, "scan", "--seconds", "1")
    assert code == 0, err
    heard = {(row["vendor"], row["lock_id"]) for row in seen}
    noke = {("noke", lock.mac) for lock in sim.world.locks}
    assert sim.world.keyless is not None
    keyless = {("keyless", lock.locking_device_id) for lock in sim.world.keyless.locks}
    assert heard == noke | keyless
    # It was BlueZ's D-Bus API that carried the scan, with the plugins' UUIDs as its filter.
    calls = sim.bluez.bluez.calls
    assert calls["SetDiscoveryFilter"] >= 1 and calls["StartDiscovery"] >= 1


def test_online_unlock_of_a_noke_lock(sim: Served, capsys: pytest.CaptureFixture[str]) -> None:
    lock = sim.world.locks[0]
    before = lock.unlocks
    code, out, err = run(capsys, "unlock", lock.mac.lower(), "--tracking-key", "tech-7")
    assert code == 0, err
    (row,) = out["results"]
    assert row["lock_id"] == lock.mac and row["opened"] and not row["offline"]
    assert lock.unlocks == before + 1
    assert sim.bluez.bluez.calls["Connect"] >= 1 and sim.bluez.bluez.calls["StartNotify"] >= 1


def test_offline_unlock_of_a_noke_lock(
    sim: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = sim.world.locks[2]
    code, _, err = run(capsys, "sync", "--macs", lock.mac, "--tracking-key", "tech-7")
    assert code == 0, err
    before = lock.offline_unlocks
    monkeypatch.setenv("BLELOCK_NOKE_URL", closed_port_url())
    code, out, err = run(capsys, "unlock", lock.mac, "--tracking-key", "tech-7")
    assert code == 0, err
    assert out["results"][0]["offline"] is True
    assert lock.offline_unlocks == before + 1


def test_keyless_open_online_then_offline(
    sim: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keyless = sim.world.keyless
    assert keyless is not None
    lock = keyless.locks[0]
    monkeypatch.setattr("sys.stdin", _Lines(keyless.invitation_code))
    code, _, err = run(capsys, "keyless", "activate", "-")
    assert code == 0, err
    before = lock.opens
    code, out, err = run(capsys, "open", lock.locking_device_id)
    assert code == 0, err
    assert out["results"][0]["online"] is True, out
    monkeypatch.setenv("BLELOCK_KEYLESS_URL", closed_port_url())
    code, out, err = run(capsys, "open", lock.locking_device_id)
    assert code == 0, err
    assert out["results"][0]["online"] is False, out
    assert lock.opens == before + 2


class _Lines:
    def __init__(self, text: str) -> None:
        self._text = text + "\n"

    def readline(self) -> str:
        text, self._text = self._text, ""
        return text

    def read(self) -> str:
        return self.readline()

    def isatty(self) -> bool:
        return False
