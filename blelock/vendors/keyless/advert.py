"""Keyless adverts → :class:`~blelock.model.Sighting`: the stand-in advert carries the lock's
lockingDeviceId (docs/keyless-ble-standin.md). The plugin's scan and the jobs' search for one
lock both recognise a lock through :data:`ADVERTS`.

Light at import time: the stand-in protocol's parser is imported with the first advert.
"""

from __future__ import annotations

from blelock.model import Advert, LockState, Sighting

__all__ = ["ADVERTS", "SERVICE_UUID", "KeylessAdverts"]

SERVICE_UUID = "4b4c5300-0001-4000-8000-7374616e6469"
"""The stand-in's GATT service (docs/keyless-ble-standin.md); the protocol's constant, repeated
so that scanning imports no protocol code (a test checks they agree)."""


class KeylessAdverts:
    """A :class:`blelock.transport.scan.Recogniser` for Keyless padlocks."""

    vendor = "keyless"
    service_uuids = (SERVICE_UUID,)

    def parse_advert(self, advert: Advert) -> Sighting | None:
        from blelock.vendors.keyless.protocol import parse_keyless_advert

        parsed = parse_keyless_advert(
            local_name=advert.local_name,
            manufacturer_data=advert.manufacturer_data,
            service_uuids=advert.service_uuids,
            rssi=advert.rssi,
        )
        if parsed is None:
            return None
        return Sighting(
            vendor=self.vendor,
            lock_id=parsed.locking_device_id,
            address=advert.address,
            name=parsed.name,
            hardware="PADLOCK",
            firmware=None,
            state=LockState.UNKNOWN,  # the advert carries no lock state
            rssi=advert.rssi,
        )


ADVERTS = KeylessAdverts()
