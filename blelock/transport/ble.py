"""LockLink over bleak: with bleak_errors.py and cloud/_http.py, the only modules that catch
foreign exceptions.

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
    BleakCharacteristicNotFoundError,
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
    DeviceNotFound,
    LinkError,
    LinkLost,
    LinkTimeout,
    OutOfSlots,
    StaleServices,
)
from blelock.transport.backends import resolve_client_backend, resolve_scanner_backend
from blelock.transport.base import LinkInfo
from blelock.transport.bleak_errors import map_bleak_errors, raise_for_bluez, short

__all__ = ["BleLink", "map_link_errors", "open_link"]

T = TypeVar("T")

_DISCONNECT_TIMEOUT = 5.0
"""A polite disconnect; past this the stack tears the link down by itself anyway."""


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
def map_link_errors(what: str, *, on_link: bool = True) -> Iterator[None]:
    """The retry connector's exceptions, then bleak's (:func:`map_bleak_errors`) → the
    blelock tree."""
    with map_bleak_errors(what, on_link=on_link):
        try:
            yield
        except BleakNotFoundError as exc:
            raise DeviceNotFound(f"{what}: the lock is not in range ({short(exc)})") from None
        except BleakOutOfConnectionSlotsError as exc:
            raise OutOfSlots(f"{what}: {short(exc)}") from None
        except BleakAbortedError as exc:
            # le-connection-abort-by-local past the connector's own retries: interference.
            raise LinkLost(
                f"{what}: the adapter kept aborting the connection ({short(exc)})",
                hint="move closer to the lock; on a Raspberry Pi, Wi-Fi on 2.4 GHz or a USB 3 "
                "port next to the adapter causes this (an external adapter on a cable helps)",
            ) from None
        except BleakConnectionError as exc:
            raise_for_bluez(what, str(exc))
            raise LinkError(
                f"{what}: could not connect ({short(exc)})",
                hint="move closer to the lock, wake it, and try again",
            ) from None


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
                with map_link_errors(what):
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
                f"({short(failure)}; after a firmware update?); the cache was cleared"
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
    with map_link_errors("connecting"):
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
