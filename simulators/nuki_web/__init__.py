"""The simulated Nuki Web API (real HTTP on 127.0.0.1): see :mod:`.app` and :mod:`.state`."""

from simulators.nuki_web.app import CONTROL_PATH, nuki_web_app
from simulators.nuki_web.state import (
    Entry,
    ManualClock,
    NukiWebFaults,
    NukiWebState,
    SimAccountUser,
    SimSmartLock,
    WallClock,
)

__all__ = [
    "CONTROL_PATH",
    "Entry",
    "ManualClock",
    "NukiWebFaults",
    "NukiWebState",
    "SimAccountUser",
    "SimSmartLock",
    "WallClock",
    "nuki_web_app",
]
