"""Advertisements from bleak → Sightings, through the pure parser in protocol.advert."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from blelock.config import Settings
from blelock.errors import DeviceNotFound
from blelock.model import MacAddress, Sighting
from blelock.protocol.advert import noke_sighting
from blelock.protocol.noke import SERVICE_UUID
from blelock.transport.backends import resolve_scanner_backend
from blelock.transport.ble import map_bleak_errors

__all__ = ["Found", "find_lock", "scan"]

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
    settings: Settings, callback: Callable[[BLEDevice, AdvertisementData], None]
) -> BleakScanner:
    backend = resolve_scanner_backend(settings.ble_scanner_backend)
    extra: dict[str, Any] = {} if backend is None else {"backend": backend}
    return BleakScanner(callback, SERVICE_FILTER, **extra)


async def scan(settings: Settings, *, duration: float, expect: int | None = None) -> list[Found]:
    """Every lock heard within ``duration`` seconds (or until ``expect`` locks were heard),
    strongest signal first."""
    found: dict[MacAddress, Found] = {}
    enough = asyncio.Event()

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        if (sighting := _sighting(device, adv)) is not None:
            found[sighting.lock_id] = Found(sighting, device)
            if expect is not None and len(found) >= expect:
                enough.set()

    with map_bleak_errors("scanning", on_link=False):
        async with _scanner(settings, heard):
            # Scanning *is* listening for a while: the timeout is the normal way out.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration):
                    await enough.wait()
    return sorted(found.values(), key=lambda f: -(f.sighting.rssi or -999))


async def find_lock(lock_id: MacAddress, settings: Settings) -> Found:
    """Scan until ``lock_id`` advertises, or DeviceNotFound after the scan timeout."""
    seen: asyncio.Future[Found] = asyncio.get_running_loop().create_future()

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        sighting = _sighting(device, adv)
        if sighting is not None and sighting.lock_id == lock_id and not seen.done():
            seen.set_result(Found(sighting, device))

    timeout = settings.timeouts.scan
    with map_bleak_errors("scanning", on_link=False):
        async with _scanner(settings, heard):
            try:
                async with asyncio.timeout(timeout):
                    return await seen
            except TimeoutError:
                raise DeviceNotFound(f"not seen within {timeout:g} s of scanning") from None
