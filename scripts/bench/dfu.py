"""Benchmark: a 256 KiB firmware image by Secure DFU over the simulated radio, for PRN 0, 4, 12.

Each run puts a fresh simulated bootloader on an in-process radio (127.0.0.1, reached through
bleak's sim backend exactly as the CLI reaches it), finds it by scanning (not timed), then times
``blelock.dfu.update_firmware`` from connect to disconnect. Printed per PRN:

* achieved bytes/s: image bytes / wall time;
* the link's ceiling under the model: packets per interval x packet payload / interval, the raw
  data rate with nothing subtracted; achieved / ceiling (issue 5's target: ≥ 0.90);
* the model's own minimum for this transfer: the exact action sequence the protocol performs
  (the real :class:`DfuSession` against the real :class:`SimDfuTarget`) replayed on a virtual
  clock that charges only what the model charges (connect, one interval per ATT request, the
  radio's write pacing, receipt round trips), with no software cost at all. achieved / minimum
  is our overhead (bleak, the socket, JSON, the driver); minimum / ceiling is what the
  protocol's unavoidable round trips cost, with where that time goes.

The package is built in memory with a throwaway P-256 key the bootloader is told to trust;
nothing touches the store (the data and key dirs point at a temp dir all the same).

    .venv/bin/python scripts/bench/dfu.py [--kib 256] [--prn 0 4 12]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass

from bleak import BleakScanner
from cryptography.hazmat.primitives.asymmetric import ec

from blelock.config import load_settings
from blelock.dfu import update_firmware
from blelock.model import MacAddress
from blelock.protocol import dfu, dfu_package
from blelock.protocol.dfu_transfer import (
    AwaitReceipt,
    DfuSession,
    WriteControl,
    WritePacket,
    packet_size_for_mtu,
)
from blelock.transport.ble import open_link
from simulators.bleak_backend import ATT_MTU, SimBleakScanner
from simulators.dfu_target import SimDfuTarget
from simulators.radio import LatencyModel, Radio, RadioServer, WritePacer

MODEL = LatencyModel(
    advertising_interval_s=0.020,
    connect_s=0.100,
    connection_interval_s=0.015,
    write_round_trip_s=0.015,  # an ATT round trip is one interval, for requests and commands
    packets_per_interval=6,
)
PACKET = packet_size_for_mtu(ATT_MTU)
"""20 bytes: the simulated locks keep the default 23-byte ATT MTU (3 bytes of ATT header)."""
CEILING = MODEL.packets_per_interval * PACKET / MODEL.connection_interval_s
TARGET_RATIO = 0.90
LOCK = MacAddress("C7:E6:B0:C6:75:38")
HARDWARE = "4I"
OLD_VERSION = dfu.version_number(3, 14)
NEW_VERSION = dfu.version_number(3, 15)  # above the bootloader's, or it refuses a downgrade


def build_package(size: int, key: ec.EllipticCurvePrivateKey) -> dfu_package.DfuPackage:
    # Pseudo-random, so nothing about the bytes can make a transfer look faster than it is.
    image = hashlib.shake_256(b"blelock DFU benchmark image").digest(size)
    command = dfu_package.InitCommand.for_image(
        image, hw_version=dfu.hardware_version(HARDWARE), fw_version=NEW_VERSION
    )
    init = dfu_package.encode_init_packet(command, key)
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
    packets: int = 0

    @property
    def request_time(self) -> float:
        return self.requests * MODEL.connection_interval_s

    @property
    def total(self) -> float:
        return self.connect + self.request_time + self.pacing + self.receipt_waits


def modelled_minimum(package: dfu_package.DfuPackage, prn: int, target: SimDfuTarget) -> Minimum:
    """Replay the transfer with no software cost: the clock moves only where the radio's model
    makes a real link wait (see simulators.radio's module docstring for what it charges)."""
    interval = MODEL.connection_interval_s
    spent = Minimum(connect=MODEL.connect_s, requests=1)  # connect; the control point's CCCD
    target.on_connect()
    target.on_subscribe(dfu.CONTROL_POINT_UUID, True)
    clock = spent.connect + interval
    pacer = WritePacer()
    notes: collections.deque[tuple[float, bytes]] = collections.deque()
    session = DfuSession(package, packet_size=PACKET, prn=prn)
    while (action := session.next_action()) is not None:
        if isinstance(action, WriteControl):
            clock += interval
            spent.requests += 1
            # A write request's notification follows its response: no extra wait.
            notes.extend(
                (clock, value) for _, value in target.on_write(action.characteristic, action.data)
            )
        elif isinstance(action, WritePacket):
            went = pacer.admit(clock, MODEL)
            spent.pacing += went - clock
            clock = went
            spent.packets += 1
            answers = target.on_write(action.characteristic, action.data)
            notes.extend((clock + MODEL.write_round_trip_s, value) for _, value in answers)
        if action.expects_notification:
            due, value = notes.popleft()
            if isinstance(action, AwaitReceipt):
                spent.receipts += 1
                spent.receipt_waits += max(0.0, due - clock)
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
    package: dfu_package.DfuPackage, prn: int, trusted: ec.EllipticCurvePublicKey
) -> Run:
    radio = Radio(MODEL)
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


async def bench(kib: int, prns: list[int]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())  # throwaway: signs this run's package only
    trusted = key.public_key()
    package = build_package(kib * 1024, key)
    size = package.size
    objects = -(-size // dfu.DATA_OBJECT_MAX_SIZE)
    interval_ms = MODEL.connection_interval_s * 1000
    print(
        f"model: ATT MTU {ATT_MTU} -> {PACKET}-byte packets; connection interval "
        f"{interval_ms:g} ms; {MODEL.packets_per_interval} write commands per interval; ATT "
        f"round trip (request -> response, last packet -> receipt) = 1 interval; connect "
        f"{MODEL.connect_s * 1000:g} ms"
    )
    print(
        f"ceiling: {MODEL.packets_per_interval} x {PACKET} B / {interval_ms:g} ms = "
        f"{CEILING:,.0f} B/s"
    )
    print(
        f"image: {size:,} bytes in {objects} data objects of {dfu.DATA_OBJECT_MAX_SIZE} "
        f"(+ {len(package.init_packet)}-byte init packet); timed from connect to disconnect\n"
    )
    header = (
        f"{'PRN':>3}  {'wall s':>7}  {'B/s':>6}  {'/ceil':>5}  {'min s':>6}  {'min B/s':>7}  "
        f"{'min/ceil':>8}  {'/min':>5}"
    )
    print(header)
    breakdowns: list[tuple[int, Minimum]] = []
    for prn in prns:
        minimum = modelled_minimum(package, prn, new_target(trusted))
        run = await measure(package, prn, trusted)
        achieved = size / run.seconds
        floor = size / minimum.total
        print(
            f"{prn:>3}  {run.seconds:>7.2f}  {achieved:>6,.0f}  {achieved / CEILING:>5.3f}  "
            f"{minimum.total:>6.2f}  {floor:>7,.0f}  {floor / CEILING:>8.3f}  "
            f"{minimum.total / run.seconds:>5.3f}"
            + ("" if run.connections == 1 else f"  ({run.connections} connections)")
        )
        breakdowns.append((prn, minimum))
    ideal = size / CEILING
    print(
        f"\ntarget: achieved / ceiling >= {TARGET_RATIO:.2f}. At the ceiling the image takes "
        f"{ideal:.2f} s. The model's minimum, by what the link waits for:"
    )
    for prn, minimum in breakdowns:
        print(
            f"PRN {prn:>2}: {minimum.total:6.2f} s = connect {minimum.connect:.2f} + "
            f"{minimum.requests} ATT round trips {minimum.request_time:.2f} + full intervals "
            f"{minimum.pacing:.2f} + {minimum.receipts} receipt waits "
            f"{minimum.receipt_waits:.2f} ({minimum.packets} packets; the protocol adds "
            f"{minimum.total - ideal:.2f} s to the ceiling's time)"
        )
    print(
        "ATT round trips: the CCCD write, SetPRN, two Selects, then Create, CalcChecksum and "
        "Execute per object (init packet included; no CalcChecksum where a receipt fell on the "
        "object's end). Full intervals: packets waiting for room, i.e. the data rate itself. "
        "Receipt waits: after every PRN packets the sender idles one round trip; when that is "
        "no longer than the interval the packets would have waited for anyway (PRN a multiple "
        "of the packets per interval) it costs nothing, otherwise it is lost air time."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kib", type=int, default=256, help="image size in KiB (default 256)")
    parser.add_argument("--prn", type=int, nargs="+", default=[0, 4, 12], help="PRN settings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ |= {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch}
        asyncio.run(bench(args.kib, args.prn))


if __name__ == "__main__":
    main()
