"""The emulated BlueZ's object tree: the D-Bus interfaces it exports, what it keeps per device
and characteristic, and how an object is exported, removed or changed (with the signals
bluetoothd sends for each).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from simulators.bluez.gatt import Attribute
from simulators.radio import Link, WritePacer

__all__ = ["BusObjects"]

OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
PROPERTIES = "org.freedesktop.DBus.Properties"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
SERVICE = "org.bluez.GattService1"
CHARACTERISTIC = "org.bluez.GattCharacteristic1"
DESCRIPTOR = "org.bluez.GattDescriptor1"

_Props = dict[str, Variant]


# --- exported objects ---------------------------------------------------------------------------


@dataclass
class _Characteristic:
    path: str
    uuid: str
    value_handle: int
    cccd_handle: int | None
    flags: tuple[str, ...]
    notifying: bool = False
    acquired_notify: socket.socket | None = None


@dataclass
class _Device:
    path: str
    address: str
    link: Link | None = None
    connecting: bool = False
    table: dict[int, Attribute] | None = None
    """The device's attribute table as BlueZ discovered it (its cache); None: never resolved."""
    characteristics: dict[str, _Characteristic] = field(default_factory=dict)
    gatt_paths: list[str] = field(default_factory=list)
    pacer: WritePacer = field(default_factory=WritePacer)
    att: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One outstanding ATT request per link, as ATT requires."""
    rssi_jitter: int = 0


class BusObjects:
    """Exported objects and their signals, over the bus connection a subclass opens."""

    _bus: MessageBus | None
    _objects: dict[str, dict[str, _Props]]

    def _send(self, message: Message) -> None:
        if self._bus is not None and self._bus.connected:
            self._bus.send(message)

    async def _send_with_fd(self, message: Message, fd: socket.socket) -> None:
        """Send a reply carrying ``fd``; our copy is closed once the message left."""
        try:
            if self._bus is not None and self._bus.connected:
                await self._bus.send(message)
        finally:
            fd.close()

    def _signal(
        self, path: str, interface: str, member: str, signature: str, body: list[Any]
    ) -> None:
        self._send(Message.new_signal(path, interface, member, signature, body))

    def _set(self, path: str, interface: str, **changed: Variant) -> None:
        props = self._objects[path][interface]
        really = {k: v for k, v in changed.items() if props.get(k) != v}
        props.update(really)
        if really:
            self._signal(path, PROPERTIES, "PropertiesChanged", "sa{sv}as", [interface, really, []])

    def _add(self, path: str, interfaces: dict[str, _Props]) -> None:
        self._objects[path] = interfaces
        self._signal(path="/", interface=OBJECT_MANAGER, member="InterfacesAdded",
                     signature="oa{sa{sv}}", body=[path, interfaces])  # fmt: skip

    def _remove(self, path: str) -> None:
        interfaces = self._objects.pop(path, None)
        if interfaces is not None:
            self._signal("/", OBJECT_MANAGER, "InterfacesRemoved", "oas", [path, list(interfaces)])


_ALREADY_SENT = Message(message_type=MessageType.METHOD_RETURN, reply_serial=1)
"""A handler that sent its own reply (with file descriptors) returns this."""
