"""What a GATT server's attribute table looks like, and how bluetoothd names its errors."""

from __future__ import annotations

from dataclasses import dataclass

from simulators.bluez.faults import (
    ERROR_FAILED,
    ERROR_INVALID_ARGUMENTS,
    ERROR_NOT_PERMITTED,
    ERROR_NOT_SUPPORTED,
)
from simulators.radio import ATT_READ_NOT_PERMITTED, ATT_WRITE_NOT_PERMITTED, ServiceSpec

__all__ = ["Attribute", "BluezError", "att_error", "attribute_table", "table_signature"]


class BluezError(Exception):
    """A D-Bus error reply, named as bluetoothd names it."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name
        self.text = text


def att_error(code: int) -> BluezError:
    """How bluetoothd reports an ATT error code (its create_gatt_dbus_error)."""
    if code == ATT_READ_NOT_PERMITTED:
        return BluezError(ERROR_NOT_PERMITTED, "Read not permitted")
    if code == ATT_WRITE_NOT_PERMITTED:
        return BluezError(ERROR_NOT_PERMITTED, "Write not permitted")
    if code in (0x05, 0x0F, 0x0C):
        return BluezError(ERROR_NOT_PERMITTED, "Not paired")
    if code == 0x07:
        return BluezError(ERROR_INVALID_ARGUMENTS, "Invalid offset")
    if code == 0x0D:
        return BluezError(ERROR_INVALID_ARGUMENTS, "Invalid Length")
    if code == 0x08:
        return BluezError("org.bluez.Error.NotAuthorized", "Operation Not Authorized")
    if code == 0x06:
        return BluezError(ERROR_NOT_SUPPORTED, "Operation is not supported")
    return BluezError(ERROR_FAILED, f"Operation failed with ATT error: 0x{code:02x}")


# --- attribute tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    handle: int
    kind: str  # "service" | "declaration" | "value" | "cccd"
    uuid: str
    """The service's or the characteristic's UUID (for a CCCD: its characteristic's)."""
    properties: tuple[str, ...] = ()


def attribute_table(services: tuple[ServiceSpec, ...]) -> dict[int, Attribute]:
    """Handles as a GATT server hands them out, in declaration order, from 0x0001."""
    table: dict[int, Attribute] = {}
    handle = 0
    for service in services:
        handle += 1
        table[handle] = Attribute(handle, "service", service.uuid)
        for char in service.characteristics:
            props = char.properties
            table[handle + 1] = Attribute(handle + 1, "declaration", char.uuid, props)
            table[handle + 2] = Attribute(handle + 2, "value", char.uuid, props)
            handle += 2
            if {"notify", "indicate"} & set(props):
                handle += 1
                table[handle] = Attribute(handle, "cccd", char.uuid, props)
    return table


def table_signature(table: dict[int, Attribute]) -> tuple[tuple[int, str, str], ...]:
    return tuple((a.handle, a.kind, a.uuid) for a in table.values())
