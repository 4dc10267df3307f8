"""The simulated radio through bleak's public API: a toy peripheral on a RadioServer in the
test's own loop, reached by ``BleakScanner`` / ``BleakClient`` with the sim backends."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bleak_retry_connector import establish_connection

from simulators.bleak_backend import CCCD_UUID, SimBleakClient, SimBleakScanner
from simulators.faults import LinkFaults, parse_fault
from simulators.radio import (
    ATT_READ_NOT_PERMITTED,
    Advertisement,
    CharacteristicSpec,
    GattRefused,
    LatencyModel,
    Radio,
    ServiceSpec,
    WritePacer,
)
from simulators.radio_server import RadioServer

TINY = LatencyModel(
    advertising_interval_s=0.001,
    connect_s=0.001,
    connection_interval_s=0.001,
    write_round_trip_s=0.001,
    phy_byte_s=0.0,  # a 1 ms interval is shorter than real airtime allows: buffers bind
    ifs_s=0.0,
)
WAIT = 5.0
"""Only a bound on a wait for an event that should come much sooner; never a sync sleep."""

ECHO_SERVICE = "5e1f0000-0000-4000-8000-00000000e000"
OTHER_SERVICE = "5e1f0000-0000-4000-8000-00000000f000"
VALUE = "5e1f0001-0000-4000-8000-00000000e000"  # read
RX = "5e1f0002-0000-4000-8000-00000000e000"  # write, write-without-response
TX = "5e1f0003-0000-4000-8000-00000000e000"  # notify
BOOM = "5e1f0004-0000-4000-8000-00000000e000"  # read, and the toy crashes on it
ECHO = "AA:BB:CC:00:00:01"
OTHER = "AA:BB:CC:00:00:02"
VALUE_NOT_ALLOWED = 0x13


@dataclass
class Toy:
    """Echo-ish: reads "hello", answers each write with one notification of it reversed."""

    address: str
    name: str
    service_uuid: str = ECHO_SERVICE
    connects: int = 0
    disconnects: int = 0
    written: list[bytes] = field(default_factory=list)

    def advertisement(self) -> Advertisement | None:
        return Advertisement(
            local_name=self.name,
            manufacturer_data={0x0059: b"\x01\x02"},
            service_uuids=(self.service_uuid,),
            service_data={},
            rssi=-50,
        )

    def services(self) -> tuple[ServiceSpec, ...]:
        return (
            ServiceSpec(
                self.service_uuid,
                (
                    CharacteristicSpec(VALUE, ("read",)),
                    CharacteristicSpec(RX, ("write", "write-without-response")),
                    CharacteristicSpec(TX, ("notify",)),
                    CharacteristicSpec(BOOM, ("read",)),
                ),
            ),
        )

    def on_connect(self) -> None:
        self.connects += 1

    def on_disconnect(self) -> None:
        self.disconnects += 1

    def on_read(self, char_uuid: str) -> bytes:
        if char_uuid == BOOM:
            raise RuntimeError("the toy exploded")
        return b"hello"

    def on_write(self, char_uuid: str, data: bytes) -> list[tuple[str, bytes]]:
        if data == b"bad":
            raise GattRefused(VALUE_NOT_ALLOWED, "the toy dislikes 'bad'")
        self.written.append(data)
        return [(TX, data[::-1])]

    def on_subscribe(self, char_uuid: str, enabled: bool) -> None:
        pass


@dataclass
class Air:
    radio: Radio
    server: RadioServer
    echo: Toy
    other: Toy

    @property
    def faults(self) -> LinkFaults:
        return self.radio.faults_of(ECHO)


@pytest.fixture
async def air(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Air]:
    radio = Radio(TINY)
    echo = Toy(ECHO, "ECHO-1")
    other = Toy(OTHER, "OTHER-2", service_uuid=OTHER_SERVICE)
    radio.add(echo)
    radio.add(other)
    server = await RadioServer.start(radio, host="127.0.0.1", port=0)
    monkeypatch.setenv("BLELOCK_SIM_RADIO", server.address)
    yield Air(radio, server, echo, other)
    await server.close()


async def find(address: str) -> BLEDevice:
    device = await BleakScanner.find_device_by_filter(
        lambda d, _ad: d.address == address, timeout=WAIT, backend=SimBleakScanner
    )
    assert device is not None
    return device


async def hear(until: str, times: int, service_uuids: list[str] | None = None) -> dict[str, int]:
    """Scan until ``until`` was heard ``times`` times; how often each address was heard."""
    heard: collections.Counter[str] = collections.Counter()
    enough = asyncio.Event()

    def callback(device: BLEDevice, _adv: AdvertisementData) -> None:
        heard[device.address] += 1
        if heard[until] >= times:
            enough.set()

    async with (
        BleakScanner(callback, service_uuids, backend=SimBleakScanner),
        asyncio.timeout(WAIT),
    ):
        await enough.wait()
    return dict(heard)


class Notifications:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def __call__(self, _char: object, data: bytearray) -> None:
        self.queue.put_nowait(bytes(data))

    async def next(self) -> bytes:
        async with asyncio.timeout(WAIT):
            return await self.queue.get()


class Disconnects:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.count = 0

    def __call__(self, _client: BleakClient) -> None:
        self.count += 1
        self.event.set()

    async def wait(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.event.wait()


# --- scanning ----------------------------------------------------------------------------------


async def test_scan_finds_the_peripheral_with_its_advertisement(air: Air) -> None:
    seen: list[AdvertisementData] = []

    def wanted(device: BLEDevice, adv: AdvertisementData) -> bool:
        seen.append(adv)
        return device.address == ECHO

    device = await BleakScanner.find_device_by_filter(wanted, timeout=WAIT, backend=SimBleakScanner)
    assert device is not None
    assert device.name == "ECHO-1"
    assert device.details == {"source": "sim", "radio": air.server.address}
    adv = next(a for a in seen if a.local_name == "ECHO-1")
    assert adv.manufacturer_data == {0x0059: b"\x01\x02"}
    assert adv.service_uuids == [ECHO_SERVICE]
    assert adv.rssi == -50


async def test_discover_lists_every_advertiser(air: Air) -> None:
    # Window after window (bounded): a loaded machine's loop can stall through a whole 0.1 s
    # window, though each advertiser is heard a hundred times in one.
    for _ in range(20):
        found = await BleakScanner.discover(timeout=0.1, return_adv=True, backend=SimBleakScanner)
        if len(found) >= 2:
            break
    assert set(found) == {ECHO, OTHER}
    assert found[OTHER][1].local_name == "OTHER-2"


async def test_service_filter_excludes_other_advertisers(air: Air) -> None:
    heard = await hear(until=ECHO, times=3, service_uuids=[ECHO_SERVICE.upper()])
    assert OTHER not in heard


async def test_out_of_range_is_not_heard_and_cannot_be_connected(air: Air) -> None:
    device = await find(ECHO)
    air.faults.out_of_range = True

    heard = await hear(until=OTHER, times=3)  # ECHO advertises as often, had it been in range

    assert ECHO not in heard
    with pytest.raises(BleakDeviceNotFoundError, match="not found"):
        await BleakClient(device, backend=SimBleakClient).connect()
    assert air.echo.connects == 0


async def test_the_wait_log_holds_each_scans_wait_for_each_lock_and_the_links_waits(
    air: Air,
) -> None:
    for _ in range(2):  # two scans, each waiting for ECHO's first advert afresh
        device = await find(ECHO)
    async with BleakClient(device, backend=SimBleakClient) as client:
        assert await client.read_gatt_char(VALUE) == b"hello"
    waits = list(air.radio.waits.windows)
    echo_adverts = [end - start for start, end, what in waits if what == f"advert {ECHO}"]
    assert len(echo_adverts) == 2
    assert echo_adverts == [pytest.approx(TINY.advertising_interval_s)] * 2
    # The link's windows, overlaps counted once, are what Radio.modelled_s counted.
    link = air.radio.waits.covered(0.0, float("inf"), counts=lambda what: what == "link")
    assert link > 0 and link == pytest.approx(air.radio.modelled_s)


async def test_a_scans_wait_for_a_lock_runs_from_its_start_through_adverts_it_could_not_hear(
    air: Air,
) -> None:
    air.faults.out_of_range = True  # ECHO is away while OTHER advertises three times
    others = 0
    heard_echo = asyncio.Event()

    def callback(device: BLEDevice, _adv: AdvertisementData) -> None:
        nonlocal others
        if device.address == ECHO:
            heard_echo.set()
        elif device.address == OTHER and (others := others + 1) == 3:
            air.faults.out_of_range = False

    async with BleakScanner(callback, backend=SimBleakScanner), asyncio.timeout(WAIT):
        await heard_echo.wait()
    assert others >= 3
    echo = [end - start for start, end, what in air.radio.waits.windows if what == f"advert {ECHO}"]
    assert len(echo) == 1
    assert echo[0] > 2.5 * TINY.advertising_interval_s


async def test_unknown_address_is_not_found(air: Air) -> None:
    with pytest.raises(BleakDeviceNotFoundError) as caught:
        await BleakClient("00:11:22:33:44:55", backend=SimBleakClient).connect()
    assert caught.value.identifier == "00:11:22:33:44:55"


# --- a connection ------------------------------------------------------------------------------


async def test_read_write_notify_round_trip(air: Air) -> None:
    device = await find(ECHO)
    notes = Notifications()
    async with BleakClient(device, backend=SimBleakClient) as client:
        assert client.is_connected
        assert client.name == "ECHO-1"
        assert client.mtu_size == 23
        tx = client.services.get_characteristic(TX)
        assert tx is not None
        assert [d.uuid for d in tx.descriptors] == [CCCD_UUID]

        assert await client.read_gatt_char(VALUE) == b"hello"
        await client.write_gatt_char(RX, b"unheard", response=True)  # nobody subscribed yet
        await client.start_notify(TX, notes)
        assert await client.read_gatt_descriptor(tx.descriptors[0].handle) == b"\x01\x00"
        await client.write_gatt_char(RX, b"abc", response=False)
        await client.write_gatt_char(RX, b"def", response=False)
        await client.write_gatt_char(RX, b"xyz", response=True)
        assert [await notes.next() for _ in range(3)] == [b"cba", b"fed", b"zyx"]
        await client.stop_notify(TX)
        assert await client.read_gatt_descriptor(tx.descriptors[0].handle) == b"\x00\x00"

    assert not client.is_connected
    assert (air.echo.connects, air.echo.disconnects) == (1, 1)
    assert air.echo.written == [b"unheard", b"abc", b"def", b"xyz"]
    stats = air.radio.stats_of(ECHO)
    assert (stats.connections, stats.writes_delivered, stats.links_dropped) == (1, 4, 0)


async def test_slow_factor_scales_every_latency_of_that_peripheral(air: Air) -> None:
    # That the server sleeps for these values is what the unlock benchmark measures; a unit test
    # checks the arithmetic, not the clock.
    base = air.radio.latency
    air.faults.slow_factor = 20
    slow = air.radio.latency_of(ECHO)
    assert slow.connect_s == pytest.approx(20 * base.connect_s)
    assert slow.connection_interval_s == pytest.approx(20 * base.connection_interval_s)
    assert slow.write_round_trip_s == pytest.approx(20 * base.write_round_trip_s)
    assert slow.advertising_interval_s == pytest.approx(20 * base.advertising_interval_s)


# --- throughput: writes without response are paced per connection interval -------------------

PACED = LatencyModel(connection_interval_s=10.0, packets_per_interval=3)
"""Long intervals: a paced test never waits (its sleeps are recorded), and a real wait would
time the test out rather than pass by luck."""


def offer(pacer: WritePacer, times: list[float], model: LatencyModel = PACED) -> list[float]:
    return [pacer.admit(now, model) for now in times]


def test_a_write_waits_only_when_its_interval_is_full() -> None:
    # Writes offered back to back at t=100: three per 10 s interval, each interval opening
    # exactly one interval after the last, so a client that keeps up runs at the ceiling.
    assert offer(WritePacer(), [100.0] * 8) == [100, 100, 100, 110, 110, 110, 120, 120]


def test_a_client_that_waited_fills_the_interval_it_waited_for() -> None:
    # Each write offered when the previous one went (as a client awaiting acks does).
    pacer, went = WritePacer(), []
    now = 100.0
    for _ in range(7):
        now = pacer.admit(now, PACED)
        went.append(now)
    assert went == [100, 100, 100, 110, 110, 110, 120]


def test_an_idle_link_opens_a_fresh_interval_at_the_next_write() -> None:
    pacer = WritePacer()
    assert offer(pacer, [100.0, 101.0, 102.0, 103.0]) == [100, 101, 102, 110]
    # Past the end of that interval (110 + 10) the link is idle: no wait, a new count.
    assert offer(pacer, [125.0, 125.0, 125.0, 125.0]) == [125, 125, 125, 135]


def test_a_slow_factor_set_mid_link_stretches_the_next_wait() -> None:
    pacer = WritePacer()
    assert offer(pacer, [0.0] * 3) == [0, 0, 0]
    assert offer(pacer, [0.0], PACED.scaled(2)) == [20]  # 20 s intervals, still 3 a time


def test_a_zero_interval_does_not_pace() -> None:
    model = LatencyModel(connection_interval_s=0.0, packets_per_interval=1)
    assert offer(WritePacer(), [5.0] * 4, model) == [5.0] * 4


def test_packets_per_interval_is_kept_by_scaling_and_validated() -> None:
    model = LatencyModel(connection_interval_s=0.015, write_round_trip_s=0.015)
    assert model.packets_per_interval == 6
    slow = model.scaled(3)
    assert slow.packets_per_interval == 6
    assert slow.connection_interval_s == pytest.approx(0.045)
    assert slow == LatencyModel(
        advertising_interval_s=3 * model.advertising_interval_s,
        connect_s=3 * model.connect_s,
        connection_interval_s=3 * model.connection_interval_s,
        write_round_trip_s=3 * model.write_round_trip_s,
    )
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="packets_per_interval"):
            LatencyModel(packets_per_interval=bad)  # type: ignore[arg-type]


async def test_the_server_paces_writes_without_response_and_not_requests(air: Air) -> None:
    asked: list[float] = []

    async def record(delay: float) -> None:
        asked.append(delay)  # and return at once: the pacing is checked, not the clock

    air.radio.latency = PACED
    air.server.sleep = record
    notes = Notifications()
    async with BleakClient(ECHO, backend=SimBleakClient) as client:
        await client.start_notify(TX, notes)
        # connect, CCCD: each wait ends its span after the request arrived, so it is the
        # model's, less the microseconds the simulator spent on the request before waiting
        model = [PACED.connect_s, PACED.connection_interval_s]
        assert asked == [pytest.approx(wait, abs=0.05) for wait in model]
        assert all(got <= wait for got, wait in zip(asked, model, strict=True))
        asked.clear()
        for n in range(7):
            await client.write_gatt_char(RX, bytes([n]), response=False)
        # The recording sleep does not advance the clock: writes 4-6 each wait for the second
        # interval (~10 s away, less the microseconds the writes took), the 7th for the third.
        assert asked == [pytest.approx(d, abs=1) for d in (10, 10, 10, 20)]
        asked.clear()
        await client.write_gatt_char(RX, b"req", response=True)
        assert await client.read_gatt_char(VALUE) == b"hello"
        # ATT requests: one interval each
        assert asked == [pytest.approx(PACED.connection_interval_s, abs=0.05)] * 2
        assert max(asked) <= PACED.connection_interval_s
        assert [await notes.next() for _ in range(8)][-1] == b"qer"  # nothing lost or reordered
    assert air.echo.written == [bytes([n]) for n in range(7)] + [b"req"]


async def test_att_refusals_are_gatt_protocol_errors(air: Air) -> None:
    async with BleakClient(ECHO, backend=SimBleakClient) as client:
        with pytest.raises(BleakGATTProtocolError) as caught:
            await client.write_gatt_char(RX, b"bad", response=True)
        assert caught.value.code == VALUE_NOT_ALLOWED
        with pytest.raises(BleakGATTProtocolError) as caught:
            await client.read_gatt_char(RX)  # not readable: the radio refuses like a GATT server
        assert caught.value.code == ATT_READ_NOT_PERMITTED
        assert await client.read_gatt_char(VALUE) == b"hello"  # the link survived both


async def test_operations_after_disconnect_raise(air: Air) -> None:
    client = BleakClient(ECHO, backend=SimBleakClient)
    await client.connect()
    await client.disconnect()
    with pytest.raises(BleakError, match="not connected"):
        await client.read_gatt_char(VALUE)


async def test_second_central_is_refused_while_connected(air: Air) -> None:
    async with BleakClient(ECHO, backend=SimBleakClient):
        with pytest.raises(BleakError, match="busy"):
            await BleakClient(ECHO, backend=SimBleakClient).connect()
    assert air.echo.connects == 1
    async with BleakClient(ECHO, backend=SimBleakClient) as again:  # free once released
        assert again.is_connected


async def test_connect_honours_its_timeout(air: Air) -> None:
    air.faults.slow_factor = 10_000  # connection setup now takes 10 s
    with pytest.raises(TimeoutError):
        await BleakClient(ECHO, timeout=0.05, backend=SimBleakClient).connect()
    assert air.echo.connects == 0


async def test_client_prefers_the_radio_the_scanner_reported(
    air: Air, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await find(ECHO)
    monkeypatch.setenv("BLELOCK_SIM_RADIO", "127.0.0.1:1")  # nothing listens there
    async with BleakClient(device, backend=SimBleakClient) as client:
        assert await client.read_gatt_char(VALUE) == b"hello"
    with pytest.raises(BleakError, match=r"cannot reach the simulated radio at 127\.0\.0\.1:1 "):
        await BleakClient(ECHO, backend=SimBleakClient).connect()


async def test_missing_radio_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BLELOCK_SIM_RADIO", raising=False)
    with pytest.raises(BleakError, match="BLELOCK_SIM_RADIO"):
        await BleakClient(ECHO, backend=SimBleakClient).connect()
    with pytest.raises(BleakError, match="BLELOCK_SIM_RADIO"):
        await BleakScanner.discover(timeout=0.01, backend=SimBleakScanner)


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("times", "second_connection_drops"), [(1, False), (-1, True)])
async def test_drop_after_writes_loses_the_link(
    air: Air, times: int, second_connection_drops: bool
) -> None:
    air.faults.drop_link_after_writes = 1
    air.faults.drop_link_times = times
    dropped = Disconnects()
    notes = Notifications()
    client = BleakClient(ECHO, dropped, backend=SimBleakClient)
    await client.connect()
    await client.start_notify(TX, notes)
    await client.write_gatt_char(RX, b"one", response=False)
    assert await notes.next() == b"eno"

    await client.write_gatt_char(RX, b"two", response=False)  # lost in the air: no error here
    await dropped.wait()

    assert not client.is_connected
    with pytest.raises(BleakError):
        await client.read_gatt_char(VALUE)
    assert air.echo.written == [b"one"]
    assert air.echo.disconnects == 1

    again = BleakClient(ECHO, dropped, backend=SimBleakClient)
    await again.connect()
    await again.write_gatt_char(RX, b"three", response=True)
    if second_connection_drops:
        with pytest.raises(BleakError, match="disconnected"):
            await again.write_gatt_char(RX, b"four", response=True)  # the pending write fails
        assert dropped.count == 2
        assert air.faults.links_dropped == 2
    else:
        await again.write_gatt_char(RX, b"four", response=True)
        assert again.is_connected
        assert dropped.count == 1
        await again.disconnect()
        assert dropped.count == 1  # a requested disconnect is not reported as a loss
        assert air.faults.links_dropped == 1
        assert air.faults.drop_link_times == 0
    assert air.echo.written == [b"one", b"three"] + ([] if second_connection_drops else [b"four"])
    assert air.radio.stats_of(ECHO).links_dropped == air.faults.links_dropped


async def test_refused_connections_then_one_that_holds(air: Air) -> None:
    air.faults.refuse_connections = 2
    for _ in range(2):
        with pytest.raises(BleakError, match="connection refused"):
            await BleakClient(ECHO, backend=SimBleakClient).connect()
    async with BleakClient(ECHO, backend=SimBleakClient) as client:
        assert client.is_connected
    assert air.faults.connections_refused == 2
    assert air.echo.connects == 1


async def test_server_survives_a_peripheral_crash(
    air: Air, caplog: pytest.LogCaptureFixture
) -> None:
    async with BleakClient(ECHO, backend=SimBleakClient) as client:
        with pytest.raises(BleakError, match="RuntimeError: the toy exploded"):
            await client.read_gatt_char(BOOM)
        assert await client.read_gatt_char(VALUE) == b"hello"
    assert "the toy exploded" in caplog.text
    async with BleakClient(ECHO, backend=SimBleakClient) as client:
        assert client.is_connected


async def test_server_going_away_is_an_unsolicited_disconnect(air: Air) -> None:
    dropped = Disconnects()
    client = BleakClient(ECHO, dropped, backend=SimBleakClient)
    await client.connect()
    await air.server.close()
    await dropped.wait()
    assert not client.is_connected
    assert air.echo.disconnects == 1
    with pytest.raises(BleakError):
        await client.read_gatt_char(VALUE)


async def test_malformed_requests_get_an_error_reply(air: Air) -> None:
    host, port = air.server.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"not json\n" + b'{"id": 7, "op": "read", "char": "' + VALUE.encode() + b'"}\n'
        )
        replies = [json.loads(await reader.readline()) for _ in range(2)]
    finally:
        writer.close()
        await writer.wait_closed()
    assert replies[0]["ok"] is False
    assert replies[0]["error"] == "bad-request"
    assert replies[1] == {
        "id": 7,
        "ok": False,
        "error": "not-connected",
        "message": "no link: connect first",
    }


async def test_establish_connection_passes_the_backend_through(air: Air) -> None:
    device = await find(ECHO)
    client = await establish_connection(
        BleakClient, device, "echo", backend=SimBleakClient, max_attempts=1
    )
    try:
        assert client.is_connected
        assert await client.read_gatt_char(VALUE) == b"hello"
    finally:
        await client.disconnect()
    assert air.echo.disconnects == 1


# --- fault specs (blelock-sim --fault) -----------------------------------------------------------


def test_parse_fault_combines_parts_on_a_base() -> None:
    base = LinkFaults(slow_factor=2.0)
    faults = parse_fault("drop-after=2, drop-times=-1,refuse=3,out-of-range", base)
    assert faults == LinkFaults(
        drop_link_after_writes=2,
        drop_link_times=-1,
        refuse_connections=3,
        slow_factor=2.0,
        out_of_range=True,
    )
    assert base == LinkFaults(slow_factor=2.0)  # untouched
    assert parse_fault("slow=4").slow_factor == 4.0


@pytest.mark.parametrize(
    ("spec", "bad_part"),
    [
        ("drop-after=-1", "drop-after=-1"),
        ("refuse=x", "refuse=x"),
        ("slow=0", "slow=0"),
        ("slow=2,flaky", "flaky"),
        ("out-of-range=1", "out-of-range=1"),
    ],
)
def test_parse_fault_names_the_bad_part(spec: str, bad_part: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad_part))):
        parse_fault(spec)


# --- the link model at MTU 247: fragments, airtime, buffers -----------------------------------

REAL = LatencyModel(connection_interval_s=0.015, write_round_trip_s=0.015)
DLE = dataclasses.replace(REAL, data_length=251)


def test_pdu_airtime_is_the_1m_phy_frame_and_its_ack() -> None:
    # (10 + 251) bytes x 8 µs + 150 µs + 10 x 8 µs + 150 µs
    assert REAL.pdu_airtime_s(251) == pytest.approx(2.468e-3)
    assert REAL.pdu_airtime_s(27) == pytest.approx(0.676e-3)
    assert dataclasses.replace(REAL, phy_byte_s=4e-6).pdu_airtime_s(251) < 1.4e-3  # 2M PHY


def test_a_write_is_fragmented_into_data_length_pdus() -> None:
    assert REAL.write_pdus(20) == [27]  # 20 + ATT 3 + L2CAP 4: one default PDU
    assert DLE.write_pdus(244) == [251]  # MTU 247 with data length 251: one PDU
    assert REAL.write_pdus(244) == [27] * 9 + [8]  # MTU 247 without it: ten


def test_buffers_bind_small_pdus_and_airtime_binds_big_ones() -> None:
    # 20-byte writes: airtime would allow 22 per 15 ms event, the 6 buffers allow 6.
    assert offer(WritePacer(), [0.0] * 7, REAL) == [0.0] * 6 + [0.015]
    # 244-byte writes in 251-octet PDUs: 6 x 2.468 ms fit in 15 ms, a 7th does not.
    assert [WritePacer().admit(0.0, DLE, 244)] == [0.0]
    pacer = WritePacer()
    assert [pacer.admit(0.0, DLE, 244) for _ in range(7)] == [0.0] * 6 + [0.015]
    # Airtime binds before the buffers when the interval is short: 7.5 ms carries 3.
    short = dataclasses.replace(DLE, connection_interval_s=0.0075)
    pacer = WritePacer()
    assert [pacer.admit(0.0, short, 244) for _ in range(4)] == [0.0] * 3 + [0.0075]
    # Without the data length update a 244-byte write needs 10 PDUs: it spills over.
    pacer = WritePacer()
    assert [pacer.admit(0.0, REAL, 244) for _ in range(2)] == [0.015, 0.045]


def test_the_ceilings_follow_from_the_model() -> None:
    assert WritePacer.ceiling(REAL, 20) == pytest.approx(6 * 20 / 0.015)
    assert WritePacer.ceiling(DLE, 244) == pytest.approx(6 * 244 / 0.015)
    for bad in ({"att_mtu": 22}, {"data_length": 252}):
        with pytest.raises(ValueError, match=r"att_mtu|data_length"):
            LatencyModel(**bad)  # type: ignore[arg-type]
