"""The simulated padlock refuses what a real one would, each with its result code."""

from __future__ import annotations

import pytest

from blelock.vendors.noke import protocol as noke
from simulators.noke_lock import SimNokeLock
from simulators.radio import GattRefused

KEY = bytes(range(16))


def connect(lock: SimNokeLock) -> bytes:
    lock.on_connect()
    lock.on_subscribe(noke.NOTIFY_UUID, True)
    return lock.on_read(noke.SESSION_UUID)


def commands(
    lock: SimNokeLock, session: bytes, action: str = "unlock", *, now: int = 1_700_000_000
) -> list[bytes]:
    text = noke.cloud_command_string(
        lock.key, session, action, unix_time=now, batch_id=9, setup=True
    )
    return noke.split_commands(text)


def results(notes: list[tuple[str, bytes]]) -> list[int]:
    return [value[1] for _, value in notes if value[0] == noke.Destination.APP]


def test_each_connection_has_a_fresh_session_carrying_the_battery() -> None:
    lock = SimNokeLock(mac="AA:BB:CC:DD:EE:01", key=KEY, battery_mv=2910)
    first, second = connect(lock), connect(lock)
    assert first != second and len(first) == noke.SESSION_SIZE
    assert noke.Session.parse(first).battery_mv == 2910


def test_a_cloud_batch_is_executed_and_logged() -> None:
    lock = SimNokeLock(mac="AA:BB:CC:DD:EE:01", key=KEY)
    session = connect(lock)
    notes = [
        n for packet in commands(lock, session) for n in lock.on_write(noke.WRITE_UUID, packet)
    ]
    # Every batch ends with the lock's SHUTDOWN, as the vendor's locks do.
    assert results(notes) == [
        noke.ResultCode.SUCCESS,
        noke.ResultCode.SUCCESS,
        noke.ResultCode.SHUTDOWN,
    ]
    assert (lock.setups, lock.unlocks, lock.state) == (1, 1, "unlocked")
    assert all(len(value) == noke.PACKET_SIZE for _, value in notes)
    servers = [value.hex() for _, value in notes if value[0] == noke.Destination.SERVER]
    assert [payload for _, payload in lock.server_records] == servers
    records = [noke.open_server_packet(KEY, session, bytes.fromhex(p)) for p in servers]
    assert [r.record_type for r in records] == [noke.RecordType.KEY, noke.RecordType.UNLOCK]


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("replay", noke.ResultCode.INVALID_PERMISSION),
        ("stale session", noke.ResultCode.INVALID_KEY),
        ("other lock", noke.ResultCode.INVALID_KEY),
        ("out of order", noke.ResultCode.INVALID_DATA),
        ("short packet", noke.ResultCode.INVALID_DATA),
    ],
)
def test_refusals(tamper: str, expected: noke.ResultCode) -> None:
    lock = SimNokeLock(mac="AA:BB:CC:DD:EE:01", key=KEY)
    other = SimNokeLock(mac="AA:BB:CC:DD:EE:02", key=bytes(16))
    session = connect(lock)
    setup, _ = commands(lock, session)
    if tamper == "replay":
        lock.on_write(noke.WRITE_UUID, setup)
        packet = setup
    elif tamper == "stale session":
        connect(lock)
        packet = setup
    elif tamper == "other lock":
        packet = commands(other, session)[0]
    elif tamper == "out of order":
        lock.on_write(noke.WRITE_UUID, setup)
        packet = commands(lock, session, now=1_700_000_001)[0]  # same batch, countdown back at 1
    else:
        packet = setup[:19]
    assert results(lock.on_write(noke.WRITE_UUID, packet)) == [expected]
    assert lock.refusals[expected] == 1 and lock.unlocks == 0


def test_unshackle_needs_an_hd_padlock() -> None:
    lock = SimNokeLock(mac="AA:BB:CC:DD:EE:01", key=KEY, hardware="3P")
    session = connect(lock)
    setup, unshackle = commands(lock, session, "unshackle")
    lock.on_write(noke.WRITE_UUID, setup)
    assert results(lock.on_write(noke.WRITE_UUID, unshackle)) == [noke.ResultCode.INVALID_COMMAND]
    assert lock.unshackles == 0


def test_gatt_access_outside_the_protocol_is_refused() -> None:
    lock = SimNokeLock(mac="AA:BB:CC:DD:EE:01", key=KEY)
    with pytest.raises(GattRefused):
        lock.on_read(noke.SESSION_UUID)  # not connected: no session
    connect(lock)
    with pytest.raises(GattRefused):
        lock.on_write(noke.NOTIFY_UUID, bytes(20))
