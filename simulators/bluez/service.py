"""An emulated ``org.bluez`` on a D-Bus bus, backed by :class:`~simulators.radio.Radio`.

bleak's own BlueZ backend (``BleakScannerBlueZDBus`` / ``BleakClientBlueZDBus``) and
bleak-retry-connector talk to it exactly as they talk to bluetoothd on a Raspberry Pi: the
ObjectManager on ``/``, ``org.bluez.Adapter1`` on ``/org/bluez/hci0``, ``org.bluez.Device1``
per heard peripheral, and ``GattService1`` / ``GattCharacteristic1`` / ``GattDescriptor1``
objects once a device's services are resolved. Notifications are ``PropertiesChanged`` of a
characteristic's ``Value``.

Timing follows the radio's latency model (as :class:`~simulators.radio_server.RadioServer` does):
adverts every ``advertising_interval_s`` while discovering, ``connect_s`` to connect and
resolve, ``connection_interval_s`` per ATT request, writes without response paced by
:class:`~simulators.radio.WritePacer`, notifications ``write_round_trip_s`` after delivery.

What BlueZ does that users meet, reproduced on purpose:
- handles: attributes get handles in the order the peripheral declares them (service, then per
  characteristic its declaration, value and, for notify/indicate, its CCCD). Every request goes
  to a *handle* of the device's current table: a database cached before the device's table
  changed (:attr:`BluezFaults.stale_cache`) reaches the wrong attributes, as on a real Pi;
- the database stays exported across disconnects (BlueZ's cache) and is re-read at the next
  connection when the device's table changed, unless the stale-cache fault is on;
- values changed before ``StartNotify`` finished (its CCCD write answered) are lost;
- a read updates the ``Value`` property too (so a read of a notifying characteristic emits
  ``PropertiesChanged``, as BlueZ does);
- the faults of :class:`~simulators.bluez.faults.BluezFaults`, with BlueZ's error names.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.constants import BusType

from simulators.bluez.faults import (
    ABORT_BY_LOCAL,
    CONCURRENT_LIMIT,
    CONNECT_TIMEOUT,
    ERROR_DOES_NOT_EXIST,
    ERROR_FAILED,
    ERROR_IN_PROGRESS,
    ERROR_NOT_CONNECTED,
    ERROR_NOT_READY,
    ERROR_NOT_SUPPORTED,
    SOFTWARE_ABORT,
    BluezFaults,
)
from simulators.bluez.gatt import BluezError
from simulators.bluez.gatt_server import GattServer
from simulators.bluez.objects import (
    _ALREADY_SENT,
    ADAPTER,
    CHARACTERISTIC,
    DESCRIPTOR,
    DEVICE,
    OBJECT_MANAGER,
    PROPERTIES,
    _Device,
    _Props,
)
from simulators.radio import (
    ConnectionRefused,
    NotInRange,
    PeripheralBusy,
    Radio,
    WritePacer,
    normalize_uuid,
)

__all__ = ["ADAPTER_ADDRESS", "ADAPTER_PATH", "BluezEmulator"]

_log = logging.getLogger(__name__)

ADAPTER_PATH = "/org/bluez/hci0"
ADAPTER_ADDRESS = "00:1A:7D:DA:71:13"
_Handler = Callable[["BluezEmulator", Message], Awaitable[Message]]


class BluezEmulator(GattServer):
    """``org.bluez`` for ``radio`` on the bus at ``bus_address``; see the module docstring."""

    def __init__(self, radio: Radio, faults: BluezFaults | None = None, *, mtu: int = 247) -> None:
        self.radio = radio
        self.faults = faults if faults is not None else BluezFaults()
        self.mtu = mtu
        """The ATT MTU every link negotiates (23: a link where no MTU exchange happened)."""
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._bus: MessageBus | None = None
        self._objects: dict[str, dict[str, _Props]] = {}
        self._devices: dict[str, _Device] = {}
        self._discovery: dict[str, dict[str, Any]] = {}  # sender -> its filter
        self._pending_filters: dict[str, dict[str, Any]] = {}
        """Filters set before StartDiscovery: they apply to that client's next session."""
        self._advertiser: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fds: list[socket.socket] = []
        self.calls: collections.Counter[str] = collections.Counter()
        """Method calls received, by member name (what a test asserts bleak really used)."""
        self._objects[ADAPTER_PATH] = {
            ADAPTER: {
                "Address": Variant("s", ADAPTER_ADDRESS),
                "AddressType": Variant("s", "public"),
                "Name": Variant("s", "blelock-sim"),
                "Alias": Variant("s", "blelock-sim"),
                "Class": Variant("u", 0),
                "Powered": Variant("b", True),
                "Discoverable": Variant("b", False),
                "Pairable": Variant("b", False),
                "Discovering": Variant("b", False),
                "UUIDs": Variant("as", []),
                "Modalias": Variant("s", "usb:v1D6Bp0246d0542"),
                "Roles": Variant("as", ["central", "peripheral"]),
            }
        }

    # --- lifecycle ------------------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def serving(
        cls, radio: Radio, bus_address: str, faults: BluezFaults | None = None, *, mtu: int = 247
    ) -> AsyncIterator[BluezEmulator]:
        emulator = cls(radio, faults, mtu=mtu)
        await emulator.start(bus_address)
        try:
            yield emulator
        finally:
            await emulator.close()

    async def start(self, bus_address: str) -> None:
        bus = MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM, negotiate_unix_fd=True)
        await bus.connect()
        bus.add_message_handler(self._on_message)
        rule = "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )
        await bus.request_name("org.bluez")
        self._bus = bus

    async def close(self) -> None:
        for device in self._devices.values():
            if device.link is not None:
                device.link.close()
                device.link = None
        tasks = [*self._tasks, *([self._advertiser] if self._advertiser else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in self._fds:
            sock.close()
        if self._bus is not None:
            self._bus.disconnect()
            with contextlib.suppress(Exception):
                await self._bus.wait_for_disconnect()
            self._bus = None

    # --- switches a test flips ------------------------------------------------------------------

    @property
    def powered(self) -> bool:
        return bool(self._objects[ADAPTER_PATH][ADAPTER]["Powered"].value)

    def set_powered(self, on: bool) -> None:
        """Power the adapter off (every link drops, discovery ends) or back on."""
        if on == self.powered:
            return
        if not on:
            for device in self._devices.values():
                if device.link is not None:
                    self._lose_link(device, "adapter powered off")
            self._discovery.clear()
            self._update_discovering()
        self._set(ADAPTER_PATH, ADAPTER, Powered=Variant("b", on))

    def device_path(self, address: str) -> str:
        return f"{ADAPTER_PATH}/dev_{address.upper().replace(':', '_')}"

    # --- D-Bus dispatch ---------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type == MessageType.SIGNAL:
            if msg.member == "NameOwnerChanged" and msg.body[2] == "":
                self._client_gone(msg.body[0])
            return False
        if msg.message_type != MessageType.METHOD_CALL:
            return False
        self.calls[msg.member or ""] += 1
        if msg.interface == OBJECT_MANAGER and msg.member == "GetManagedObjects":
            managed = {p: i for p, i in self._objects.items() if msg.path == "/"}
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [managed])
        if msg.path not in self._objects:
            return Message.new_error(
                msg, "org.freedesktop.DBus.Error.UnknownObject", f"no object {msg.path}"
            )
        if msg.interface == PROPERTIES:
            return self._properties(msg)
        handler = self._handlers.get((msg.interface or "", msg.member or ""))
        if handler is None:
            return Message.new_error(
                msg, "org.freedesktop.DBus.Error.UnknownMethod", f"no method {msg.member}"
            )
        task = asyncio.get_running_loop().create_task(self._answer(msg, handler))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _answer(self, msg: Message, handler: _Handler) -> None:
        try:
            reply = await handler(self, msg)
            if reply is _ALREADY_SENT:
                return
        except BluezError as error:
            reply = Message.new_error(msg, error.name, error.text)
        except Exception as exc:
            _log.exception("emulated BlueZ: %s.%s failed", msg.interface, msg.member)
            reply = Message.new_error(msg, ERROR_FAILED, f"{type(exc).__name__}: {exc}")
        self._send(reply)

    def _properties(self, msg: Message) -> Message:
        assert msg.path is not None
        interfaces = self._objects[msg.path]
        if msg.member == "GetAll":
            return Message.new_method_return(msg, "a{sv}", [interfaces.get(msg.body[0], {})])
        interface, name = msg.body[0], msg.body[1]
        props = interfaces.get(interface)
        if props is None or name not in props:
            return Message.new_error(
                msg, "org.freedesktop.DBus.Error.InvalidArgs", f"no property {name}"
            )
        if msg.member == "Get":
            return Message.new_method_return(msg, "v", [props[name]])
        if msg.member == "Set":
            value: Variant = msg.body[2]
            if (interface, name) == (ADAPTER, "Powered"):
                self.set_powered(bool(value.value))
            elif interface == DEVICE and name in ("Trusted", "Blocked", "Alias"):
                self._set(msg.path, interface, **{name: value})
            else:
                return Message.new_error(
                    msg, "org.freedesktop.DBus.Error.PropertyReadOnly", f"{name} is read-only"
                )
            return Message.new_method_return(msg)
        return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "no such method")

    def _client_gone(self, name: str) -> None:
        """bluetoothd ends a client's discovery session when it leaves the bus."""
        if self._discovery.pop(name, None) is not None:
            self._update_discovering()

    # --- the adapter ----------------------------------------------------------------------------

    async def _start_discovery(self, msg: Message) -> Message:
        if not self.powered:
            raise BluezError(ERROR_NOT_READY, "Resource Not Ready")
        if self.faults.spend("scan_in_progress"):
            raise BluezError(ERROR_IN_PROGRESS, "Operation already in progress")
        assert msg.sender is not None
        self._discovery.setdefault(msg.sender, {})
        self._update_discovering()
        return Message.new_method_return(msg)

    async def _stop_discovery(self, msg: Message) -> Message:
        if not self.powered:
            raise BluezError(ERROR_NOT_READY, "Resource Not Ready")
        if msg.sender not in self._discovery:
            raise BluezError(ERROR_FAILED, "No discovery started")
        del self._discovery[msg.sender]
        self._update_discovering()
        return Message.new_method_return(msg)

    async def _set_discovery_filter(self, msg: Message) -> Message:
        if not self.powered:
            raise BluezError(ERROR_NOT_READY, "Resource Not Ready")
        assert msg.sender is not None
        given: dict[str, Variant] = msg.body[0]
        filters = {key: variant.value for key, variant in given.items()}
        if "UUIDs" in filters:
            filters["UUIDs"] = [normalize_uuid(u) for u in filters["UUIDs"]]
        if msg.sender in self._discovery:
            self._discovery[msg.sender] = filters
        else:
            self._pending_filters[msg.sender] = filters
        return Message.new_method_return(msg)

    async def _get_discovery_filters(self, msg: Message) -> Message:
        return Message.new_method_return(
            msg, "as", [["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Pattern"]]
        )

    async def _remove_device(self, msg: Message) -> Message:
        path: str = msg.body[0]
        device = next((d for d in self._devices.values() if d.path == path), None)
        if device is None:
            raise BluezError(ERROR_DOES_NOT_EXIST, "Does Not Exist")
        if device.link is not None:
            self._lose_link(device, "device removed")
        self._drop_database(device)
        del self._devices[device.address]
        self._remove(device.path)
        return Message.new_method_return(msg)

    def _update_discovering(self) -> None:
        for sender in list(self._pending_filters):
            if sender in self._discovery:
                self._discovery[sender] = self._pending_filters.pop(sender)
        on = bool(self._discovery)
        self._set(ADAPTER_PATH, ADAPTER, Discovering=Variant("b", on))
        if on and self._advertiser is None:
            self._advertiser = asyncio.get_running_loop().create_task(self._advertise())
        elif not on and self._advertiser is not None:
            self._advertiser.cancel()
            self._advertiser = None

    def _wanted(self, uuids: set[str]) -> bool:
        """BlueZ merges the clients' filters: any client without a UUID filter sees all."""
        for filters in self._discovery.values():
            wanted = filters.get("UUIDs")
            if not wanted or uuids & set(wanted):
                return True
        return False

    async def _advertise(self) -> None:
        loop = asyncio.get_running_loop()
        due: dict[str, float] = {}
        while True:
            now = loop.time()
            for address in self.radio.addresses:
                interval = self.radio.latency_of(address).advertising_interval_s
                if due.setdefault(address, now + interval) > now:
                    continue
                due[address] = now + interval
                self._heard(address)
            wake = min(due.values(), default=now + self.radio.latency.advertising_interval_s)
            await asyncio.sleep(max(0.0, wake - loop.time()))

    def _heard(self, address: str) -> None:
        try:
            advert = self.radio.advertisement(address)
        except Exception:
            _log.exception("%s: advertisement() raised; skipping this advert", address)
            return
        if advert is None or not self._wanted({*advert.service_uuids, *advert.service_data}):
            return
        device = self._devices.get(address)
        name = advert.local_name
        props: _Props = {
            "UUIDs": Variant("as", list(advert.service_uuids)),
            "ManufacturerData": Variant(
                "a{qv}", {k: Variant("ay", v) for k, v in advert.manufacturer_data.items()}
            ),
            "ServiceData": Variant(
                "a{sv}", {k: Variant("ay", v) for k, v in advert.service_data.items()}
            ),
        }
        if name is not None:
            props["Name"] = Variant("s", name)
            props["Alias"] = Variant("s", name)
        if advert.tx_power is not None:
            props["TxPower"] = Variant("n", advert.tx_power)
        if device is None:
            device = self._devices[address] = _Device(self.device_path(address), address)
            self._add(
                device.path,
                {
                    DEVICE: {
                        "Address": Variant("s", address),
                        "AddressType": Variant("s", "public"),
                        "Alias": Variant("s", address.replace(":", "-")),
                        "Paired": Variant("b", False),
                        "Bonded": Variant("b", False),
                        "Trusted": Variant("b", False),
                        "Blocked": Variant("b", False),
                        "LegacyPairing": Variant("b", False),
                        "Connected": Variant("b", False),
                        "ServicesResolved": Variant("b", False),
                        "Adapter": Variant("o", ADAPTER_PATH),
                        "RSSI": Variant("n", advert.rssi),
                        **props,
                    }
                },
            )
            return
        # The air is never quite still: each advert's RSSI differs a little, so BlueZ reports
        # every one (bleak hears devices through these PropertiesChanged signals).
        device.rssi_jitter = 0 if device.rssi_jitter else -1
        self._set(device.path, DEVICE, RSSI=Variant("n", advert.rssi + device.rssi_jitter), **props)

    # --- devices --------------------------------------------------------------------------------

    def _device(self, msg: Message) -> _Device:
        for device in self._devices.values():
            if device.path == msg.path:
                return device
        raise BluezError("org.freedesktop.DBus.Error.UnknownObject", f"no device {msg.path}")

    async def _connect(self, msg: Message) -> Message:
        device = self._device(msg)
        if not self.powered:
            raise BluezError(ERROR_NOT_READY, "Resource Not Ready")
        if device.link is not None:
            return Message.new_method_return(msg)
        if device.connecting or self.faults.spend("connect_in_progress"):
            raise BluezError(ERROR_IN_PROGRESS, "In Progress")
        slots = self.faults.connection_slots
        held = sum(1 for d in self._devices.values() if d.link is not None or d.connecting)
        if slots is not None and held >= slots:
            raise BluezError(ERROR_FAILED, CONCURRENT_LIMIT)
        device.connecting = True
        try:
            await self.sleep(self.radio.latency_of(device.address).connect_s)
            if not self.powered:
                raise BluezError(ERROR_FAILED, "le-connection-adapter-not-powered")
            if self.faults.spend("software_abort"):
                raise BluezError(ERROR_FAILED, SOFTWARE_ABORT)
            if self.faults.spend("abort_by_local"):
                # BlueZ had the link for a moment: Connected flips, then the abort.
                self._set(device.path, DEVICE, Connected=Variant("b", True))
                self._set(device.path, DEVICE, Connected=Variant("b", False))
                raise BluezError(ERROR_FAILED, ABORT_BY_LOCAL)
            try:
                link = self.radio.connect(device.address)
            except ConnectionRefused:
                raise BluezError(ERROR_FAILED, "le-connection-abort-by-remote") from None
            except (NotInRange, PeripheralBusy):
                raise BluezError(ERROR_FAILED, CONNECT_TIMEOUT) from None
            device.link = link
            device.pacer = WritePacer()
            self._set(device.path, DEVICE, Connected=Variant("b", True))
            self._resolve(device, link)
            self._set(device.path, DEVICE, ServicesResolved=Variant("b", True))
        finally:
            device.connecting = False
        return Message.new_method_return(msg)

    async def _disconnect(self, msg: Message) -> Message:
        device = self._device(msg)
        if device.link is None:
            raise BluezError(ERROR_NOT_CONNECTED, "Not Connected")
        self._lose_link(device, "disconnected by the central")
        return Message.new_method_return(msg)

    async def _pair(self, msg: Message) -> Message:
        raise BluezError(ERROR_NOT_SUPPORTED, "Operation is not supported")

    _handlers: ClassVar[dict[tuple[str, str], _Handler]] = {
        (ADAPTER, "StartDiscovery"): _start_discovery,
        (ADAPTER, "StopDiscovery"): _stop_discovery,
        (ADAPTER, "SetDiscoveryFilter"): _set_discovery_filter,
        (ADAPTER, "GetDiscoveryFilters"): _get_discovery_filters,
        (ADAPTER, "RemoveDevice"): _remove_device,
        (DEVICE, "Connect"): _connect,
        (DEVICE, "Disconnect"): _disconnect,
        (DEVICE, "Pair"): _pair,
        (CHARACTERISTIC, "ReadValue"): GattServer._read_value,
        (CHARACTERISTIC, "WriteValue"): GattServer._write_value,
        (CHARACTERISTIC, "StartNotify"): GattServer._start_notify,
        (CHARACTERISTIC, "StopNotify"): GattServer._stop_notify,
        (CHARACTERISTIC, "AcquireWrite"): GattServer._acquire_write,
        (CHARACTERISTIC, "AcquireNotify"): GattServer._acquire_notify,
        (DESCRIPTOR, "ReadValue"): GattServer._descriptor_read,
        (DESCRIPTOR, "WriteValue"): GattServer._descriptor_write,
    }
