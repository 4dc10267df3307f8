"""transport/ble.py on its own: the bleak error tables (the link's, the scan's), and a drop
interrupting a waiting call."""

from __future__ import annotations

import asyncio

import pytest
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bleak_retry_connector import BleakNotFoundError, BleakOutOfConnectionSlotsError

from blelock.errors import DeviceNotFound, LinkError, LinkLost, LinkTimeout, OutOfSlots
from blelock.transport.ble import BleLink, map_link_errors
from blelock.transport.bleak_errors import map_bleak_errors


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (BleakDeviceNotFoundError("AA", "gone"), DeviceNotFound),
        (BleakNotFoundError("not found"), DeviceNotFound),
        (BleakOutOfConnectionSlotsError("no slots"), OutOfSlots),
        (BleakGATTProtocolError(3), LinkError),
        (BleakError("disconnected"), LinkLost),
        (TimeoutError(), LinkTimeout),
        (ConnectionRefusedError(111, "refused"), LinkError),
    ],
    ids=lambda value: type(value).__name__,
)
def test_bleak_errors_map_into_the_tree(raised: BaseException, expected: type) -> None:
    with pytest.raises(expected) as caught, map_link_errors("writing"):
        raise raised
    assert type(caught.value) is expected or expected is LinkError
    assert caught.value.message.startswith("writing")
    assert caught.value.__cause__ is None  # foreign detail stays out of the user's traceback


def test_an_att_refusal_is_not_taken_for_a_dropped_link() -> None:
    with pytest.raises(LinkError) as caught, map_link_errors("reading"):
        raise BleakGATTProtocolError(2)
    assert not isinstance(caught.value, LinkLost)  # LinkLost would trigger a pointless retry


def test_while_scanning_a_bleak_error_is_about_the_adapter() -> None:
    with pytest.raises(LinkError) as caught, map_bleak_errors("scanning", on_link=False):
        raise BleakError("org.bluez.Error.NotReady")
    assert not isinstance(caught.value, LinkLost) and "Bluetooth is on" in (caught.value.hint or "")


async def test_a_drop_interrupts_a_waiting_call_at_once() -> None:
    link = BleLink()
    link.attach(object())  # type: ignore[arg-type]
    waiting = asyncio.create_task(link.notification(timeout=60))
    link.on_disconnect(None)  # type: ignore[arg-type]
    with pytest.raises(LinkLost):
        await waiting


async def test_a_disconnect_while_bleak_still_connects_is_not_a_lost_link() -> None:
    """bleak retries an attempt BlueZ aborted after Connected flipped (and calls back)."""
    link = BleLink()
    link.on_disconnect(None)  # type: ignore[arg-type]
    link.attach(object())  # type: ignore[arg-type]
    with pytest.raises(LinkTimeout):
        await link.notification(timeout=0.01)


async def test_a_silent_lock_times_out() -> None:
    with pytest.raises(LinkTimeout, match=r"within 0\.01 s"):
        await BleLink().notification(timeout=0.01)


async def test_cancelling_the_caller_is_not_swallowed() -> None:
    link = BleLink()
    waiting = asyncio.create_task(link.notification(timeout=60))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
