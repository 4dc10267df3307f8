"""LockLink over bleak: the only module (with cloud/_http.py) that catches foreign exceptions.

Connections go through bleak-retry-connector (transient "133"-style failures retried with its
backoff). Notifications are queued from the moment of subscribing; a disconnect resolves a future
that interrupts whatever call is waiting, so a dropped link surfaces at once as LinkLost, never
as a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)
from bleak_retry_connector import (
    BleakAbortedError,
    BleakConnectionError,
    BleakNotFoundError,
    BleakOutOfConnectionSlotsError,
    clear_cache,
    establish_connection,
)

from blelock.config import Settings
from blelock.errors import (
    AdapterUnavailable,
    BlelockError,
    DeviceNotFound,
    LinkBusy,
    LinkError,
    LinkLost,
    LinkTimeout,
    OutOfSlots,
    StaleServices,
)
from blelock.transport.backends import resolve_client_backend, resolve_scanner_backend
from blelock.transport.base import LinkInfo

__all__ = ["BleLink", "map_bleak_errors", "open_link"]

T = TypeVar("T")

_DISCONNECT_TIMEOUT = 5.0
"""A polite disconnect; past this the stack tears the link down by itself anyway."""


_ADAPTER_HINT = "check that Bluetooth is on and the adapter is present"

# BlueZ's words (org.bluez.Error.* names and the reasons of org.bluez.Error.Failed) as
# bleak and the retry connector pass them on in their messages.
_IN_PROGRESS = "org.bluez.Error.InProgress"
_NOT_READY = "org.bluez.Error.NotReady"
_NOT_CONNECTED = "org.bluez.Error.NotConnected"
_NOT_POWERED = "le-connection-adapter-not-powered"
_CONNECTION_LIMIT = "le-connection-concurrent-connection-limit"

_STALE_SUSPECTS = frozenset(
    {
        BleakGATTProtocolErrorCode.INVALID_HANDLE,
        BleakGATTProtocolErrorCode.READ_NOT_PERMITTED,
        BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED,
        BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED,
        BleakGATTProtocolErrorCode.ATTRIBUTE_NOT_FOUND,
    }
)
"""ATT refusals a lock gives when the request went to a handle its firmware moved: what a
stale cache of its services looks like from here."""

_refreshed: set[str] = set()
"""Locks whose cached services were just cleared: a refusal again on a fresh copy is the
lock's own answer, and the next connection must find the lock again (the OS forgot it)."""


@contextlib.contextmanager
def map_bleak_errors(what: str, *, on_link: bool = True) -> Iterator[None]:
    """bleak's and the retry connector's exceptions → the blelock tree (most specific first).

    ``on_link=False`` (scanning): a BleakError is about the adapter, not a dropped link."""
    try:
        yield
    except BlelockError:
        raise
    except BleakBluetoothNotAvailableError as exc:
        raise AdapterUnavailable(f"{what}: Bluetooth is off or missing ({_short(exc)})") from None
    except (BleakDeviceNotFoundError, BleakNotFoundError) as exc:
        raise DeviceNotFound(f"{what}: the lock is not in range ({_short(exc)})") from None
    except BleakOutOfConnectionSlotsError as exc:
        raise OutOfSlots(f"{what}: {_short(exc)}") from None
    except BleakAbortedError as exc:
        # le-connection-abort-by-local past the connector's own retries: interference.
        raise LinkLost(
            f"{what}: the adapter kept aborting the connection ({_short(exc)})",
            hint="move closer to the lock; on a Raspberry Pi, Wi-Fi on 2.4 GHz or a USB 3 "
            "port next to the adapter causes this (an external adapter on a cable helps)",
        ) from None
    except BleakConnectionError as exc:
        _raise_for_bluez(what, str(exc))
        raise LinkError(
            f"{what}: could not connect ({_short(exc)})",
            hint="move closer to the lock, wake it, and try again",
        ) from None
    except TimeoutError:
        raise LinkTimeout(f"{what}: the lock did not answer in time") from None
    except BleakGATTProtocolError as exc:
        if exc.code == BleakGATTProtocolErrorCode.UNLIKELY_ERROR:
            # What BlueZ answers a request with when the link died under it.
            raise LinkLost(
                f"{what}: the connection failed during the request (ATT error 0x0e)"
            ) from None
        # The lock answered, with an ATT error: not a dropped link, and retrying will not help.
        raise LinkError(
            f"{what}: the lock refused the Bluetooth operation ({_att_text(exc)})",
            hint="check that the lock is of the vendor named and in its normal (not "
            "firmware-update) mode",
        ) from None
    except BleakDBusError as exc:
        _raise_for_bluez(what, str(exc), on_link=on_link)
        if exc.dbus_error == _NOT_CONNECTED:
            raise LinkLost(f"{what}: the connection was already gone ({_NOT_CONNECTED})") from None
        if not on_link:
            raise LinkError(f"{what}: {_dbus_text(exc)}", hint=_ADAPTER_HINT) from None
        raise LinkLost(f"{what}: {_dbus_text(exc)}") from None
    except BleakError as exc:
        if not on_link:
            raise LinkError(f"{what}: {_short(exc)}", hint=_ADAPTER_HINT) from None
        raise LinkLost(f"{what}: {_short(exc)}") from None
    except OSError as exc:  # the adapter (or the simulated radio's socket) is gone
        raise LinkError(
            f"{what}: Bluetooth is unavailable ({exc.strerror or exc})", hint=_ADAPTER_HINT
        ) from None


def _raise_for_bluez(what: str, text: str, *, on_link: bool = True) -> None:
    """BlueZ's refusals that say what to do, whichever bleak exception carried them."""
    if _IN_PROGRESS in text:
        if on_link:
            raise LinkBusy(f"{what}: BlueZ is already connecting to the lock ({_IN_PROGRESS})")
        raise LinkBusy(
            f"{what}: the adapter is already scanning for another program ({_IN_PROGRESS})",
            hint="stop the other program's scan (or wait for it) and try again",
        )
    if _NOT_READY in text or _NOT_POWERED in text:
        raise AdapterUnavailable(f"{what}: the Bluetooth adapter is powered off ({_NOT_READY})")
    if _CONNECTION_LIMIT in text:
        raise OutOfSlots(
            f"{what}: the Bluetooth adapter holds no more connections ({_CONNECTION_LIMIT})"
        )


def _att_text(exc: BleakGATTProtocolError) -> str:
    name = str(exc.args[1]).removeprefix("GATT Protocol Error: ") if len(exc.args) > 1 else ""
    return f"ATT error 0x{int(exc.code):02x}" + (f": {name}" if name else "")


def _dbus_text(exc: BleakDBusError) -> str:
    details = exc.dbus_error_details
    return f"{exc.dbus_error}: {details}" if details else exc.dbus_error


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class BleLink:
    def __init__(self) -> None:
        self._client: BleakClient | None = None
        self._notifications: asyncio.Queue[bytes] = asyncio.Queue()
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def info(self) -> LinkInfo:
        mtu = self._client.mtu_size if self._client is not None else 23
        return LinkInfo(mtu=mtu, rssi=None)

    def on_disconnect(self, _client: BleakClient) -> None:
        # Only a link we hold can be lost: while connecting, bleak itself retries an attempt
        # that connected for a moment (BlueZ's le-connection-abort-by-local) and calls this.
        if self._client is not None and not self._lost.done():
            self._lost.set_result(None)

    def attach(self, client: BleakClient) -> None:
        self._client = client

    async def _guarded(self, operation: Awaitable[T], *, timeout: float, what: str) -> T:
        """Run one operation; LinkLost the moment the link drops, LinkTimeout past ``timeout``."""
        task = asyncio.ensure_future(operation)
        waiters: set[asyncio.Future[Any]] = {task, self._lost}
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                if (failure := task.exception()) is not None:
                    await self._refresh_if_stale(failure, what)
                with map_bleak_errors(what):
                    result = task.result()
                if self._client is not None:
                    _refreshed.discard(self._client.address.upper())
                return result
            if self._lost in done:
                raise LinkLost(f"the lock dropped the connection during {what}")
            raise LinkTimeout(f"no answer to {what} within {timeout:g} s")
        finally:
            if not task.done():
                task.cancel()
                # wait() neither raises the task's CancelledError nor swallows our own.
                await asyncio.wait({task})

    async def _refresh_if_stale(self, failure: BaseException, what: str) -> None:
        """A refusal that a stale cache of the lock's services explains: clear the cache (on
        BlueZ that forgets the device) and raise StaleServices, retried like a dropped link.
        Once per lock: a refusal on a fresh copy is the lock's own answer."""
        stale = isinstance(failure, BleakCharacteristicNotFoundError) or (
            isinstance(failure, BleakGATTProtocolError) and failure.code in _STALE_SUSPECTS
        )
        if not stale or self._client is None:
            return
        address = self._client.address.upper()
        if address in _refreshed:
            return
        cleared = False
        with contextlib.suppress(BleakError, TimeoutError, OSError):
            async with asyncio.timeout(_DISCONNECT_TIMEOUT):
                cleared = await clear_cache(address)
        if cleared:
            _refreshed.add(address)
            raise StaleServices(
                f"{what}: the lock's Bluetooth services are not the ones the adapter had cached "
                f"({_short(failure)}; after a firmware update?); the cache was cleared"
            )

    def _connected(self) -> BleakClient:
        if self._client is None:
            raise RuntimeError("BleLink used before it was connected")
        return self._client

    async def read(self, char_uuid: str, *, timeout: float) -> bytes:
        data = await self._guarded(
            self._connected().read_gatt_char(char_uuid), timeout=timeout, what="reading the lock"
        )
        return bytes(data)

    async def subscribe(self, char_uuid: str, *, timeout: float) -> None:
        def queue(_char: object, data: bytearray) -> None:
            self._notifications.put_nowait(bytes(data))

        await self._guarded(
            self._connected().start_notify(char_uuid, queue),
            timeout=timeout,
            what="subscribing to the lock's answers",
        )

    async def write(
        self, char_uuid: str, data: bytes, *, timeout: float, response: bool = False
    ) -> None:
        await self._guarded(
            self._connected().write_gatt_char(char_uuid, data, response=response),
            timeout=timeout,
            what="writing to the lock",
        )

    async def notification(self, *, timeout: float) -> bytes:
        if not self._notifications.empty():
            return self._notifications.get_nowait()
        return await self._guarded(
            self._notifications.get(), timeout=timeout, what="waiting for the lock's answer"
        )

    async def close(self) -> None:
        client = self._client
        if client is None or self._lost.done():
            return
        with contextlib.suppress(BleakError, TimeoutError, OSError):
            async with asyncio.timeout(_DISCONNECT_TIMEOUT):
                await client.disconnect()


@contextlib.asynccontextmanager
async def open_link(device: BLEDevice, settings: Settings, *, name: str) -> AsyncIterator[BleLink]:
    """Connect to ``device``; the link is closed when the block ends, however it ends."""
    backend = resolve_client_backend(settings.ble_client_backend)
    extra: dict[str, Any] = {} if backend is None else {"backend": backend}
    timeouts = settings.timeouts
    link = BleLink()
    if device.address.upper() in _refreshed:
        device = await _find_again(device, settings)
    with map_bleak_errors("connecting"):
        try:
            async with asyncio.timeout(timeouts.connect):
                client = await establish_connection(
                    BleakClient,
                    device,
                    name,
                    disconnected_callback=link.on_disconnect,
                    max_attempts=timeouts.connect_attempts,
                    **extra,
                )
        except TimeoutError:
            raise LinkTimeout(f"connecting: no connection within {timeouts.connect:g} s") from None
    link.attach(client)
    try:
        await _learn_mtu(client, timeouts.gatt)
    except BaseException:
        await link.close()
        raise
    try:
        yield link
    finally:
        await link.close()


async def _find_again(device: BLEDevice, settings: Settings) -> BLEDevice:
    """After a cache was cleared the OS has forgotten the lock (BlueZ removes the device):
    hear it once more before connecting. The old handle serves where nothing was forgotten."""
    backend = resolve_scanner_backend(settings.ble_scanner_backend)
    extra: dict[str, Any] = {} if backend is None else {"backend": backend}
    with map_bleak_errors("finding the lock again", on_link=False):
        found = await BleakScanner.find_device_by_address(
            device.address, timeout=settings.timeouts.scan, **extra
        )
    return found if found is not None else device


async def _learn_mtu(client: BleakClient, timeout: float) -> None:
    """The link's ATT MTU. bleak's BlueZ backend learns it only when asked (bleak documents
    ``_acquire_mtu`` for this); other backends know it from connecting."""
    acquire = getattr(getattr(client, "_backend", None), "_acquire_mtu", None)
    if acquire is None:
        return
    # bleak asks a characteristic that writes without response or notifies; a lock whose
    # characteristics only indicate (Nuki's) has none, and keeps the default MTU of 23 (set
    # as bleak's warning says, so that reading it does not warn).
    usable = {"write-without-response", "notify"}
    if not any(usable & set(c.properties) for c in client.services.characteristics.values()):
        client._backend._mtu_size = 23  # type: ignore[attr-defined]
        return
    with map_bleak_errors("learning the link's packet size"):
        async with asyncio.timeout(timeout):
            await acquire()
