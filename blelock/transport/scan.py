"""Advertisements from bleak → Sightings, through the pure parser in protocol.advert."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from blelock.config import Settings
from blelock.errors import DeviceNotFound, LinkTimeout
from blelock.model import MacAddress, Sighting, Vendor
from blelock.protocol.advert import lock_sighting, noke_sighting
from blelock.protocol.dfu import SECURE_DFU_SERVICE_UUID, bootloader_address, dfu_service_kind
from blelock.protocol.keyless import SERVICE_UUID as KEYLESS_SERVICE_UUID
from blelock.protocol.keyless import KeylessAdvert, parse_keyless_advert
from blelock.protocol.noke import SERVICE_UUID
from blelock.transport.backends import resolve_scanner_backend
from blelock.transport.ble import map_bleak_errors

__all__ = [
    "Found",
    "KeylessFound",
    "UpdateTarget",
    "find_keyless_lock",
    "find_lock",
    "find_update_target",
    "scan",
]

SERVICE_FILTER = [SERVICE_UUID]


@dataclass(frozen=True, slots=True)
class Found:
    sighting: Sighting
    device: BLEDevice
    """Opaque to everything above transport: handed back to transport.ble.open_link."""


def _sighting(device: BLEDevice, adv: AdvertisementData) -> Sighting | None:
    return noke_sighting(
        address=device.address,
        local_name=adv.local_name or device.name,
        manufacturer_data=adv.manufacturer_data,
        service_uuids=adv.service_uuids,
        rssi=adv.rssi,
    )


def _scanner(
    settings: Settings,
    callback: Callable[[BLEDevice, AdvertisementData], None],
    service_uuids: list[str] = SERVICE_FILTER,
) -> BleakScanner:
    backend = resolve_scanner_backend(settings.ble_scanner_backend)
    extra: dict[str, Any] = {} if backend is None else {"backend": backend}
    return BleakScanner(callback, service_uuids, **extra)


async def _listen(
    settings: Settings,
    heard: Callable[[BLEDevice, AdvertisementData], None],
    done: asyncio.Future[Any],
    duration: float,
    service_uuids: list[str] = SERVICE_FILTER,
) -> bool:
    """Scan until ``done`` completes (True) or ``duration`` passes (False). Starting and
    stopping the adapter are bounded too: a wedged adapter must not hang a kiosk."""
    budget = duration + 2 * settings.timeouts.gatt
    with map_bleak_errors("scanning", on_link=False):
        try:
            async with asyncio.timeout(budget), _scanner(settings, heard, service_uuids):
                try:
                    async with asyncio.timeout(duration):
                        await asyncio.shield(done)
                except TimeoutError:
                    return False  # scanning *is* listening for a while
                return True
        except TimeoutError:
            raise LinkTimeout(
                "scanning: the Bluetooth adapter did not start or stop in time",
                hint="check that Bluetooth is on and the adapter is present",
            ) from None


async def scan(
    settings: Settings,
    *,
    duration: float,
    expect: int | None = None,
    vendor: Vendor | None = None,
) -> list[Found]:
    """Every lock heard within ``duration`` seconds (or until ``expect`` locks were heard), of
    every vendor or only ``vendor``, strongest signal first."""
    found: dict[str, Found] = {}
    enough: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        sighting = lock_sighting(
            address=device.address,
            local_name=adv.local_name or device.name,
            manufacturer_data=adv.manufacturer_data,
            service_uuids=adv.service_uuids,
            rssi=adv.rssi,
        )
        if sighting is not None and vendor in (None, sighting.vendor):
            found[sighting.lock_id] = Found(sighting, device)
            if expect is not None and len(found) >= expect and not enough.done():
                enough.set_result(None)

    await _listen(settings, heard, enough, duration, [SERVICE_UUID, KEYLESS_SERVICE_UUID])
    return sorted(found.values(), key=lambda f: -(f.sighting.rssi or -999))


async def find_lock(lock_id: MacAddress, settings: Settings) -> Found:
    """Scan until ``lock_id`` advertises, or DeviceNotFound after the scan timeout."""
    seen: asyncio.Future[Found] = asyncio.get_running_loop().create_future()

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        sighting = _sighting(device, adv)
        if sighting is not None and sighting.lock_id == lock_id and not seen.done():
            seen.set_result(Found(sighting, device))

    timeout = settings.timeouts.scan
    if not await _listen(settings, heard, seen, timeout):
        raise DeviceNotFound(f"not seen within {timeout:g} s of scanning")
    return seen.result()


@dataclass(frozen=True, slots=True)
class UpdateTarget:
    """Where a firmware update goes next: the lock itself, or its bootloader already waiting
    (a transfer a lost link or a killed process left half done)."""

    lock: Found | None
    bootloader: BLEDevice | None


async def find_update_target(
    lock_id: MacAddress, settings: Settings, *, bootloader_only: bool = False
) -> UpdateTarget:
    """Scan until the lock or its Secure DFU bootloader (the lock's address + 1, advertising
    0xFE59) is heard; DeviceNotFound after the scan timeout."""
    seen: asyncio.Future[UpdateTarget] = asyncio.get_running_loop().create_future()
    bootloader = bootloader_address(lock_id)

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        if seen.done():
            return
        is_dfu = dfu_service_kind(adv.service_uuids) == "secure"
        if is_dfu and device.address.upper() == bootloader:
            seen.set_result(UpdateTarget(None, device))
            return
        sighting = None if bootloader_only else _sighting(device, adv)
        if sighting is not None and sighting.lock_id == lock_id:
            seen.set_result(UpdateTarget(Found(sighting, device), None))

    timeout = settings.timeouts.scan
    filters = [SERVICE_UUID, SECURE_DFU_SERVICE_UUID]
    if not await _listen(settings, heard, seen, timeout, filters):
        what = "its bootloader was" if bootloader_only else "neither it nor its bootloader was"
        raise DeviceNotFound(f"{what} seen within {timeout:g} s of scanning")
    return seen.result()


@dataclass(frozen=True, slots=True)
class KeylessFound:
    advert: KeylessAdvert
    device: BLEDevice


async def find_keyless_lock(locking_device_id: str, settings: Settings) -> KeylessFound:
    """Scan until the Keyless lock ``locking_device_id`` advertises (its advert carries the
    id), or DeviceNotFound after the scan timeout."""
    wanted = locking_device_id.lower()
    seen: asyncio.Future[KeylessFound] = asyncio.get_running_loop().create_future()

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        advert = parse_keyless_advert(
            local_name=adv.local_name or device.name,
            manufacturer_data=adv.manufacturer_data,
            service_uuids=adv.service_uuids,
            rssi=adv.rssi,
        )
        if advert is not None and advert.locking_device_id == wanted and not seen.done():
            seen.set_result(KeylessFound(advert, device))

    timeout = settings.timeouts.scan
    if not await _listen(settings, heard, seen, timeout, [KEYLESS_SERVICE_UUID]):
        raise DeviceNotFound(f"not seen within {timeout:g} s of scanning")
    return seen.result()
