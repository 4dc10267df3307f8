"""Nokē adverts → :class:`~blelock.model.Sighting`. Pure; no bleak types (noke.md §1)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from blelock.errors import UsageError
from blelock.model import LockState, MacAddress, Sighting, parse_mac
from blelock.vendors.noke.protocol import COMPANY_ID, SERVICE_UUID

__all__ = ["NAME", "noke_sighting"]

NAME = "noke"
"""The plugin's name, as sightings carry it."""

# NOKE + 2-char hardware type + separator + 12 hex digits of the MAC, e.g. NOKE3K_C7E6B0C67538.
_NOKE_NAME = re.compile(r"NOKE(?P<hw>[0-9A-Z]{2}).(?P<mac>[0-9A-F]{12})", re.IGNORECASE)

# Android's 3-bit state in flags bits 7..5 for HD ("I") locks; 1 and 6 have no constant.
_HD_STATES = {
    0: LockState.UNLOCKED,
    2: LockState.UNSHACKLED,
    3: LockState.LOCKED,
    4: LockState.UNSHACKLING,
    5: LockState.UNLOCKING,
    7: LockState.LOCKED_NO_MAGNET,
}


def _lock_state(hardware: str, flags: int) -> LockState:
    if "I" in hardware:
        return _HD_STATES.get(flags >> 5, LockState.UNKNOWN)
    if hardware == "2U":
        return LockState.UNLOCKED if (flags >> 5) & 0b11 == 0 else LockState.LOCKED
    return LockState.UNKNOWN  # padlocks without state bits: the advert says nothing


def _manufacturer_payload(manufacturer_data: Mapping[int, bytes]) -> bytes:
    """The lock's manufacturer data whatever company id it is filed under: Nokē's libraries
    read it without checking the id (noke-fidelity.md), and 0x038B is only a third-party
    table's value. The expected id wins when several are present."""
    if COMPANY_ID in manufacturer_data:
        return manufacturer_data[COMPANY_ID]
    return next(iter(manufacturer_data.values()), b"")


def noke_sighting(
    *,
    address: str,
    local_name: str | None,
    manufacturer_data: Mapping[int, bytes],
    service_uuids: Sequence[str],
    rssi: int | None,
) -> Sighting | None:
    """A Nokē lock in normal (not firmware-update) mode, or None for anything else."""
    name = local_name or ""
    match = _NOKE_NAME.fullmatch(name)
    is_noke = match is not None or SERVICE_UUID in (uuid.lower() for uuid in service_uuids)
    if not is_noke or "_FW" in name.upper():
        return None
    hardware = match["hw"].upper() if match else "??"  # a name of another shape says nothing
    mac: MacAddress
    if match:
        mac = parse_mac(match["mac"])
    else:
        try:
            mac = parse_mac(address)  # Linux/Windows: the address; macOS gives a UUID here
        except UsageError:
            return None
    payload = _manufacturer_payload(manufacturer_data)
    firmware = f"{hardware}-{payload[1]}.{payload[2]}" if len(payload) >= 3 else None
    state = _lock_state(hardware, payload[0]) if payload else LockState.UNKNOWN
    return Sighting(
        vendor=NAME,
        lock_id=mac,
        address=address,
        name=name,
        hardware=hardware,
        firmware=firmware,
        state=state,
        rssi=rssi,
    )
