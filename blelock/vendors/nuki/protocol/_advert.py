"""What a Nuki Smart Lock's advertisement says: an iBeacon (Apple's company id 76, type
0x02) whose UUID is the keyturner service and whose last byte's bit 0 says a state change is
pending (the client should connect and read the states: the lock pushes nothing unless
connected), and, in pairing mode, service data under the pairing service's UUID."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from blelock.vendors.nuki.protocol._gatt import (
    KEYTURNER_SERVICE,
    PAIRING_SERVICE,
    ULTRA_PAIRING_SERVICE,
)

__all__ = ["APPLE_COMPANY_ID", "NukiAdvert", "ibeacon", "parse_nuki_advert"]

APPLE_COMPANY_ID = 76
_IBEACON = 0x02
_KEYTURNER = uuid.UUID(KEYTURNER_SERVICE).bytes


@dataclass(frozen=True, slots=True)
class NukiAdvert:
    name: str
    ultra: bool
    pairing_mode: bool
    state_changed: bool


def ibeacon(state_changed: bool, *, major: int = 0, minor: int = 0, tx_power: int = 0xC4) -> bytes:
    """The manufacturer data a lock sends (for the simulator and the tests)."""
    last = (tx_power & 0xFE) | int(state_changed)
    return (
        bytes([_IBEACON, 0x15])
        + _KEYTURNER
        + major.to_bytes(2, "big")
        + minor.to_bytes(2, "big")
        + bytes([last])
    )


def parse_nuki_advert(
    *,
    local_name: str | None,
    manufacturer_data: Mapping[int, bytes],
    service_uuids: Sequence[str],
    service_data: Mapping[str, bytes],
) -> NukiAdvert | None:
    """A Nuki Smart Lock's advert, or None for anything else (never raises)."""
    beacon = manufacturer_data.get(APPLE_COMPANY_ID, b"")
    is_beacon = len(beacon) >= 23 and beacon[0] == _IBEACON and beacon[2:18] == _KEYTURNER
    uuids = {u.lower() for u in (*service_uuids, *service_data)}
    name = local_name or ""
    if not (is_beacon or KEYTURNER_SERVICE in uuids or name.startswith("Nuki_")):
        return None
    data_uuids = {u.lower() for u in service_data}
    ultra = ULTRA_PAIRING_SERVICE in uuids
    return NukiAdvert(
        name=name or "Nuki",
        ultra=ultra,
        pairing_mode=bool(data_uuids & {PAIRING_SERVICE, ULTRA_PAIRING_SERVICE}),
        state_changed=is_beacon and bool(beacon[22] & 1),
    )
