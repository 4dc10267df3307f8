"""The simulated world's Nuki part: Smart Locks on the same radio as every other lock, in
pairing mode as a lock fresh from its box (or with its button held) would be, and each one's
security PIN, which its owner would tell the technician."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any

from simulators.nuki_lock import SimNukiLock
from simulators.nuki_web import NukiWebState
from simulators.nuki_web.bridge import bridge
from simulators.radio import Radio

__all__ = ["NukiWorld", "add_nuki_locks", "nuki_state"]

NUKI_OUI = (0x54, 0xD2, 0x72)
"""Nuki Home Solutions' MAC prefix."""


@dataclass
class NukiWorld:
    locks: list[SimNukiLock]
    web: NukiWebState
    """The simulated Nuki Web API, with a smart lock of the same name per lock (smartlockIds
    from 1001). Its model is its own; what the Web API's locks take reaches the Bluetooth locks
    through a simulated bridge (keypad codes, lock actions), and codes added over Bluetooth
    reach the Web API with a sync (simulators/nuki_web/bridge.py)."""

    def pin(self, mac: str) -> int:
        return next(lock.security_pin for lock in self.locks if lock.mac == mac)


def add_nuki_locks(count: int, seed: int, radio: Radio, *, ultra_every: int = 0) -> NukiWorld:
    """``count`` Smart Locks (every ``ultra_every``-th an Ultra, with a 6-digit PIN); their
    own random source, so adding them changes no other lock of the same seed."""
    rng = random.Random(f"nuki-{seed}")
    web = NukiWebState(api_token=f"sim-nuki-web-{secrets.token_hex(12)}", delay_s=0.5)
    locks = []
    for index in range(count):
        ultra = bool(ultra_every) and (index + 1) % ultra_every == 0
        mac = ":".join(f"{octet:02X}" for octet in (*NUKI_OUI, *rng.randbytes(3)))
        lock = SimNukiLock(
            mac=mac,
            nuki_id=rng.randrange(1 << 32),
            security_pin=rng.randrange(111111, 999999) if ultra else rng.randrange(1000, 9999),
            ultra=ultra,
            name=f"Door {index + 1}",
            rssi=-50 - rng.randrange(30),
        )
        radio.add(lock)
        locks.append(lock)
        web.add_lock(1001 + index, lock.name)
        bridge(web, 1001 + index, lock)
    return NukiWorld(locks, web)


def nuki_state(nuki: NukiWorld | None) -> dict[str, Any]:
    """What a harness in another process checks (no keys, no PINs)."""
    if nuki is None:
        return {}
    return {
        lock.mac: {
            "lock_actions": lock.lock_actions,
            "lock_state": lock.lock_state.name.lower(),
            "authorizations": len(lock.authorizations),
            "keypad_codes": len(lock.codes),
            "log_entries": len(lock.log),
            "refusals": {code.name: count for code, count in lock.refusals.items()},
        }
        for lock in nuki.locks
    }
