"""bleak's exceptions → the blelock tree, for the scan and (under the retry connector's own,
in :mod:`blelock.transport.ble`) the link. With ``transport/ble.py`` and ``cloud/_http.py``,
the only modules that catch foreign exceptions.

Light at import time on purpose: a scan needs only bleak, and the retry connector (with
bluetooth-adapters and dbus-fast under it) is imported while the radio listens, by the link.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from blelock.errors import (
    AdapterUnavailable,
    BlelockError,
    DeviceNotFound,
    LinkBusy,
    LinkError,
    LinkLost,
    LinkTimeout,
    OutOfSlots,
)

__all__ = ["ADAPTER_HINT", "map_bleak_errors", "raise_for_bluez", "short"]

ADAPTER_HINT = "check that Bluetooth is on and the adapter is present"

# BlueZ's words (org.bluez.Error.* names and the reasons of org.bluez.Error.Failed) as
# bleak and the retry connector pass them on in their messages.
_IN_PROGRESS = "org.bluez.Error.InProgress"
_NOT_READY = "org.bluez.Error.NotReady"
_NOT_CONNECTED = "org.bluez.Error.NotConnected"
_NOT_POWERED = "le-connection-adapter-not-powered"
_CONNECTION_LIMIT = "le-connection-concurrent-connection-limit"


@contextlib.contextmanager
def map_bleak_errors(what: str, *, on_link: bool = True) -> Iterator[None]:
    """bleak's own exceptions → the blelock tree (most specific first).

    ``on_link=False`` (scanning): a BleakError is about the adapter, not a dropped link."""
    try:
        yield
    except BlelockError:
        raise
    except BleakBluetoothNotAvailableError as exc:
        raise AdapterUnavailable(f"{what}: Bluetooth is off or missing ({short(exc)})") from None
    except BleakDeviceNotFoundError as exc:
        raise DeviceNotFound(f"{what}: the lock is not in range ({short(exc)})") from None
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
        raise_for_bluez(what, str(exc), on_link=on_link)
        if exc.dbus_error == _NOT_CONNECTED:
            raise LinkLost(f"{what}: the connection was already gone ({_NOT_CONNECTED})") from None
        if not on_link:
            raise LinkError(f"{what}: {_dbus_text(exc)}", hint=ADAPTER_HINT) from None
        raise LinkLost(f"{what}: {_dbus_text(exc)}") from None
    except BleakError as exc:
        if not on_link:
            raise LinkError(f"{what}: {short(exc)}", hint=ADAPTER_HINT) from None
        raise LinkLost(f"{what}: {short(exc)}") from None
    except OSError as exc:  # the adapter (or the simulated radio's socket) is gone
        raise LinkError(
            f"{what}: Bluetooth is unavailable ({exc.strerror or exc})", hint=ADAPTER_HINT
        ) from None


def raise_for_bluez(what: str, text: str, *, on_link: bool = True) -> None:
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


def short(exc: BaseException) -> str:
    """An exception's first line (its type's name when it has none)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
