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

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bleak_retry_connector import (
    BleakConnectionError,
    BleakNotFoundError,
    BleakOutOfConnectionSlotsError,
    establish_connection,
)

from blelock.config import Settings
from blelock.errors import (
    BlelockError,
    DeviceNotFound,
    LinkError,
    LinkLost,
    LinkTimeout,
    OutOfSlots,
)
from blelock.transport.backends import resolve_client_backend
from blelock.transport.base import LinkInfo

__all__ = ["BleLink", "map_bleak_errors", "open_link"]

T = TypeVar("T")

_DISCONNECT_TIMEOUT = 5.0
"""A polite disconnect; past this the stack tears the link down by itself anyway."""


_ADAPTER_HINT = "check that Bluetooth is on and the adapter is present"


@contextlib.contextmanager
def map_bleak_errors(what: str, *, on_link: bool = True) -> Iterator[None]:
    """bleak's and the retry connector's exceptions → the blelock tree (most specific first).

    ``on_link=False`` (scanning): a BleakError is about the adapter, not a dropped link."""
    try:
        yield
    except BlelockError:
        raise
    except (BleakDeviceNotFoundError, BleakNotFoundError) as exc:
        raise DeviceNotFound(f"{what}: the lock is not in range ({_short(exc)})") from None
    except BleakOutOfConnectionSlotsError as exc:
        raise OutOfSlots(f"{what}: {_short(exc)}") from None
    except BleakConnectionError as exc:
        raise LinkError(
            f"{what}: could not connect ({_short(exc)})",
            hint="move closer to the lock, wake it, and try again",
        ) from None
    except TimeoutError:
        raise LinkTimeout(f"{what}: the lock did not answer in time") from None
    except BleakGATTProtocolError as exc:
        # The lock answered, with an ATT error: not a dropped link, and retrying will not help.
        raise LinkError(
            f"{what}: the lock refused the Bluetooth operation ({_short(exc)})",
            hint="check that the lock is of the vendor named and in its normal (not "
            "firmware-update) mode",
        ) from None
    except BleakError as exc:
        if not on_link:
            raise LinkError(f"{what}: {_short(exc)}", hint=_ADAPTER_HINT) from None
        raise LinkLost(f"{what}: {_short(exc)}") from None
    except OSError as exc:  # the adapter (or the simulated radio's socket) is gone
        raise LinkError(
            f"{what}: Bluetooth is unavailable ({exc.strerror or exc})", hint=_ADAPTER_HINT
        ) from None


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
        if not self._lost.done():
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
                with map_bleak_errors(what):
                    return task.result()
            if self._lost in done:
                raise LinkLost(f"the lock dropped the connection during {what}")
            raise LinkTimeout(f"no answer to {what} within {timeout:g} s")
        finally:
            if not task.done():
                task.cancel()
                # wait() neither raises the task's CancelledError nor swallows our own.
                await asyncio.wait({task})

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
        yield link
    finally:
        await link.close()
