"""BlueZ's own failures, as switches on the emulated ``org.bluez`` (one set per adapter).

Each names the error exactly as bluetoothd sends it over D-Bus. Counts are budgets, spent as
the fault fires, like :class:`simulators.faults.LinkFaults`: "the next N", ``-1`` for always.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = [
    "ABORT_BY_LOCAL",
    "CONCURRENT_LIMIT",
    "CONNECT_TIMEOUT",
    "ERROR_FAILED",
    "ERROR_IN_PROGRESS",
    "ERROR_NOT_CONNECTED",
    "ERROR_NOT_READY",
    "SOFTWARE_ABORT",
    "BluezFaults",
    "parse_bluez_fault",
]

ERROR_FAILED = "org.bluez.Error.Failed"
ERROR_IN_PROGRESS = "org.bluez.Error.InProgress"
ERROR_NOT_CONNECTED = "org.bluez.Error.NotConnected"
ERROR_NOT_READY = "org.bluez.Error.NotReady"
ERROR_DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
ERROR_NOT_PERMITTED = "org.bluez.Error.NotPermitted"
ERROR_NOT_SUPPORTED = "org.bluez.Error.NotSupported"
ERROR_INVALID_ARGUMENTS = "org.bluez.Error.InvalidArguments"

ABORT_BY_LOCAL = "le-connection-abort-by-local"
"""The controller gave up on the connection (interference, Wi-Fi coexistence on a Pi)."""
SOFTWARE_ABORT = "Software caused connection abort"
"""strerror(ECONNABORTED): the kernel tore the ACL link down while BlueZ set it up."""
CONCURRENT_LIMIT = "le-connection-concurrent-connection-limit"
"""The adapter holds no more LE connections."""
CONNECT_TIMEOUT = "le-connection-timeout"
"""Nobody answered the connection request (out of range, or already taken)."""
UNLIKELY_ERROR = 0x0E
"""The ATT code BlueZ answers a request with when the link died under it."""


@dataclass
class BluezFaults:
    abort_by_local: int = 0
    """Next N Connect calls: ``Connected`` flips true then false, then
    ``org.bluez.Error.Failed: le-connection-abort-by-local``."""
    connect_in_progress: int = 0
    """Next N Connect calls: ``org.bluez.Error.InProgress`` (a connect racing another)."""
    scan_in_progress: int = 0
    """Next N StartDiscovery calls: ``org.bluez.Error.InProgress`` (the OS is scanning)."""
    software_abort: int = 0
    """Next N Connect calls: ``org.bluez.Error.Failed: Software caused connection abort``."""
    not_connected: int = 0
    """Next N GATT requests find the link silently dead: ``org.bluez.Error.NotConnected``,
    then ``Connected`` turns false."""
    att_error: int = 0
    """The ATT error code the next ``att_errors`` GATT requests fail with (0: none)."""
    att_errors: int = 0
    drop_during_write: int = 0
    """Next N characteristic writes: the link drops while the write is on air. A write
    request fails ``Operation failed with ATT error: 0x0e``; a write command was queued and
    "succeeded". ``Connected`` turns false either way."""
    stale_cache: bool = False
    """Keep a device's GATT database across reconnects even when the device's attribute
    table changed (a firmware update), until RemoveDevice: old handles, wrong answers."""
    connection_slots: int | None = None
    """How many LE connections the adapter holds at once (None: no limit)."""

    def spend(self, name: str) -> bool:
        """Whether the budgeted fault ``name`` fires now (spending one if so)."""
        budget: int = getattr(self, name)
        if budget == 0:
            return False
        if budget > 0:
            setattr(self, name, budget - 1)
        return True


_COUNTS = {
    "abort-by-local": "abort_by_local",
    "connect-in-progress": "connect_in_progress",
    "scan-in-progress": "scan_in_progress",
    "software-abort": "software_abort",
    "not-connected": "not_connected",
    "drop-during-write": "drop_during_write",
}


def parse_bluez_fault(spec: str, base: BluezFaults | None = None) -> BluezFaults:
    """``BluezFaults`` from e.g. ``"abort-by-local=2"``, ``"att=0x05:1"``, ``"slots=1"`` or
    ``"stale-cache"`` (comma-separated), on top of ``base`` (left untouched)."""
    faults = dataclasses.replace(base) if base is not None else BluezFaults()
    for part in (p.strip() for p in spec.split(",")):
        name, has_value, value = part.partition("=")
        try:
            if name == "stale-cache" and not has_value:
                faults.stale_cache = True
            elif name in _COUNTS:
                faults.__setattr__(_COUNTS[name], _count(value))
            elif name == "att":
                code, _, times = value.partition(":")
                faults.att_error = int(code, 0)
                faults.att_errors = _count(times or "1")
                if not 0 < faults.att_error <= 0xFF:
                    raise ValueError
            elif name == "slots":
                faults.connection_slots = _count(value)
            else:
                raise KeyError(name)
        except KeyError:
            raise ValueError(
                f"BlueZ fault {spec!r}: unknown part {part!r}; expected one of "
                f"{', '.join(f'{n}=K' for n in _COUNTS)}, att=CODE[:K], slots=N, stale-cache"
            ) from None
        except ValueError:
            raise ValueError(f"BlueZ fault {spec!r}: bad value in {part!r}") from None
    return faults


def _count(value: str) -> int:
    count = int(value)
    if count < -1:
        raise ValueError(value)
    return count
