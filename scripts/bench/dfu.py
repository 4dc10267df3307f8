"""Benchmark: a 256 KiB firmware image by Secure DFU over the simulated radio, at ATT MTU 23
(LL data length 27) and at MTU 247 with data length 251, for PRN 0, 4, 12.

Each run puts a fresh simulated bootloader on an in-process radio (127.0.0.1, reached through
bleak's sim backend exactly as the CLI reaches it), finds it by scanning (not timed), then times
``blelock.dfu.update_firmware`` from connect to disconnect. Printed per PRN:

* achieved bytes/s: image bytes / wall time;
* the link's raw ceiling under the model: back-to-back writes of one packet's payload, as many
  per connection event as the central's buffers and the PDUs' airtime allow
  (:meth:`simulators.radio.WritePacer.ceiling`), nothing subtracted;
* the model's own minimum for this transfer: the exact action sequence the protocol performs
  (the real :class:`DfuSession` against the real :class:`SimDfuTarget`) replayed on a virtual
  clock that charges only what the model charges (connect and MTU exchange, one interval per
  ATT request, the radio's write pacing, receipt round trips, the bootloader's flash erase on
  Create and write on Execute), with no software cost at all. Target: achieved / minimum ≥ 0.95
  (the rest is our overhead: bleak, the socket, JSON, the driver); minimum / ceiling is what
  the protocol's round trips and the flash cost, with where that time goes.

The package is built in memory with a throwaway P-256 key the bootloader is told to trust;
nothing touches the store (the data and key dirs point at a temp dir all the same).

    .venv/bin/python scripts/bench/dfu.py [--kib 256] [--prn 0 4 12] [--mtu 23 247] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import hashlib
import os
import statistics
import tempfile
import time
from dataclasses import dataclass

from bleak import BleakScanner
from cryptography.hazmat.primitives.asymmetric import ec

from blelock.config import load_settings
from blelock.dfu import update_firmware
from blelock.model import MacAddress
from blelock.protocol import dfu, dfu_init, dfu_package
from blelock.protocol.dfu_transfer import (
    AwaitReceipt,
    DfuSession,
    WriteControl,
    WritePacket,
    packet_size_for_mtu,
)
from blelock.transport.ble import open_link
from simulators.bleak_backend import SimBleakScanner
from simulators.dfu_target import SimDfuTarget
from simulators.radio import LatencyModel, Radio, WritePacer
from simulators.radio_server import RadioServer

BASE = LatencyModel(
    advertising_interval_s=0.020,
    connect_s=0.100,
    connection_interval_s=0.015,
    write_round_trip_s=0.015,  # an ATT round trip is one interval, for requests and commands
    packets_per_interval=6,
)
MODELS = {
    23: dataclasses.replace(BASE, att_mtu=23, data_length=27),
    247: dataclasses.replace(BASE, att_mtu=247, data_length=251),  # what nrfutil asks for
}
TARGET_RATIO = 0.95
LOCK = MacAddress("C7:E6:B0:C6:75:38")
HARDWARE = "4I"
OLD_VERSION = dfu.version_number(3, 14)
NEW_VERSION = dfu.version_number(3, 15)  # above the bootloader's, or it refuses a downgrade


def build_package(size: int, key: ec.EllipticCurvePrivateKey) -> dfu_package.DfuPackage:
    # Pseudo-random, so nothing about the bytes can make a transfer look faster than it is.
    image = hashlib.shake_256(b"blelock DFU benchmark image").digest(size)
    command = dfu_init.InitCommand.for_image(
        image, hw_version=dfu.hardware_version(HARDWARE), fw_version=NEW_VERSION, sd_req=[0x0100]
    )
    init = dfu_init.encode_init_packet(command, key)
    # Through the zip and back: the benchmark sends what a real package file would hold.
    return dfu_package.read_package(dfu_package.encode_package(init, image, stem="bench"))


def new_target(trusted: ec.EllipticCurvePublicKey) -> SimDfuTarget:
    return SimDfuTarget(LOCK, trusted, hardware=HARDWARE, firmware_version=OLD_VERSION)


# --- the model's minimum: the protocol's own actions on a virtual clock ---------------------


@dataclass
class Minimum:
    connect: float = 0.0
    requests: int = 0
    """ATT requests: the CCCD write and every control-point write (one interval each)."""
    pacing: float = 0.0
    """Time packets wait for room in an interval: the data rate itself."""
    receipts: int = 0
    receipt_waits: float = 0.0
    """Time between a PRN's last packet going and its receipt arriving."""
    flash: float = 0.0
    """Time a control-point answer waits for the bootloader's flash erase (Create) or write
    (Execute) beyond the ATT round trip."""
    packets: int = 0
    interval: float = 0.0

    @property
    def request_time(self) -> float:
        return self.requests * self.interval

    @property
    def total(self) -> float:
        return self.connect + self.request_time + self.pacing + self.receipt_waits + self.flash


def modelled_minimum(
    package: dfu_package.DfuPackage, prn: int, target: SimDfuTarget, model: LatencyModel
) -> Minimum:
    """Replay the transfer with no software cost: the clock moves only where the radio's model
    makes a real link wait (see simulators.radio_server's module docstring for what it charges)."""
    interval = model.connection_interval_s
    mtu = min(model.att_mtu, target.max_att_mtu)
    exchange = interval if mtu > 23 else 0.0  # the MTU exchange
    spent = Minimum(connect=model.connect_s + exchange, requests=1, interval=interval)  # + CCCD
    target.on_connect()
    target.on_subscribe(dfu.CONTROL_POINT_UUID, True)
    clock = spent.connect + interval
    pacer = WritePacer()
    notes: collections.deque[tuple[float, float, bytes]] = collections.deque()
    session = DfuSession(package, packet_size=packet_size_for_mtu(mtu), prn=prn)
    while (action := session.next_action()) is not None:
        if isinstance(action, WriteControl):
            clock += interval
            spent.requests += 1
            answers = target.on_write(action.characteristic, action.data)
            busy = target.take_busy_s()
            # A write request's notification follows its response, and the flash work.
            notes.extend((clock + busy, busy, value) for _, value in answers)
        elif isinstance(action, WritePacket):
            went = pacer.admit(clock, model, len(action.data))
            spent.pacing += went - clock
            clock = went
            spent.packets += 1
            answers = target.on_write(action.characteristic, action.data)
            due = clock + model.write_round_trip_s + target.take_busy_s()
            notes.extend((due, 0.0, value) for _, value in answers)
        if action.expects_notification:
            due, busy, value = notes.popleft()
            if isinstance(action, AwaitReceipt):
                spent.receipts += 1
                spent.receipt_waits += max(0.0, due - clock)
            else:
                spent.flash += max(0.0, due - clock)
            clock = max(clock, due)
            session.receive(value)
    if not session.finished or abs(clock - spent.total) > 1e-6:
        raise AssertionError("the replay did not finish, or its accounting does not add up")
    return spent


# --- the real thing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    prn: int
    seconds: float
    connections: int


async def measure(
    package: dfu_package.DfuPackage,
    prn: int,
    trusted: ec.EllipticCurvePublicKey,
    model: LatencyModel,
) -> Run:
    radio = Radio(model)
    target = new_target(trusted)
    radio.add(target)
    async with await RadioServer.start(radio) as server:
        os.environ["BLELOCK_SIM_RADIO"] = server.address
        device = await BleakScanner.find_device_by_address(
            target.address, timeout=5, backend=SimBleakScanner
        )
        if device is None:
            raise RuntimeError("the simulated bootloader was not heard")
        settings = load_settings(
            environ=os.environ
            | {
                "BLELOCK_BLE_CLIENT_BACKEND": "simulators.bleak_backend:SimBleakClient",
                "BLELOCK_BLE_SCANNER_BACKEND": "simulators.bleak_backend:SimBleakScanner",
            },
            read_file=False,
        )
        started = time.perf_counter()
        outcome = await update_firmware(
            LOCK, lambda: open_link(device, settings, name=target.local_name), package, prn=prn
        )
        seconds = time.perf_counter() - started
    if target.firmware_version != NEW_VERSION or outcome.size != package.size:
        raise RuntimeError(f"PRN {prn}: the transfer did not install the image")
    return Run(prn, seconds, outcome.connections)


async def bench(kib: int, prns: list[int], mtus: list[int], runs: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())  # throwaway: signs this run's package only
    trusted = key.public_key()
    package = build_package(kib * 1024, key)
    size = package.size
    objects = -(-size // dfu.DATA_OBJECT_MAX_SIZE)
    flash = new_target(trusted).flash
    print(
        f"model: connection interval {BASE.connection_interval_s * 1000:g} ms; the central "
        f"sends at most {BASE.packets_per_interval} LL PDUs per event and only as many as fit "
        f"by airtime (1M PHY, PDU + T_IFS + empty ack + T_IFS: "
        f"{BASE.pdu_airtime_s(27) * 1e3:.3f} ms at 27 octets, "
        f"{BASE.pdu_airtime_s(251) * 1e3:.3f} ms at 251); ATT round trip (request -> "
        f"response, last packet -> receipt) = 1 interval; connect {BASE.connect_s * 1000:g} ms "
        f"(+1 interval for the MTU exchange); flash erase {flash.erase_page_s * 1e3:g} ms per "
        f"4 KiB page on Create, write {flash.write_word_s * 1e6:g} us per word on Execute"
    )
    print(
        f"image: {size:,} bytes in {objects} data objects of {dfu.DATA_OBJECT_MAX_SIZE} "
        f"(+ {len(package.init_packet)}-byte init packet); timed from connect to disconnect; "
        f"{runs} run(s) per setting\n"
    )
    header = (
        f"{'MTU':>3} {'DL':>3} {'PRN':>3}  {'B/s min/med/max':>22}  {'ceiling':>7}  "
        f"{'model min':>9}  {'/min':>5}  {'/ceil':>5}  {'min/ceil':>8}"
    )
    print(header)
    breakdowns: list[tuple[int, int, Minimum, float]] = []
    for mtu in mtus:
        model = MODELS[mtu]
        packet = packet_size_for_mtu(mtu)
        ceiling = WritePacer.ceiling(model, packet)
        for prn in prns:
            minimum = modelled_minimum(package, prn, new_target(trusted), model)
            rates = []
            for _ in range(runs):
                run = await measure(package, prn, trusted, model)
                if run.connections != 1:
                    raise RuntimeError(f"MTU {mtu} PRN {prn}: {run.connections} connections")
                rates.append(size / run.seconds)
            floor = size / minimum.total
            low, mid, high = min(rates), statistics.median(rates), max(rates)
            print(
                f"{mtu:>3} {model.data_length:>3} {prn:>3}  "
                f"{low:>6,.0f}/{mid:>6,.0f}/{high:>6,.0f}  {ceiling:>7,.0f}  {floor:>9,.0f}  "
                f"{mid / floor:>5.3f}  {mid / ceiling:>5.3f}  {floor / ceiling:>8.3f}"
                + ("" if low / floor >= TARGET_RATIO else "  (below target)")
            )
            breakdowns.append((mtu, prn, minimum, size / ceiling))
    print(
        f"\ntarget: achieved (median) / model minimum >= {TARGET_RATIO:.2f}. The model's minimum, "
        "by what the link waits for:"
    )
    for mtu, prn, minimum, ideal in breakdowns:
        print(
            f"MTU {mtu:>3} PRN {prn:>2}: {minimum.total:6.2f} s = connect {minimum.connect:.2f} + "
            f"{minimum.requests} ATT round trips {minimum.request_time:.2f} + packet pacing "
            f"{minimum.pacing:.2f} + {minimum.receipts} receipt waits "
            f"{minimum.receipt_waits:.2f} + flash {minimum.flash:.2f} ({minimum.packets} "
            f"packets; at the ceiling the image alone takes {ideal:.2f} s)"
        )
    print(
        "ATT round trips: the CCCD write, SetPRN, two Selects, then Create, CalcChecksum and "
        "Execute per object (init packet included; no CalcChecksum where a receipt fell on the "
        "object's end). Packet pacing: packets waiting for room in a connection event, i.e. "
        "the data rate itself. Receipt waits: after every PRN packets the sender idles one "
        "round trip. Flash: Create answers after the page erase, Execute after the write."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kib", type=int, default=256, help="image size in KiB (default 256)")
    parser.add_argument("--prn", type=int, nargs="+", default=[0, 4, 12], help="PRN settings")
    parser.add_argument("--mtu", type=int, nargs="+", default=[23, 247], choices=sorted(MODELS))
    parser.add_argument("--runs", type=int, default=1, help="runs per setting (min/median/max)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ |= {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch}
        asyncio.run(bench(args.kib, args.prn, args.mtu, args.runs))


if __name__ == "__main__":
    main()
