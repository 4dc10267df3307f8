"""A Nuki Smart Lock through bleak's real BlueZ backend and the emulated org.bluez: the
pairing characteristic's indications, 20-byte pieces both ways, the encrypted commands."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from simulators.world import WorldSpec
from tests.bluez.conftest import BLUEZ_LATENCY, Served, run, serve_in_thread


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    yield from serve_in_thread(WorldSpec(locks=1, seed=6, latency=BLUEZ_LATENCY, nuki_locks=1))


def test_pair_open_and_add_a_code_through_bluez(
    sim: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sim.world.nuki is not None
    lock = sim.world.nuki.locks[0]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{lock.security_pin}\n"))
    code, paired, err = run(capsys, "nuki", "pair", lock.mac, "--with-pin")
    assert code == 0, err
    assert paired["auth_id"] == 1
    code, opened, err = run(capsys, "open", lock.mac, "--vendor", "nuki")
    assert code == 0, err
    assert opened["results"][0]["lock_state"] == "unlocked"
    monkeypatch.setattr("sys.stdin", io.StringIO("345678\n"))
    code, added, err = run(capsys, "nuki", "codes", "add", lock.mac, "--name", "cleaner")
    assert added is not None and added["code_id"] == 1
    assert code == 0, err
    assert sim.on_loop(lambda: [c.name for c in lock.codes.values()]) == ["cleaner"]
    assert sim.on_loop(lambda: lock.lock_actions) == 1
