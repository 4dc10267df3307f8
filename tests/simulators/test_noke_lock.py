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


def _quick_click_packet(
    session: bytes, command: noke.CommandType, argument: int, extra: bytes, *, batch_id: int = 3
) -> bytes:
    return noke.encode_command(
        noke.combined_key(KEY, session),
        command,
        argument=argument,
        unix_time=1_700_000_000,
        batch_id=batch_id,
        remaining=0,
        extra=extra,
    )


@pytest.mark.parametrize(
    ("command", "argument", "extra"),
    [
        (noke.CommandType.ADD_QUICK_CLICK, 3, bytes([2, 0, 0, 1])),  # two presses
        (noke.CommandType.ADD_QUICK_CLICK, 3, bytes([3, 0, 0, 9])),  # 9 is not 3 bits
        (noke.CommandType.ADD_QUICK_CLICK, 250, noke.quick_click_field("101")),
        (noke.CommandType.ADD_QUICK_CLICK, 0, noke.quick_click_field("101")),
        (noke.CommandType.UNLOCK, 0, bytes([3, 0, 0, 5])),  # only quick clicks carry a code
    ],
)
def test_a_malformed_quick_click_command_is_refused(
    command: noke.CommandType, argument: int, extra: bytes
) -> None:
    lock = SimNokeLock(mac="AA:BB:CC:DD:EE:01", key=KEY)
    session = connect(lock)
    packet = _quick_click_packet(session, command, argument, extra)
    assert results(lock.on_write(noke.WRITE_UUID, packet)) == [noke.ResultCode.INVALID_DATA]
    assert lock.quick_clicks == {} and lock.unlocks == 0


def test_quick_clicks_are_held_counted_down_and_reported_on_the_next_connection() -> None:
    lock = SimNokeLock(mac="AA:BB:CC:DD:EE:01", key=KEY, clock=lambda: 1_700_000_000)
    session = connect(lock)
    add = _quick_click_packet(session, noke.CommandType.ADD_QUICK_CLICK, 2, b"\x03\x00\x00\x05")
    assert results(lock.on_write(noke.WRITE_UUID, add))[0] == noke.ResultCode.SUCCESS
    lock.on_disconnect()
    assert lock.quick_clicks == {"101": 2}
    assert not lock.press_sequence("100") and lock.presses_refused == 1
    assert lock.press_sequence("101") and lock.state == "locked"  # closed again, nobody there
    session = connect(lock)
    (first, *_), *_ = [commands(lock, session)]
    notes = lock.on_write(noke.WRITE_UUID, first)
    reported = [
        noke.open_server_packet(KEY, session, value)
        for _, value in notes
        if value[0] == noke.Destination.SERVER
    ]
    use = reported[0]  # the stored use goes first, sealed under this session
    assert (use.record_type, use.event, use.detail) == (
        noke.RecordType.LOG,
        noke.RecordEvent.QUICK_CLICK_UNLOCKED,
        1,  # uses left
    )
    assert lock.stored_events == []
    remove = _quick_click_packet(
        session, noke.CommandType.REMOVE_QUICK_CLICK, 0, noke.quick_click_field("101"), batch_id=4
    )
    assert results(lock.on_write(noke.WRITE_UUID, remove))[0] == noke.ResultCode.SUCCESS
    assert lock.quick_clicks == {} and not lock.press_sequence("101")


def test_a_full_lock_refuses_a_new_quick_click() -> None:
    lock = SimNokeLock(mac="AA:BB:CC:DD:EE:01", key=KEY)
    lock.quick_clicks = {format(n, "07b"): 1 for n in range(noke.QUICK_CLICKS_PER_LOCK)}
    session = connect(lock)
    add = _quick_click_packet(
        session, noke.CommandType.ADD_QUICK_CLICK, 1, noke.quick_click_field("11111111")
    )
    assert results(lock.on_write(noke.WRITE_UUID, add)) == [noke.ResultCode.INVALID_DATA]
