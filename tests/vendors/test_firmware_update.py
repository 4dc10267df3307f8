"""blelock.dfu over bleak and the simulated radio, against the simulated secure bootloader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from bleak import BleakScanner

from blelock.config import Settings, load_settings
from blelock.dfu import CONNECTIONS, DfuOutcome, enter_bootloader, update_firmware
from blelock.errors import (
    CloudRejected,
    DeviceNotFound,
    LinkLost,
    LockRefused,
    RemoteProtocolError,
    UsageError,
)
from blelock.jobs import context, open_store
from blelock.model import MacAddress
from blelock.protocol import dfu, dfu_init, dfu_package, dfu_transfer
from blelock.transport.base import LinkOpener
from blelock.transport.ble import open_link
from blelock.transport.scan import find_update_target
from blelock.vendors.noke import jobs
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from simulators.bleak_backend import SimBleakScanner
from simulators.dfu_target import NO_FLASH_TIME, SimButtonlessApp, SimDfuTarget
from simulators.faults import LinkFaults
from simulators.radio import Radio
from simulators.radio_server import RadioServer
from simulators.world import RunningWorld
from tests.conftest import FAST, settings_for

IMAGES = Path(__file__).resolve().parents[2] / "firmware_images"
TRUSTED = dfu_init.load_public_key((IMAGES / "test_signing_key.pub.pem").read_bytes())
LOCK = MacAddress("C7:E6:B0:C6:75:38")
PACKAGE_4I = dfu_package.read_package(IMAGES / "noke-4i-3.15.zip")
PACKAGE_3P = dfu_package.read_package(IMAGES / "noke-3p-2.11.zip")


async def update(
    mac: MacAddress,
    package: dfu_package.DfuPackage,
    settings: Settings,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> DfuOutcome:
    """A whole Nokē firmware update with the store open, as a command runs it."""
    async with open_store(settings) as store:
        ctx = context(NOKE, settings, store)
        return await jobs.update(ctx, mac, package, on_progress=on_progress)


class Bench:
    def __init__(self, radio: Radio, target: SimDfuTarget, opener: LinkOpener) -> None:
        self.radio, self.target, self.open_link = radio, target, opener


async def bench(faults: LinkFaults | None, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bench]:
    radio = Radio(FAST)
    target = SimDfuTarget(LOCK, TRUSTED, hardware="4I", flash=NO_FLASH_TIME)
    radio.add(target, faults)
    async with await RadioServer.start(radio) as server:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", server.address)
        device = await BleakScanner.find_device_by_address(
            target.address, timeout=5, backend=SimBleakScanner
        )
        assert device is not None
        settings = load_settings(
            environ={
                "BLELOCK_BLE_CLIENT_BACKEND": "simulators.bleak_backend:SimBleakClient",
                "BLELOCK_BLE_SCANNER_BACKEND": "simulators.bleak_backend:SimBleakScanner",
            },
            read_file=False,
        )
        yield Bench(radio, target, lambda: open_link(device, settings, name="NOKE_FW"))


@pytest.fixture
async def steady(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bench]:
    async for b in bench(None, monkeypatch):
        yield b


@pytest.fixture
async def drops_once(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bench]:
    async for b in bench(LinkFaults(drop_link_after_writes=150, drop_link_times=1), monkeypatch):
        yield b


@pytest.fixture
async def drops_always(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bench]:
    async for b in bench(LinkFaults(drop_link_after_writes=50, drop_link_times=-1), monkeypatch):
        yield b


@pytest.mark.parametrize("prn", [0, 4, 12])
async def test_a_package_installs_and_boots(steady: Bench, prn: int) -> None:
    seen: list[int] = []
    outcome = await update_firmware(
        LOCK, steady.open_link, PACKAGE_4I, prn=prn, on_progress=lambda p: seen.append(p.confirmed)
    )
    assert (outcome.version, outcome.size, outcome.connections) == ("3.15", 65_000, 1)
    assert outcome.bytes_sent == 65_000
    # The link negotiated ATT MTU 247 (the bootloader's most): 244-byte packets.
    per_object = [min(4096, 65_000 - start) for start in range(0, 65_000, 4096)]
    assert steady.target.packets_received == 1 + sum(-(-size // 244) for size in per_object)
    assert steady.target.firmware_version == dfu.parse_version_text("3.15")
    assert seen == sorted(seen) and seen[-1] == PACKAGE_4I.size


async def test_a_dropped_link_resumes_where_it_stopped(drops_once: Bench) -> None:
    outcome = await update_firmware(LOCK, drops_once.open_link, PACKAGE_4I)
    target = drops_once.target
    assert outcome.connections == 2 and target.firmware_version == dfu.parse_version_text("3.15")
    assert target.init_packets_accepted == 1  # the init packet was not sent again
    size = dfu_transfer.packet_size_for_mtu(dfu.BOOTLOADER_MAX_ATT_MTU)  # negotiated: 247
    one_pass = -(-PACKAGE_4I.size // size) + -(-len(PACKAGE_4I.init_packet) // size)
    # Resuming re-sends at most the object the link dropped in; restarting would re-send the
    # ~150 packets before the drop.
    assert target.packets_received <= one_pass + dfu.DATA_OBJECT_MAX_SIZE // size
    # Across both connections: the whole image, plus at most the object the drop cut short.
    assert PACKAGE_4I.size <= outcome.bytes_sent <= PACKAGE_4I.size + dfu.DATA_OBJECT_MAX_SIZE


async def test_a_package_for_other_hardware_is_refused_and_nothing_changes(
    steady: Bench,
) -> None:
    with pytest.raises(LockRefused) as caught:
        await update_firmware(LOCK, steady.open_link, PACKAGE_3P)
    assert "hardware" in caught.value.message.lower()
    assert (caught.value.lock_id, caught.value.step) == (LOCK, "firmware update")
    assert steady.target.firmware_version == dfu.parse_version_text("3.14")


async def test_a_link_that_keeps_dropping_gives_up(drops_always: Bench) -> None:
    with pytest.raises(LinkLost):
        await update_firmware(LOCK, drops_always.open_link, PACKAGE_4I)
    assert drops_always.target.connections == CONNECTIONS
    assert drops_always.target.firmware_version == dfu.parse_version_text("3.14")


def test_the_simulated_bootloaders_trust_the_key_the_images_are_signed_with() -> None:
    from simulators.firmware import TEST_SIGNING_PUBLIC_KEY_PEM

    assert (IMAGES / "test_signing_key.pub.pem").read_bytes() == TEST_SIGNING_PUBLIC_KEY_PEM


async def test_a_cloud_that_refuses_fwupdate_leaves_the_lock_as_it_was(
    running_world: RunningWorld,
) -> None:
    running_world.world.cloud.faults.fail_with_500 = 1
    lock = running_world.world.locks[0]
    with pytest.raises(CloudRejected) as caught:
        await update(MacAddress(lock.mac), PACKAGE_4I, settings_for(running_world))
    assert caught.value.step == "get commands from the cloud"
    assert not lock.in_dfu_mode and lock.firmware == (3, 14)
    assert not running_world.world.bootloaders[0].in_dfu_mode


async def test_an_update_stopped_midway_resumes_after_the_dfu_window_closed(
    running_world: RunningWorld,
) -> None:
    lock, bootloader = running_world.world.locks[0], running_world.world.bootloaders[0]
    now = [0.0]
    bootloader.clock = lambda: now[0]
    mac, settings = MacAddress(lock.mac), settings_for(running_world)

    def stop_after_two_objects(confirmed: int) -> None:
        if confirmed >= 2 * dfu.DATA_OBJECT_MAX_SIZE:
            first.cancel()  # as Ctrl-C or a kill would: mid-transfer, nothing cleaned up

    first = asyncio.ensure_future(
        update(mac, PACKAGE_4I, settings, on_progress=stop_after_two_objects)
    )
    with pytest.raises(asyncio.CancelledError):
        await first
    held = bootloader.verified_bytes
    assert 2 * dfu.DATA_OBJECT_MAX_SIZE <= held < PACKAGE_4I.size and lock.in_dfu_mode

    now[0] += 60.0  # nobody came back within the window: the lock reboots its old firmware
    outcome = await update(mac, PACKAGE_4I, settings)
    assert bootloader.windows_expired == 1  # so this run went through the cloud's fwupdate again
    assert lock.firmware == (3, 15) and outcome.version == "3.15"
    assert bootloader.init_packets_accepted == 1  # the saved init packet was kept
    assert outcome.bytes_sent <= PACKAGE_4I.size - held


# --- packages made by nrfutil 6.1.7 itself (tests/fixtures/nrfutil/) --------------------------

NRFUTIL = Path(__file__).resolve().parents[1] / "fixtures" / "nrfutil"
NRFUTIL_KEY = dfu_init.load_public_key((NRFUTIL / "test_key.pub.pem").read_bytes())
NRFUTIL_APPS = {
    name: dfu_package.read_package(NRFUTIL / f"{name}.zip")
    for name in ("app", "app_sha256", "app_ecdsa", "app_debug")
}


@pytest.mark.parametrize("name", ["app", "app_sha256", "app_ecdsa"])
@pytest.mark.parametrize("prn", [0, 12])
async def test_an_nrfutil_package_installs_over_the_radio(
    name: str, prn: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulated bootloader trusting the fixture's key, built for nrfutil's hw_version 52
    and the SoftDevice its sd_req names, takes nrfutil's package from blelock's driver."""
    package = NRFUTIL_APPS[name]
    radio = Radio(FAST)
    target = SimDfuTarget(LOCK, NRFUTIL_KEY, hardware=52, firmware_version=6, flash=NO_FLASH_TIME)
    radio.add(target)
    async with await RadioServer.start(radio) as server:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", server.address)
        device = await BleakScanner.find_device_by_address(
            target.address, timeout=5, backend=SimBleakScanner
        )
        assert device is not None
        settings = load_settings(
            environ={
                "BLELOCK_BLE_CLIENT_BACKEND": "simulators.bleak_backend:SimBleakClient",
                "BLELOCK_BLE_SCANNER_BACKEND": "simulators.bleak_backend:SimBleakScanner",
            },
            read_file=False,
        )
        outcome = await update_firmware(
            MacAddress(LOCK), lambda: open_link(device, settings, name="DfuTarg"), package, prn=prn
        )
    assert (target.firmware_version, target.updates, outcome.size) == (7, 1, 9000)
    assert not target.refusals


@pytest.mark.parametrize(
    ("name", "options", "extended"),
    [
        ("app_debug", {}, dfu.ExtendedError.SIGNATURE_MISSING),  # --debug-mode: unsigned
        ("app", {"softdevice_id": 0x0101}, dfu.ExtendedError.SD_VERSION_FAILURE),
        ("app", {"firmware_version": 8}, dfu.ExtendedError.FW_VERSION_FAILURE),
        ("app", {"hardware": 40}, dfu.ExtendedError.HW_VERSION_FAILURE),
    ],
)
def test_an_nrfutil_package_is_refused_with_the_sdk_codes(
    name: str, options: dict[str, object], extended: dfu.ExtendedError
) -> None:
    package = dfu_package.read_package(NRFUTIL / f"{name}.zip")
    settings: dict[str, object] = {"hardware": 52, "firmware_version": 6} | options
    target = SimDfuTarget(LOCK, NRFUTIL_KEY, **settings)  # type: ignore[arg-type]
    target.on_connect()
    target.on_subscribe(dfu.CONTROL_POINT_UUID, True)
    session = dfu_transfer.DfuSession(package, packet_size=244)
    pending: list[bytes] = []
    while (action := session.next_action()) is not None:
        if action.characteristic is not None:
            pending += [value for _, value in target.on_write(action.characteristic, action.data)]
        if action.expects_notification:
            session.receive(pending.pop(0))
    assert session.refusal is not None and session.refusal.extended is extended
    assert target.firmware_version == settings["firmware_version"] and target.updates == 0


@pytest.mark.parametrize(
    ("name", "kinds"), [("bl", "bootloader"), ("sd", "softdevice"), ("sd_bl_app", "softdevice+")]
)
def test_nrfutil_packages_blelock_does_not_send_are_refused_before_any_radio_work(
    name: str, kinds: str
) -> None:
    with pytest.raises(UsageError, match=f"updates the {kinds}") as refused:
        dfu_package.read_package(NRFUTIL / f"{name}.zip")
    assert "application updates only" in str(refused.value)
    assert dfu_package.read_package(NRFUTIL / f"{name}.zip", for_update=False).images


# --- finding the bootloader -------------------------------------------------------------------


async def found_bootloaders(
    targets: list[SimDfuTarget], lock: str, monkeypatch: pytest.MonkeyPatch, **options: object
) -> str:
    radio = Radio(FAST)
    for each in targets:
        radio.add(each)
    async with await RadioServer.start(radio) as server:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", server.address)
        settings = load_settings(
            environ={
                "BLELOCK_BLE_CLIENT_BACKEND": "simulators.bleak_backend:SimBleakClient",
                "BLELOCK_BLE_SCANNER_BACKEND": "simulators.bleak_backend:SimBleakScanner",
                # A scan for a bootloader by name listens this long whatever it hears: long
                # enough that a loaded machine's stalled loop still hears adverts 1 ms apart.
                "BLELOCK_SCAN_TIMEOUT": "1.0",
            },
            read_file=False,
        )
        target = await find_update_target(lock, settings, NOKE, **options)  # type: ignore[arg-type]
    assert target.lock is None and target.bootloader is not None
    return target.bootloader.address.upper()


async def test_the_bootloader_is_found_at_the_lock_address_plus_one_or_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unbonded = SimDfuTarget("AA:BB:CC:DD:EE:01", TRUSTED)
    assert await found_bootloaders([unbonded], "AA:BB:CC:DD:EE:01", monkeypatch) == (
        "AA:BB:CC:DD:EE:02"
    )
    # A bonded bootloader keeps the application's address (buttonless 8EC90004).
    bonded = SimDfuTarget("AA:BB:CC:DD:EE:10", TRUSTED)
    assert await found_bootloaders([bonded], "AA:BB:CC:DD:EE:11", monkeypatch) == (
        "AA:BB:CC:DD:EE:11"
    )


async def test_a_bootloader_elsewhere_is_found_by_its_advertised_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elsewhere = SimDfuTarget("11:22:33:44:55:66", TRUSTED)  # advertises NOKE_FW at ...:67
    lock = "AA:BB:CC:DD:EE:01"
    assert await found_bootloaders(
        [elsewhere], lock, monkeypatch, bootloader_names=jobs.BOOTLOADER_NAMES
    ) == ("11:22:33:44:55:67")
    with pytest.raises(DeviceNotFound):  # without the vendor's names: not this lock's
        await found_bootloaders([SimDfuTarget("11:22:33:44:55:66", TRUSTED)], lock, monkeypatch)
    two = [SimDfuTarget("11:22:33:44:55:66", TRUSTED), SimDfuTarget("11:22:33:44:55:80", TRUSTED)]
    with pytest.raises(DeviceNotFound, match="2 bootloaders named"):
        await found_bootloaders(two, lock, monkeypatch, bootloader_names=jobs.BOOTLOADER_NAMES)


async def test_a_nordic_app_enters_its_bootloader_by_the_buttonless_characteristic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootloader = SimDfuTarget(LOCK, TRUSTED, in_dfu_mode=False, flash=NO_FLASH_TIME)
    app = SimButtonlessApp(bootloader)
    radio = Radio(FAST)
    radio.add(app)
    radio.add(bootloader)
    async with await RadioServer.start(radio) as server:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", server.address)
        device = await BleakScanner.find_device_by_address(LOCK, timeout=5, backend=SimBleakScanner)
        assert device is not None
        settings = load_settings(
            environ={
                "BLELOCK_BLE_CLIENT_BACKEND": "simulators.bleak_backend:SimBleakClient",
                "BLELOCK_BLE_SCANNER_BACKEND": "simulators.bleak_backend:SimBleakScanner",
            },
            read_file=False,
        )
        address = await enter_bootloader(
            MacAddress(LOCK),
            lambda: open_link(device, settings, name="Nordic_App"),
            dfu.BUTTONLESS_UNBONDED_UUID,
        )
        assert address == bootloader.address == dfu.bootloader_address(LOCK)
        assert app.rebooted and bootloader.in_dfu_mode
        found = await BleakScanner.find_device_by_address(
            address, timeout=5, backend=SimBleakScanner
        )
        assert found is not None
        outcome = await update_firmware(
            MacAddress(LOCK), lambda: open_link(found, settings, name="NOKE_FW"), PACKAGE_4I
        )
    assert outcome.size == PACKAGE_4I.size and bootloader.updates == 1


def test_buttonless_codec_and_addresses() -> None:
    assert dfu.encode_enter_bootloader() == b"\x01"
    assert dfu.decode_buttonless_response(bytes.fromhex("200101")) is dfu.ButtonlessResult.SUCCESS
    assert dfu.decode_buttonless_response(bytes.fromhex("200107")).name == "NOT_BONDED"
    for bad in ("2001", "600101", "200201"):
        with pytest.raises(RemoteProtocolError):
            dfu.decode_buttonless_response(bytes.fromhex(bad))
    mac = "AA:BB:CC:DD:EE:FF"
    assert dfu.bootloader_address_after(mac, dfu.BUTTONLESS_UNBONDED_UUID) == "AA:BB:CC:DD:EE:00"
    assert dfu.bootloader_address_after(mac.lower(), dfu.BUTTONLESS_BONDED_UUID) == mac
