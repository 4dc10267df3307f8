"""Advertisements from bleak → Sightings, through the vendor plugins' pure parsers.

Nothing here knows a vendor: the caller hands in what recognises its locks (each vendor
plugin does: its service UUIDs to filter on and its advert parser).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from blelock.config import Settings
from blelock.errors import DeviceNotFound, LinkTimeout, lock_context
from blelock.model import Advert, Sighting
from blelock.transport.backends import resolve_scanner_backend
from blelock.transport.bleak_errors import map_bleak_errors

__all__ = [
    "Found",
    "FoundLater",
    "Recogniser",
    "UpdateTarget",
    "advert_of",
    "find_lock",
    "find_update_target",
    "scan",
    "sighted",
]


class Recogniser(Protocol):
    """What tells one vendor's locks in the air (a vendor plugin is one)."""

    @property
    def service_uuids(self) -> Sequence[str]: ...

    def parse_advert(self, advert: Advert) -> Sighting | None: ...


@dataclass(frozen=True, slots=True)
class Found:
    sighting: Sighting
    device: BLEDevice
    """Opaque to everything above transport: handed back to transport.ble.open_link."""


FoundLater = Callable[[], Awaitable["Found | None"]]
"""A sighting still being listened for (a job's own scan): None when nobody listens."""


def advert_of(device: BLEDevice, adv: AdvertisementData) -> Advert:
    return Advert(
        address=device.address,
        local_name=adv.local_name or device.name,
        manufacturer_data=adv.manufacturer_data,
        service_uuids=adv.service_uuids,
        service_data=adv.service_data,
        rssi=adv.rssi,
    )


def _recognise(recognisers: Sequence[Recogniser], advert: Advert) -> Sighting | None:
    for recogniser in recognisers:
        if (sighting := recogniser.parse_advert(advert)) is not None:
            return sighting
    return None


def _filters(recognisers: Sequence[Recogniser], *extra: str) -> list[str]:
    return list(dict.fromkeys([*(u for r in recognisers for u in r.service_uuids), *extra]))


def _scanner(
    settings: Settings,
    callback: Callable[[BLEDevice, AdvertisementData], None],
    service_uuids: list[str],
) -> BleakScanner:
    backend = resolve_scanner_backend(settings.ble_scanner_backend)
    extra: dict[str, Any] = {} if backend is None else {"backend": backend}
    return BleakScanner(callback, service_uuids, **extra)


async def _listen(
    settings: Settings,
    heard: Callable[[BLEDevice, AdvertisementData], None],
    done: asyncio.Future[Any],
    duration: float,
    service_uuids: list[str],
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
    recognisers: Sequence[Recogniser],
    *,
    duration: float,
    expect: int | None = None,
) -> list[Found]:
    """Every lock the recognisers know heard within ``duration`` seconds (or until ``expect``
    locks were heard), strongest signal first."""
    found: dict[tuple[str, str], Found] = {}
    enough: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        sighting = _recognise(recognisers, advert_of(device, adv))
        if sighting is not None:
            found[sighting.vendor, sighting.lock_id] = Found(sighting, device)
            if expect is not None and len(found) >= expect and not enough.done():
                enough.set_result(None)

    await _listen(settings, heard, enough, duration, _filters(recognisers))
    return sorted(found.values(), key=lambda f: -(f.sighting.rssi or -999))


async def find_lock(lock_id: str, settings: Settings, recognisers: Sequence[Recogniser]) -> Found:
    """Scan until ``lock_id`` advertises (as a lock of one of the recognisers), or
    DeviceNotFound after the scan timeout."""
    seen: asyncio.Future[Found] = asyncio.get_running_loop().create_future()

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        sighting = _recognise(recognisers, advert_of(device, adv))
        if sighting is not None and sighting.lock_id == lock_id and not seen.done():
            seen.set_result(Found(sighting, device))

    timeout = settings.timeouts.scan
    if not await _listen(settings, heard, seen, timeout, _filters(recognisers)):
        raise DeviceNotFound(f"not seen within {timeout:g} s of scanning")
    return seen.result()


async def sighted(
    lock_id: str,
    settings: Settings,
    recognisers: Sequence[Recogniser],
    found: Found | FoundLater | None,
) -> Found:
    """The lock's sighting for a visit: ``found`` when in hand; else what it listens for,
    awaited only now, so whatever the caller checked first (keys, a pairing, a connection
    slot) fails before any wait for the radio; else a scan of its own."""
    if found is not None and not isinstance(found, Found):
        found = await found()
    if found is not None:
        return found
    with lock_context(lock_id, "scan"):
        return await find_lock(lock_id, settings, recognisers)


@dataclass(frozen=True, slots=True)
class UpdateTarget:
    """Where a firmware update goes next: the lock itself, or its bootloader already waiting
    (a transfer a lost link or a killed process left half done)."""

    lock: Found | None
    bootloader: BLEDevice | None


async def find_update_target(
    lock_id: str,
    settings: Settings,
    recogniser: Recogniser,
    *,
    bootloader_only: bool = False,
    bootloader_names: Collection[str] = (),
) -> UpdateTarget:
    """Scan until the lock or its Secure DFU bootloader (advertising 0xFE59) is heard;
    DeviceNotFound after the scan timeout.

    The bootloader is the one at the lock's address + 1 (nrfutil's rule for an unbonded
    bootloader) or at the lock's own address (a bonded one keeps it). A vendor whose
    bootloaders advertise a known name (``bootloader_names``) but may sit at another address
    also gets the one bootloader of that name heard during the whole scan; two or more of them
    are refused rather than guessed between."""
    # Here, not at the top: finding a lock to unlock needs no DFU codes.
    from blelock.protocol.dfu import SECURE_DFU_SERVICE_UUID, bootloader_address, dfu_service_kind

    seen: asyncio.Future[UpdateTarget] = asyncio.get_running_loop().create_future()
    addresses = {bootloader_address(lock_id), lock_id.upper()}
    names = {name.upper() for name in bootloader_names}
    by_name: dict[str, BLEDevice] = {}

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        if seen.done():
            return
        is_dfu = dfu_service_kind(adv.service_uuids) == "secure"
        if is_dfu and device.address.upper() in addresses:
            seen.set_result(UpdateTarget(None, device))
            return
        name = (adv.local_name or device.name or "").upper()
        if is_dfu and name in names:
            by_name[device.address.upper()] = device
        sighting = None if bootloader_only else recogniser.parse_advert(advert_of(device, adv))
        if sighting is not None and sighting.lock_id == lock_id:
            seen.set_result(UpdateTarget(Found(sighting, device), None))

    timeout = settings.timeouts.scan
    filters = _filters([recogniser], SECURE_DFU_SERVICE_UUID)
    if not await _listen(settings, heard, seen, timeout, filters):
        if len(by_name) == 1:
            return UpdateTarget(None, next(iter(by_name.values())))
        if by_name:
            raise DeviceNotFound(
                f"{len(by_name)} bootloaders named {'/'.join(sorted(names))} advertise "
                f"({', '.join(sorted(by_name))}) and none at this lock's address: cannot tell "
                "which is this lock's",
                hint="update one lock at a time, or wait until the others leave DFU mode",
            )
        what = "its bootloader was" if bootloader_only else "neither it nor its bootloader was"
        raise DeviceNotFound(f"{what} seen within {timeout:g} s of scanning")
    return seen.result()
