"""Nuki's GATT UUIDs (pyNukiBT ``const.py``, NukiBleEsp32 ``NukiLockConstants.h``)."""

from __future__ import annotations

__all__ = [
    "KEYTURNER_SERVICE",
    "PAIRING_CHAR",
    "PAIRING_SERVICE",
    "ULTRA_PAIRING_CHAR",
    "ULTRA_PAIRING_SERVICE",
    "USDIO_CHAR",
]

PAIRING_SERVICE = "a92ee100-5501-11e4-916c-0800200c9a66"
PAIRING_CHAR = "a92ee101-5501-11e4-916c-0800200c9a66"
"""The pairing service's GDIO: unencrypted pairing frames (Smart Lock 1-4)."""
ULTRA_PAIRING_SERVICE = "a92ee300-5501-11e4-916c-0800200c9a66"
ULTRA_PAIRING_CHAR = "a92ee301-5501-11e4-916c-0800200c9a66"
KEYTURNER_SERVICE = "a92ee200-5501-11e4-916c-0800200c9a66"
USDIO_CHAR = "a92ee202-5501-11e4-916c-0800200c9a66"
"""The keyturner service's user-specific DIO: every encrypted frame."""
