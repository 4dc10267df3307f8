"""An emulated BlueZ (``org.bluez`` on a private D-Bus bus) over the simulated world, so
that bleak's real BlueZ backend — the code a Raspberry Pi kiosk runs — is what talks to the
simulated locks. ``serve_bluez_world`` is the one entry: tests and ``blelock-sim --bluez``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from simulators.bluez.bus import INSTALL_HINT, BusUnavailable, dbus_daemon, private_bus
from simulators.bluez.faults import BluezFaults, parse_bluez_fault
from simulators.bluez.service import BluezEmulator
from simulators.world import RunningWorld, World, serve_world

__all__ = [
    "INSTALL_HINT",
    "BluezEmulator",
    "BluezFaults",
    "BluezWorld",
    "BusUnavailable",
    "dbus_daemon",
    "parse_bluez_fault",
    "serve_bluez_world",
]

_SIM_BACKEND_SETTINGS = (
    "BLELOCK_BLE_CLIENT_BACKEND",
    "BLELOCK_BLE_SCANNER_BACKEND",
    "BLELOCK_SIM_RADIO",
)


@dataclass
class BluezWorld:
    running: RunningWorld
    bluez: BluezEmulator
    bus_address: str

    @property
    def environment(self) -> dict[str, str]:
        """The world's settings without any bleak backend: bleak takes the platform's own
        (BlueZ on Linux), which the bus address points at the emulator."""
        settings = {
            k: v for k, v in self.running.environment.items() if k not in _SIM_BACKEND_SETTINGS
        }
        return settings | {"DBUS_SYSTEM_BUS_ADDRESS": self.bus_address}


@contextlib.asynccontextmanager
async def serve_bluez_world(
    world: World, faults: BluezFaults | None = None, *, mtu: int = 247
) -> AsyncIterator[BluezWorld]:
    """A private bus, the emulated BlueZ on it, and the world's clouds, for the block."""
    async with (
        private_bus() as address,
        BluezEmulator.serving(world.radio, address, faults, mtu=mtu) as emulator,
        serve_world(world) as running,
    ):
        yield BluezWorld(running, emulator, address)
