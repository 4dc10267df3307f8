"""The Keyless stand-in's advertisement: the local name and the manufacturer data under
:data:`COMPANY_ID`, encoded (lock side) and parsed (scanner side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from blelock.vendors.keyless.protocol._fields import _uuid_bytes, _uuid_text
from blelock.vendors.keyless.protocol._limits import (
    _LOCAL_NAME,
    ADVERT_VERSION,
    COMPANY_ID,
    SERVICE_UUID,
)

# === advertising ================================================================================


@dataclass(frozen=True, slots=True)
class KeylessAdvert:
    locking_device_id: str
    name: str
    rekey_pending: bool
    low_battery: bool
    rssi: int | None


def local_name_for(locking_device_id: str) -> str:
    return f"KLS-{_uuid_bytes(locking_device_id)[:4].hex().upper()}"


def encode_advert(locking_device_id: str, *, rekey_pending: bool, low_battery: bool) -> bytes:
    """Manufacturer data under :data:`COMPANY_ID`: version, lockingDeviceId, flags."""
    flags = int(rekey_pending) | int(low_battery) << 1
    return bytes([ADVERT_VERSION]) + _uuid_bytes(locking_device_id) + bytes([flags])


def parse_keyless_advert(
    *,
    local_name: str | None,
    manufacturer_data: Mapping[int, bytes],
    service_uuids: Sequence[str] = (),
    rssi: int | None = None,
) -> KeylessAdvert | None:
    """A stand-in Keyless lock, or None for anything else (never raises)."""
    payload = manufacturer_data.get(COMPANY_ID)
    if payload is None or len(payload) != 18 or payload[0] != ADVERT_VERSION:
        return None
    lock_id = _uuid_text(bytes(payload[1:17]))
    name = local_name or ""
    match = _LOCAL_NAME.fullmatch(name)
    advertises_service = SERVICE_UUID in (u.lower() for u in service_uuids)
    if match is None and not advertises_service:
        return None
    if match is not None and match["short"] != payload[1:5].hex().upper():
        return None
    return KeylessAdvert(
        locking_device_id=lock_id,
        name=name,
        rekey_pending=bool(payload[17] & 1),
        low_battery=bool(payload[17] & 2),
        rssi=rssi,
    )
