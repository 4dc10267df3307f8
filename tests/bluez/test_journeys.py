"""blelock's main journeys through bleak's real BlueZ backend (the Raspberry Pi's code path):
scan, online and offline opens for each vendor, a firmware update, the kiosk."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.bluez.conftest import Served, run
from tests.conftest import closed_port_url
from tests.service.heard import listed_once_heard

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


def test_firmware_update_then_a_stale_cache_is_refreshed(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """BlueZ keeps the GATT database it read before the update (the stale-cache fault); the
    new firmware moved every handle. The next unlock is refused on the old handles, clears the
    cache, finds the lock again and opens it."""
    lock = sim.world.locks[1]
    assert lock.hardware == "3P" and lock.firmware == (2, 10)
    sim.faults(stale_cache=True)
    code, out, err = run(capsys, "firmware-update", lock.mac, str(PACKAGES / "noke-3p-2.11.zip"))
    assert code == 0, err
    assert lock.firmware == (2, 11)
    removed = sim.bluez.bluez.calls["RemoveDevice"]
    before = lock.unlocks
    code, out, err = run(capsys, "unlock", lock.mac)
    assert code == 0, err
    (row,) = out["results"]
    assert row["opened"] and row["attempts"] == 2  # the refused attempt, then the fresh one
    assert lock.unlocks == before + 1
    assert sim.bluez.bluez.calls["RemoveDevice"] == removed + 1


async def test_the_kiosk_unlocks_through_bluez(sim: Served) -> None:
    from blelock.config import load_settings
    from blelock.service.api import create_app
    from blelock.service.runner import Runner

    token = "kiosk-test-token-0123456789"
    settings = load_settings(
        environ=dict(os.environ) | {"BLELOCK_SERVE_TOKEN": token, "BLELOCK_SYNC_INTERVAL": "3600"},
        read_file=False,
    )
    lock = sim.world.locks[0]
    before = lock.unlocks
    async with Runner(settings, scan_window=0.3) as runner:
        assert settings.serve_token is not None
        app = create_app(runner, settings.serve_token)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://kiosk",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            listed = await listed_once_heard(runner, client, [lock.mac])
            assert ("noke", lock.mac) in {(x["vendor"], x["lock_id"]) for x in listed}
            for _ in range(2):
                opened = await client.post(f"/v1/locks/{lock.mac}/unlock", json={})
                assert opened.status_code == 200, opened.text
    assert lock.unlocks == before + 2
