"""Each BlueZ fault, by BlueZ's own error name, through bleak's BlueZ backend: what blelock
reports, and whether anything retried it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner

from simulators.radio import Advertisement, CharacteristicSpec, ServiceSpec
from tests.bluez.conftest import Served, run


def unlock(capsys: pytest.CaptureFixture[str], sim: Served, index: int = 0) -> tuple[int, Any, str]:
    return run(capsys, "unlock", sim.world.locks[index].mac)


def test_le_connection_abort_by_local_is_retried_inside_bleak(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults(abort_by_local=2)
    connects = sim.bluez.bluez.calls["Connect"]
    code, out, err = unlock(capsys, sim)
    assert code == 0, err
    assert out["results"][0]["attempts"] == 1  # invisible to the visit
    assert sim.bluez.bluez.calls["Connect"] == connects + 3


def test_in_progress_once_is_retried_by_the_connector(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults(connect_in_progress=1)
    code, _, err = unlock(capsys, sim)
    assert code == 0, err


def test_in_progress_always_is_reported_busy_and_not_retried_by_the_visit(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = sim.world.locks[0]
    sim.faults(connect_in_progress=-1)
    before = lock.connections
    code, _, err = unlock(capsys, sim)
    assert code == 1
    assert "org.bluez.Error.InProgress" in err and "already connecting" in err
    assert "wait a few seconds" in err and lock.mac in err
    assert lock.connections == before


def test_scan_in_progress_says_another_program_is_scanning(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults(scan_in_progress=-1)
    code, _, err = run(capsys, "scan", "--seconds", "0.5")
    assert code == 1
    assert "already scanning" in err and "org.bluez.Error.InProgress" in err


def test_software_caused_connection_abort_once_is_retried(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults(software_abort=1)
    code, _, err = unlock(capsys, sim)
    assert code == 0, err


def test_software_caused_connection_abort_always_cannot_connect(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults(software_abort=-1)
    code, _, err = unlock(capsys, sim)
    assert code == 1
    assert "could not connect" in err and "Software caused connection abort" in err


def test_not_connected_is_a_lost_link_the_visit_retries(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults(not_connected=1)
    code, out, err = unlock(capsys, sim)
    assert code == 0, err
    assert out["results"][0]["attempts"] == 2


def test_an_att_error_is_a_refusal_not_retried(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = sim.world.locks[0]
    before = lock.connections
    sim.faults(att_error=0x11, att_errors=-1)  # Insufficient Resources
    code, _, err = unlock(capsys, sim)
    assert code == 1
    assert (
        "refused the Bluetooth operation" in err and "ATT error 0x11: Insufficient Resource" in err
    )
    assert lock.connections == before + 1


def test_att_unlikely_error_is_a_lost_link_the_visit_retries(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults(att_error=0x0E, att_errors=1)
    code, out, err = unlock(capsys, sim)
    assert code == 0, err
    assert out["results"][0]["attempts"] == 2


def test_a_disconnect_during_a_write_is_retried(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults(drop_during_write=1)
    lock = sim.world.locks[0]
    before = lock.unlocks
    code, out, err = unlock(capsys, sim)
    assert code == 0, err
    assert out["results"][0]["attempts"] == 2 and lock.unlocks == before + 1


def test_connection_slots_exhausted_is_out_of_slots(
    sim: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults(connection_slots=0)
    code, _, err = unlock(capsys, sim)
    assert code == 1
    assert "holds no more connections" in err and "wait for other connections" in err


def test_adapter_powered_off_then_back(sim: Served, capsys: pytest.CaptureFixture[str]) -> None:
    sim.on_loop(lambda: sim.bluez.bluez.set_powered(False))
    code, _, err = run(capsys, "scan", "--seconds", "0.5")
    assert code == 1
    assert "Bluetooth is off" in err and "bluetoothctl power on" in err
    sim.on_loop(lambda: sim.bluez.bluez.set_powered(True))
    code, seen, err = run(capsys, "scan", "--seconds", "1")
    assert code == 0, err and seen


class _Echo:
    """A peripheral that answers each write with a notification of the same bytes."""

    address = "EC:60:00:00:00:01"
    SERVICE = "ec600001-0000-4000-8000-0000000000ec"
    CHAR = "ec600002-0000-4000-8000-0000000000ec"

    def advertisement(self) -> Advertisement:
        return Advertisement("echo", {}, (self.SERVICE,), {}, rssi=-50)

    def services(self) -> tuple[ServiceSpec, ...]:
        return (ServiceSpec(self.SERVICE, (CharacteristicSpec(self.CHAR, ("write", "notify")),)),)

    def on_connect(self) -> None: ...

    def on_disconnect(self) -> None: ...

    def on_read(self, char_uuid: str) -> bytes:
        return b""

    def on_write(self, char_uuid: str, data: bytes) -> list[tuple[str, bytes]]:
        return [(self.CHAR, data)]

    def on_subscribe(self, char_uuid: str, enabled: bool) -> None: ...


async def test_notifications_before_start_notify_completes_are_lost(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BlueZ delivers a value only once StartNotify finished: what the device sent before is
    gone, which is why blelock subscribes before its first write."""
    echo = _Echo()
    if echo.address not in served.world.radio.addresses:
        served.on_loop(lambda: served.world.radio.add(echo))
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", served.bluez.bus_address)
    device = await BleakScanner.find_device_by_address(echo.address, timeout=5)
    assert device is not None
    heard: list[bytes] = []
    answered = asyncio.Event()

    def note(_char: object, data: bytearray) -> None:
        heard.append(bytes(data))
        answered.set()

    async with BleakClient(device) as client:
        await client.write_gatt_char(_Echo.CHAR, b"before", response=True)
        await client.start_notify(_Echo.CHAR, note)
        await client.write_gatt_char(_Echo.CHAR, b"after", response=True)
        async with asyncio.timeout(5):
            await answered.wait()
    assert heard == [b"after"]  # "before" was answered while nobody listened: lost
