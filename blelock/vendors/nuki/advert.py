"""Nuki adverts → :class:`~blelock.model.Sighting`: an iBeacon under the keyturner service,
with pairing mode and a pending state change in it. The plugin's scan and the jobs' search for
one lock both recognise a Smart Lock through :data:`ADVERTS`.

Light at import time: the protocol's parser is imported with the first advert.
"""

from __future__ import annotations

from blelock.errors import UsageError
from blelock.model import Advert, LockState, Sighting, parse_mac

__all__ = ["ADVERTS", "KEYTURNER_SERVICE", "NukiAdverts"]

KEYTURNER_SERVICE = "a92ee200-5501-11e4-916c-0800200c9a66"
"""The protocol's constant, repeated so that scanning imports no protocol code (a test
checks they agree)."""


class NukiAdverts:
    """A :class:`blelock.transport.scan.Recogniser` for Nuki Smart Locks."""

    vendor = "nuki"
    service_uuids = (KEYTURNER_SERVICE,)

    def parse_advert(self, advert: Advert) -> Sighting | None:
        from blelock.vendors.nuki.protocol import parse_nuki_advert

        parsed = parse_nuki_advert(
            local_name=advert.local_name,
            manufacturer_data=advert.manufacturer_data,
            service_uuids=advert.service_uuids,
            service_data=advert.service_data,
        )
        if parsed is None:
            return None
        try:
            mac = parse_mac(advert.address)  # Linux/Windows; macOS gives a UUID here
        except UsageError:
            return None
        flags = tuple(
            flag
            for flag, on in (
                ("pairing mode", parsed.pairing_mode),
                ("state changed", parsed.state_changed),
            )
            if on
        )
        return Sighting(
            vendor=self.vendor,
            lock_id=mac,
            address=advert.address,
            name=parsed.name,
            hardware="Smart Lock Ultra" if parsed.ultra else "Smart Lock",  # jobs.ULTRA
            firmware=None,
            state=LockState.UNKNOWN,  # the advert says only that it changed
            rssi=advert.rssi,
            flags=flags,
        )


ADVERTS = NukiAdverts()
