"""The emulated BlueZ's GATT side: the database exported once a device's services are
resolved (BlueZ's handle order, its cache across connections), and the ``GattCharacteristic1``
/ ``GattDescriptor1`` requests over the radio's link, with BlueZ's timing, faults and
quirks (see :mod:`simulators.bluez.service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from dbus_fast import Message, Variant

from simulators.bluez.faults import (
    ERROR_FAILED,
    ERROR_IN_PROGRESS,
    ERROR_INVALID_ARGUMENTS,
    ERROR_NOT_CONNECTED,
    ERROR_NOT_PERMITTED,
    ERROR_NOT_SUPPORTED,
    UNLIKELY_ERROR,
    BluezFaults,
)
from simulators.bluez.gatt import Attribute, BluezError, att_error, attribute_table, table_signature
from simulators.bluez.objects import (
    _ALREADY_SENT,
    CHARACTERISTIC,
    DESCRIPTOR,
    DEVICE,
    SERVICE,
    BusObjects,
    _Characteristic,
    _Device,
    _Props,
)
from simulators.radio import ATT_WRITE_NOT_PERMITTED, GattRefused, Link, LinkDropped

__all__ = ["GattServer"]

_log = logging.getLogger(__name__)

CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"
ATT_INVALID_HANDLE = 0x01


class GattServer(BusObjects):
    """The GATT requests of :class:`~simulators.bluez.service.BluezEmulator`, which holds the
    state declared here."""

    faults: BluezFaults
    mtu: int
    sleep: Callable[[float], Awaitable[None]]
    _devices: dict[str, _Device]
    _tasks: set[asyncio.Task[Any]]
    _fds: list[socket.socket]

    # --- the link under every request ---------------------------------------------------------

    def _lose_link(self, device: _Device, reason: str) -> None:
        link, device.link = device.link, None
        if link is not None:
            link.close()
        _log.debug("%s: link down (%s)", device.address, reason)
        for char in device.characteristics.values():
            if char.acquired_notify is not None:
                char.acquired_notify.close()
                char.acquired_notify = None
            if char.notifying:
                char.notifying = False
                self._set(char.path, CHARACTERISTIC, Notifying=Variant("b", False))
        if device.path in self._objects:
            self._set(
                device.path,
                DEVICE,
                ServicesResolved=Variant("b", False),
                Connected=Variant("b", False),
            )

    def _check_link(self, device: _Device) -> Link:
        link = device.link
        if link is not None and not link.is_open:  # the radio dropped it (drop fault)
            self._lose_link(device, "the radio dropped the link")
            link = None
        if link is None:
            raise BluezError(ERROR_FAILED, "Not connected")
        return link

    # --- the GATT database ----------------------------------------------------------------------

    def _resolve(self, device: _Device, link: Link) -> None:
        table = attribute_table(link.services)
        if device.table is not None:
            if table_signature(device.table) == table_signature(table) or self.faults.stale_cache:
                return  # BlueZ's cache is what the client gets
            self._drop_database(device)
        device.table = table
        service_path = ""
        for attribute in table.values():
            if attribute.kind == "service":
                service_path = f"{device.path}/service{attribute.handle:04x}"
                self._add(
                    service_path,
                    {
                        SERVICE: {
                            "UUID": Variant("s", attribute.uuid),
                            "Device": Variant("o", device.path),
                            "Primary": Variant("b", True),
                            "Includes": Variant("ao", []),
                            "Handle": Variant("q", attribute.handle),
                        }
                    },
                )
                device.gatt_paths.append(service_path)
            elif attribute.kind == "declaration":
                self._add_characteristic(device, service_path, attribute, table)
            elif attribute.kind == "cccd":
                char = device.characteristics[f"{service_path}/char{attribute.handle - 2:04x}"]
                desc_path = f"{char.path}/desc{attribute.handle:04x}"
                self._add(
                    desc_path,
                    {
                        DESCRIPTOR: {
                            "UUID": Variant("s", CCCD_UUID),
                            "Characteristic": Variant("o", char.path),
                            "Value": Variant("ay", b""),
                            "Handle": Variant("q", attribute.handle),
                        }
                    },
                )
                device.gatt_paths.append(desc_path)

    def _add_characteristic(
        self, device: _Device, service_path: str, attribute: Attribute, table: dict[int, Attribute]
    ) -> None:
        path = f"{service_path}/char{attribute.handle:04x}"
        cccd = table.get(attribute.handle + 2)
        cccd_handle = cccd.handle if cccd is not None and cccd.kind == "cccd" else None
        char = _Characteristic(path, attribute.uuid, attribute.handle + 1, cccd_handle,
                               attribute.properties)  # fmt: skip
        device.characteristics[path] = char
        props: _Props = {
            "UUID": Variant("s", attribute.uuid),
            "Service": Variant("o", service_path),
            "Value": Variant("ay", b""),
            "Flags": Variant("as", list(attribute.properties)),
            "MTU": Variant("q", self.mtu),
            "Handle": Variant("q", attribute.handle + 1),
        }
        if "write-without-response" in attribute.properties:
            props["WriteAcquired"] = Variant("b", False)
        if {"notify", "indicate"} & set(attribute.properties):
            props["Notifying"] = Variant("b", False)
            props["NotifyAcquired"] = Variant("b", False)
        self._add(path, {CHARACTERISTIC: props})
        device.gatt_paths.append(path)

    def _drop_database(self, device: _Device) -> None:
        for path in reversed(device.gatt_paths):
            self._remove(path)
        device.gatt_paths.clear()
        device.characteristics.clear()
        device.table = None

    def _characteristic(self, msg: Message) -> tuple[_Device, _Characteristic]:
        path = msg.path or ""
        device_path = path.rsplit("/", 2)[0]
        for device in self._devices.values():
            if device.path == device_path and path in device.characteristics:
                return device, device.characteristics[path]
        raise BluezError("org.freedesktop.DBus.Error.UnknownObject", f"no characteristic {path}")

    def _target(self, link: Link, handle: int) -> Attribute:
        """What ``handle`` is on the device *now* (a stale cache may point elsewhere)."""
        table = attribute_table(link.services)
        attribute = table.get(handle)
        if attribute is None:
            raise att_error(ATT_INVALID_HANDLE)
        return attribute

    def _gatt_faults(self, device: _Device) -> None:
        if self.faults.spend("not_connected"):
            self._lose_link(device, "the link was already dead (not-connected fault)")
            raise BluezError(ERROR_NOT_CONNECTED, "Not Connected")
        if self.faults.att_error and self.faults.spend("att_errors"):
            raise att_error(self.faults.att_error)

    async def _read_value(self, msg: Message) -> Message:
        device, char = self._characteristic(msg)
        link = self._check_link(device)
        async with device.att:
            self._gatt_faults(device)
            await self.sleep(link.latency.connection_interval_s)
            link = self._check_link(device)
            value = self._read_handle(link, char.value_handle)
        self._set(char.path, CHARACTERISTIC, Value=Variant("ay", value))
        return Message.new_method_return(msg, "ay", [value])

    def _read_handle(self, link: Link, handle: int) -> bytes:
        target = self._target(link, handle)
        try:
            if target.kind == "value":
                return link.read(target.uuid)
        except GattRefused as refusal:
            raise att_error(refusal.att_error) from None
        if target.kind == "cccd":
            return b"\x01\x00" if link.is_subscribed(target.uuid) else b"\x00\x00"
        return bytes.fromhex(target.uuid.replace("-", ""))[::-1]  # a declaration's UUID

    async def _write_value(self, msg: Message) -> Message:
        device, char = self._characteristic(msg)
        data = bytes(msg.body[0])
        options: dict[str, Variant] = msg.body[1]
        kind = options["type"].value if "type" in options else None
        if kind is None:
            kind = "request" if "write" in char.flags else "command"
        link = self._check_link(device)
        if kind == "command":
            if len(data) > self.mtu - 3:
                raise BluezError(ERROR_INVALID_ARGUMENTS, "Invalid Length")
            await self._write_command(device, link, char.value_handle, data)
            return Message.new_method_return(msg)
        async with device.att:
            self._gatt_faults(device)
            await self.sleep(link.latency.connection_interval_s)
            link = self._check_link(device)
            if self.faults.spend("drop_during_write"):
                self._lose_link(device, "dropped during a write (drop-during-write fault)")
                raise att_error(UNLIKELY_ERROR)
            notes = self._write_handle(device, link, char.value_handle, data, response=True)
        self._notify_later(device, link, notes, delay=0.0)
        return Message.new_method_return(msg)

    async def _write_command(self, device: _Device, link: Link, handle: int, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        delay = device.pacer.admit(now, link.latency) - now
        if delay > 0:
            await self.sleep(delay)
        link = self._check_link(device)
        if self.faults.spend("drop_during_write"):
            # A write command is queued and "succeeds"; the loss shows as the disconnection.
            self._lose_link(device, "dropped during a write (drop-during-write fault)")
            return
        notes = self._write_handle(device, link, handle, data, response=False)
        self._notify_later(device, link, notes, delay=link.latency.write_round_trip_s)

    def _write_handle(
        self, device: _Device, link: Link, handle: int, data: bytes, *, response: bool
    ) -> list[tuple[str, bytes]]:
        target = self._target(link, handle)
        try:
            if target.kind == "value":
                return link.write(target.uuid, data, response=response)
            if target.kind == "cccd":
                link.subscribe(target.uuid, data[:1] != b"\x00")
                return []
        except GattRefused as refusal:
            raise att_error(refusal.att_error) from None
        except LinkDropped:
            self._lose_link(device, "the radio dropped the link during a write")
            if response:
                raise att_error(UNLIKELY_ERROR) from None
            return []
        raise att_error(ATT_WRITE_NOT_PERMITTED)  # a service or characteristic declaration

    def _notify_later(
        self, device: _Device, link: Link, notes: list[tuple[str, bytes]], delay: float
    ) -> None:
        if not notes:
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(delay, self._deliver, device, link, notes)
        del handle

    def _deliver(self, device: _Device, link: Link, notes: list[tuple[str, bytes]]) -> None:
        if device.link is not link or not link.is_open:
            return  # notifications die with their link
        for uuid, value in notes:
            for char in device.characteristics.values():
                if char.uuid != uuid or not link.is_subscribed(uuid):
                    continue
                if char.acquired_notify is not None:
                    with contextlib.suppress(OSError):
                        char.acquired_notify.send(value)
                elif char.notifying:  # lost if StartNotify has not finished
                    self._set(char.path, CHARACTERISTIC, Value=Variant("ay", value))
                    # Equal consecutive values must still reach the client.
                    self._objects[char.path][CHARACTERISTIC]["Value"] = Variant("ay", b"")

    async def _start_notify(self, msg: Message) -> Message:
        device, char = self._characteristic(msg)
        if not {"notify", "indicate"} & set(char.flags) or char.cccd_handle is None:
            raise BluezError(ERROR_NOT_SUPPORTED, "Operation is not supported")
        link = self._check_link(device)
        if char.notifying:
            return Message.new_method_return(msg)
        await self._write_cccd(device, link, char, True)
        char.notifying = True
        self._set(char.path, CHARACTERISTIC, Notifying=Variant("b", True))
        return Message.new_method_return(msg)

    async def _write_cccd(
        self, device: _Device, link: Link, char: _Characteristic, on: bool
    ) -> None:
        assert char.cccd_handle is not None
        async with device.att:
            self._gatt_faults(device)
            await self.sleep(link.latency.connection_interval_s)
            link = self._check_link(device)
            self._write_handle(device, link, char.cccd_handle, b"\x01\x00" if on else b"\x00\x00",
                               response=True)  # fmt: skip

    async def _stop_notify(self, msg: Message) -> Message:
        device, char = self._characteristic(msg)
        if not char.notifying and char.acquired_notify is None:
            raise BluezError(ERROR_FAILED, "No notify session started")
        link = self._check_link(device)
        char.notifying = False
        self._set(char.path, CHARACTERISTIC, Notifying=Variant("b", False))
        await self._write_cccd(device, link, char, False)
        return Message.new_method_return(msg)

    async def _acquire_write(self, msg: Message) -> Message:
        device, char = self._characteristic(msg)
        if "write-without-response" not in char.flags:
            raise BluezError(ERROR_NOT_SUPPORTED, "Operation is not supported")
        self._check_link(device)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._fds.append(ours)
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                data = ours.recv(self.mtu)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data or device.link is None:
                loop.remove_reader(ours.fileno())
                ours.close()
                return
            task = loop.create_task(
                self._write_command(device, device.link, char.value_handle, data)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        loop.add_reader(ours.fileno(), readable)
        reply = Message.new_method_return(msg, "hq", [0, self.mtu], unix_fds=[theirs.fileno()])
        await self._send_with_fd(reply, theirs)
        return _ALREADY_SENT

    async def _acquire_notify(self, msg: Message) -> Message:
        device, char = self._characteristic(msg)
        if char.cccd_handle is None:
            raise BluezError(ERROR_NOT_SUPPORTED, "Operation is not supported")
        if char.notifying or char.acquired_notify is not None:
            raise BluezError(ERROR_IN_PROGRESS, "Notify already acquired")
        link = self._check_link(device)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._fds.append(ours)
        # BlueZ answers AcquireNotify before the CCCD write is answered: what the device
        # sends in between is lost (bleak PR #1886).
        reply = Message.new_method_return(msg, "hq", [0, self.mtu], unix_fds=[theirs.fileno()])
        await self._send_with_fd(reply, theirs)
        await self._write_cccd(device, link, char, True)
        char.acquired_notify = ours
        self._set(char.path, CHARACTERISTIC, NotifyAcquired=Variant("b", True))
        return _ALREADY_SENT

    async def _descriptor_read(self, msg: Message) -> Message:
        path = msg.path or ""
        device, char = self._characteristic_of_descriptor(path)
        link = self._check_link(device)
        assert char.cccd_handle is not None
        async with device.att:
            self._gatt_faults(device)
            await self.sleep(link.latency.connection_interval_s)
            value = self._read_handle(self._check_link(device), char.cccd_handle)
        return Message.new_method_return(msg, "ay", [value])

    async def _descriptor_write(self, msg: Message) -> Message:
        raise BluezError(ERROR_NOT_PERMITTED, "Write not permitted")  # CCCDs: StartNotify only

    def _characteristic_of_descriptor(self, path: str) -> tuple[_Device, _Characteristic]:
        char_path = path.rsplit("/", 1)[0]
        device_path = char_path.rsplit("/", 2)[0]
        for device in self._devices.values():
            if device.path == device_path and char_path in device.characteristics:
                return device, device.characteristics[char_path]
        raise BluezError("org.freedesktop.DBus.Error.UnknownObject", f"no descriptor {path}")
