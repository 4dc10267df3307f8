"""bleak backends that reach the simulated radio over its loopback socket.

Pass them as ``backend=`` to ``bleak.BleakScanner`` / ``bleak.BleakClient`` (or to
``bleak_retry_connector.establish_connection``); blelock itself never knows. The radio server's
address comes from the ``BLEDevice`` a ``SimBleakScanner`` reported (``details["radio"]``), else
from the ``BLELOCK_SIM_RADIO`` environment variable (``"127.0.0.1:PORT"``). The wire protocol
is described in :mod:`simulators.radio_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError

from simulators.radio import ServiceSpec
from simulators.radio_wire import decode_advertisement, decode_services

__all__ = ["ATT_MTU", "CCCD_UUID", "RADIO_ENV", "SimBleakClient", "SimBleakScanner"]

_log = logging.getLogger(__name__)

RADIO_ENV = "BLELOCK_SIM_RADIO"
ATT_MTU = 23
"""The default ATT MTU: what ``mtu_size`` says before a connection negotiated another (the
radio's ``connect`` reply carries the negotiated one)."""
CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"
_DISCONNECT_TIMEOUT = 5.0
"""A polite disconnect; past it the socket closes and the server tears the link down anyway."""
_PROPERTY_NAMES = frozenset(typing.get_args(CharacteristicPropertyName))


def _radio_address(device: BLEDevice | str | None = None) -> str:
    if isinstance(device, BLEDevice) and isinstance(device.details, dict):
        radio = device.details.get("radio")
        if isinstance(radio, str):
            return radio
    radio = os.environ.get(RADIO_ENV)
    if not radio:
        raise BleakError(
            f"simulated BLE backend: no radio to talk to; set {RADIO_ENV}=127.0.0.1:PORT "
            "(printed by blelock-sim) or use a device found by SimBleakScanner"
        )
    return radio


class _Refusal(Exception):
    """A failure reply from the radio server, before it becomes a bleak exception."""

    def __init__(self, code: str, message: str, att: int | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.att = att


_EventHandler = Callable[["_Channel", dict[str, Any]], None]
_LostHandler = Callable[["_Channel", str], None]


class _Channel:
    """One TCP session with the radio server: requests matched to replies by id, events handed
    to ``on_event`` from the read loop (so callbacks run inside the event loop), and
    ``on_lost`` when the server goes away without being asked to."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_event: _EventHandler,
        on_lost: _LostHandler,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_event = on_event
        self._on_lost = on_lost
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._closed = False
        self._read_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(cls, radio: str, on_event: _EventHandler, on_lost: _LostHandler) -> _Channel:
        host, _, port = radio.rpartition(":")
        if not host or not port.isdigit():
            raise BleakError(f"{RADIO_ENV}={radio!r} is not HOST:PORT")
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            raise BleakError(
                f"cannot reach the simulated radio at {radio} ({exc.strerror or exc}); "
                f"is blelock-sim running, and is {RADIO_ENV} current?"
            ) from None
        return cls(reader, writer, on_event, on_lost)

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        if self._closed:
            raise BleakError("the session with the simulated radio is closed")
        request_id = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        try:
            line = json.dumps({"id": request_id, "op": op, **args}, separators=(",", ":"))
            self._writer.write(line.encode() + b"\n")
            try:
                await self._writer.drain()
            except ConnectionError as exc:
                raise BleakError(f"the simulated radio went away ({exc})") from None
            return await reply
        finally:
            self._pending.pop(request_id, None)

    def close(self, error: BleakError | None = None) -> None:
        """Fail pending requests (with ``error``) and close the socket; no ``on_lost``."""
        if self._closed:
            return
        self._closed = True
        error = error or BleakError("the session with the simulated radio was closed")
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(error)
        self._writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        await asyncio.gather(self._read_task, return_exceptions=True)

    async def _read_loop(self) -> None:
        reason = "the simulated radio closed the connection"
        try:
            while not self._closed and (line := await self._reader.readline()):
                self._dispatch(json.loads(line))
        except ConnectionError as exc:
            reason = f"the connection to the simulated radio failed ({exc})"
        except Exception as exc:  # a malformed message: end the session, never hang its callers
            _log.exception("simulated radio: unexpected message")
            reason = f"unexpected message from the simulated radio ({exc!r})"
        if not self._closed:
            self.close(BleakError(reason))
            self._on_lost(self, reason)

    def _dispatch(self, message: Any) -> None:
        if not isinstance(message, dict):
            raise ValueError(f"not a JSON object: {message!r}")
        if "id" not in message:
            self._on_event(self, message)
            return
        reply = self._pending.get(message["id"])
        if reply is None or reply.done():
            return  # its caller gave up (cancelled or timed out)
        if message.get("ok") is True:
            reply.set_result(message)
        else:
            att = message.get("att")
            reply.set_exception(
                _Refusal(
                    str(message.get("error")),
                    str(message.get("message")),
                    att if isinstance(att, int) else None,
                )
            )


def _bleak_error(refusal: _Refusal, address: str) -> BleakError:
    # Messages are chosen for bleak-retry-connector too: it classifies errors by their text.
    code, message = refusal.code, refusal.message
    if code == "not-found":
        return BleakDeviceNotFoundError(address, f"{address} not found: {message}")
    if code == "refused":
        return BleakError(f"{address}: connection refused ({message})")
    if code == "busy":
        return BleakError(f"{address} is busy: {message}")
    if code == "att" and refusal.att is not None:
        error = BleakGATTProtocolError(refusal.att)
        error.add_note(f"{address}: {message}")
        return error
    if code == "disconnected":
        return BleakError(f"{address}: disconnected ({message})")
    if code == "not-connected":
        return BleakError(f"{address}: not connected ({message})")
    return BleakError(f"{address}: the simulated radio failed the request ({code}: {message})")


def _properties(names: Sequence[str]) -> list[CharacteristicPropertyName]:
    unknown = set(names) - _PROPERTY_NAMES
    if unknown:
        raise BleakError(f"simulated radio sent unknown characteristic properties {unknown}")
    return [cast(CharacteristicPropertyName, name) for name in names]


def _service_collection(
    services: Sequence[ServiceSpec], mtu: int = ATT_MTU
) -> BleakGATTServiceCollection:
    collection = BleakGATTServiceCollection()
    handles = itertools.count(1)
    for spec in services:
        service = BleakGATTService(spec, next(handles), spec.uuid)
        collection.add_service(service)
        for char_spec in spec.characteristics:
            char = BleakGATTCharacteristic(
                char_spec,
                next(handles),
                char_spec.uuid,
                _properties(char_spec.properties),
                lambda: mtu - 3,
                service,
            )
            collection.add_characteristic(char)
            if {"notify", "indicate"} & set(char_spec.properties):
                collection.add_descriptor(BleakGATTDescriptor(None, next(handles), CCCD_UUID, char))
    return collection


class SimBleakClient(BaseBleakClient):
    """A central's connection to one simulated peripheral."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=disconnected_callback,
            timeout=timeout,
            **kwargs,
        )
        self._device = address_or_ble_device
        self._name = (
            address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._channel: _Channel | None = None
        self._callbacks: dict[str, NotifyCallback] = {}
        self._mtu = ATT_MTU

    @property
    def name(self) -> str:
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._channel is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._channel is not None:
            return
        if pair:
            _log.debug("%s: simulated peripherals do not bond; pair=True ignored", self.address)
        timeout = float(kwargs.get("timeout", self._timeout))
        async with asyncio.timeout(timeout):
            channel = await _Channel.open(_radio_address(self._device), self._event, self._lost)
            connected = False
            try:
                reply = await channel.request("connect", address=self.address)
                mtu = reply.get("mtu", ATT_MTU)
                if not isinstance(mtu, int) or not 23 <= mtu <= 517:
                    raise BleakError(f"simulated radio sent ATT MTU {mtu!r}")
                services = _service_collection(decode_services(reply.get("services")), mtu)
                connected = True
            except _Refusal as refusal:
                raise _bleak_error(refusal, self.address) from None
            finally:
                if not connected:
                    channel.close()  # also a timed-out attempt: its link ends with the socket
        name = reply.get("name")
        self._name = self._name or (name if isinstance(name, str) else None)
        self.services = services
        self._mtu = mtu
        self._channel = channel

    async def disconnect(self) -> None:
        channel, self._channel = self._channel, None
        if channel is None:
            return
        self._callbacks.clear()
        try:
            async with asyncio.timeout(_DISCONNECT_TIMEOUT):
                await channel.request("disconnect")
        except (_Refusal, BleakError, TimeoutError) as exc:
            _log.debug("%s: disconnect: %s (closing the socket ends the link)", self.address, exc)
        finally:
            channel.close()
        await channel.wait_closed()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        _log.debug("%s: simulated peripherals do not bond; pair() does nothing", self.address)

    async def unpair(self) -> None:
        _log.debug("%s: simulated peripherals do not bond; unpair() does nothing", self.address)

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        reply = await self._request("read", char=characteristic.uuid)
        return bytearray.fromhex(str(reply.get("value")))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._only_cccd(descriptor)
        reply = await self._request("cccd", char=descriptor.characteristic_uuid)
        return bytearray.fromhex(str(reply.get("value")))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        value = bytes(data).hex()
        await self._request("write", char=characteristic.uuid, value=value, response=response)

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        self._only_cccd(descriptor)
        value = bytes(data)
        enabled = bool(value) and bool(value[0] & 0x03)  # bit 0 notify, bit 1 indicate
        await self._request("subscribe", char=descriptor.characteristic_uuid, enabled=enabled)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        # Registered before the CCCD write: the first notification may follow its reply at once.
        self._callbacks[characteristic.uuid] = callback
        try:
            await self._request("subscribe", char=characteristic.uuid, enabled=True)
        except BaseException:
            self._callbacks.pop(characteristic.uuid, None)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        await self._request("subscribe", char=characteristic.uuid, enabled=False)
        self._callbacks.pop(characteristic.uuid, None)

    def _only_cccd(self, descriptor: BleakGATTDescriptor) -> None:
        if descriptor.uuid != CCCD_UUID:
            raise BleakError(f"{self.address}: simulated peripherals have only CCCD descriptors")

    async def _request(self, op: str, **args: Any) -> dict[str, Any]:
        channel = self._channel
        if channel is None:
            raise BleakError(f"{self.address}: not connected")
        try:
            return await channel.request(op, **args)
        except _Refusal as refusal:
            raise _bleak_error(refusal, self.address) from None

    def _event(self, channel: _Channel, message: dict[str, Any]) -> None:
        if channel is not self._channel:
            return
        kind = message.get("event")
        if kind == "notify":
            callback = self._callbacks.get(str(message.get("char")))
            if callback is not None:
                try:
                    callback(bytearray.fromhex(str(message.get("value"))))
                except Exception:
                    _log.exception("%s: notification callback raised", self.address)
        elif kind == "disconnected":
            self._lost(channel, str(message.get("reason")))

    def _lost(self, channel: _Channel, reason: str) -> None:
        """An unsolicited disconnection: fail what is pending, then tell the owner."""
        if channel is not self._channel:
            return
        self._channel = None
        self._callbacks.clear()
        channel.close(BleakError(f"{self.address}: disconnected ({reason})"))
        if self._disconnected_callback is not None:
            try:
                self._disconnected_callback()
            except Exception:
                _log.exception("%s: disconnected callback raised", self.address)


class SimBleakScanner(BaseBleakScanner):
    """Hears the simulated radio's advertisers while started."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._channel: _Channel | None = None
        self._radio = ""

    async def start(self) -> None:
        if self._channel is not None:
            return
        self._radio = _radio_address()
        self.seen_devices = {}
        channel = await _Channel.open(self._radio, self._event, self._lost)
        try:
            await channel.request("scan-start")
        except BaseException:
            channel.close()
            raise
        self._channel = channel

    async def stop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is None:
            return
        with contextlib.suppress(_Refusal, BleakError):
            await channel.request("scan-stop")
        channel.close()
        await channel.wait_closed()

    def _event(self, channel: _Channel, message: dict[str, Any]) -> None:
        if channel is not self._channel or message.get("event") != "advert":
            return
        address, advert = decode_advertisement(message)
        service_uuids = list(advert.service_uuids)
        if not self.is_allowed_uuid(service_uuids):
            return
        data = AdvertisementData(
            local_name=advert.local_name,
            manufacturer_data=advert.manufacturer_data,
            service_data=advert.service_data,
            service_uuids=service_uuids,
            tx_power=advert.tx_power,
            rssi=advert.rssi,
            platform_data=(),
        )
        details = {"source": "sim", "radio": self._radio}
        device = self.create_or_update_device(address, address, advert.local_name, details, data)
        try:
            self.call_detection_callbacks(device, data)
        except Exception:
            _log.exception("detection callback raised on %s", address)

    def _lost(self, channel: _Channel, reason: str) -> None:
        if channel is self._channel:
            _log.warning("scanning stopped: %s", reason)
            self._channel = None
