"""The simulated Nordic bootloader: driven through its Peripheral methods (and the radio, for a
dropped link) by the companion's planner, it boots good packages and refuses bad ones with the
SDK's codes, keeping the old firmware."""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from blelock.errors import LocalProtocolError
from blelock.protocol import dfu, dfu_init, dfu_package, dfu_transfer
from simulators.dfu_target import (
    ATT_CCCD_IMPROPERLY_CONFIGURED,
    ATT_INVALID_ATTRIBUTE_LENGTH,
    NO_FLASH_TIME,
    DfuFaults,
    SimDfuTarget,
)
from simulators.faults import LinkFaults
from simulators.radio import GattRefused, LatencyModel, LinkDropped, Radio

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "firmware_images"
TRUSTED = dfu_init.load_public_key((IMAGES / "test_signing_key.pub.pem").read_bytes())
PACKAGE_4I = dfu_package.read_package(IMAGES / "noke-4i-3.15.zip")
PACKAGE_3P = dfu_package.read_package(IMAGES / "noke-3p-2.11.zip")
LOCK = "AA:BB:CC:DD:EE:01"
V3_14, V3_15 = dfu.version_number(3, 14), dfu.version_number(3, 15)
OTHER_KEY = ec.derive_private_key(0x5EC2E7, ec.SECP256R1())


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_firmware_images", ROOT / "scripts" / "make_firmware_images.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SCRIPT = load_script()
TEST_KEY = SCRIPT.derive_test_signing_key()


def target(**options: object) -> SimDfuTarget:
    bootloader = SimDfuTarget(LOCK, TRUSTED, **options)  # type: ignore[arg-type]
    bootloader.on_connect()
    bootloader.on_subscribe(dfu.CONTROL_POINT_UUID, True)
    return bootloader


def repackage(
    image: bytes,
    *,
    key: ec.EllipticCurvePrivateKey | None = TEST_KEY,
    hardware: str = "4I",
    version: str = "3.15",
    fw_size: int | None = None,
) -> dfu_package.DfuPackage:
    """A package with chosen faults; built without read_package's checks where they would stop
    it (a truncated image), as a careless or hostile tool might."""
    full = image if fw_size is None else image + bytes(fw_size - len(image))
    command = dfu_init.InitCommand.for_image(
        full,
        hw_version=dfu.hardware_version(hardware),
        fw_version=dfu.parse_version_text(version),
        sd_req=[0x0100],
    )
    dat = dfu_init.encode_init_packet(command, key)
    return package_of(dat, image)


def package_of(dat: bytes, image: bytes) -> dfu_package.DfuPackage:
    """An application package without read_package's checks."""
    init = dfu_init.parse_init_packet(dat)
    entry = dfu_package.FirmwareImage("application", "app.bin", "app.dat", dat, image, init)
    return dfu_package.DfuPackage((entry,))


def run(bootloader: SimDfuTarget, session: dfu_transfer.DfuSession) -> list[dfu_transfer.Event]:
    """The async driver's loop, synchronously, through the Peripheral methods."""
    events: list[dfu_transfer.Event] = []
    pending = collections.deque[bytes]()
    while (action := session.next_action()) is not None:
        if action.characteristic is not None:
            for char, value in bootloader.on_write(action.characteristic, action.data):
                assert char == dfu.CONTROL_POINT_UUID
                pending.append(value)
        if action.expects_notification:
            events.extend(session.receive(pending.popleft()))
    assert not pending
    return events


def control(bootloader: SimDfuTarget, request: bytes) -> dfu.Response:
    ((char, value),) = bootloader.on_write(dfu.CONTROL_POINT_UUID, request)
    assert char == dfu.CONTROL_POINT_UUID
    return dfu.decode_response(value)


def naive_upload(bootloader: SimDfuTarget, init_packet: bytes, image: bytes) -> dfu.Response:
    """A client that checks nothing: every object created, streamed and executed blindly.
    The last response it gets (the first refusal, or the final Execute's answer)."""
    objects = [(dfu.ObjectType.COMMAND, init_packet)] + [
        (dfu.ObjectType.DATA, image[i : i + 4096]) for i in range(0, len(image), 4096)
    ]
    reply: dfu.Response = dfu.Success(dfu.Opcode.EXECUTE)
    for kind, chunk in objects:
        reply = control(bootloader, dfu.encode_create(kind, len(chunk)))
        if isinstance(reply, dfu.ErrorResponse):
            return reply
        for i in range(0, len(chunk), 244):
            assert bootloader.on_write(dfu.DATA_PACKET_UUID, chunk[i : i + 244]) == []
        reply = control(bootloader, dfu.encode_execute())
        if isinstance(reply, dfu.ErrorResponse):
            return reply
    return reply


# --- the bootloader as a peripheral -----------------------------------------------------------


def test_it_advertises_as_the_nokes_bootloader_next_to_the_lock() -> None:
    bootloader = SimDfuTarget(LOCK, TRUSTED)
    assert bootloader.address == "AA:BB:CC:DD:EE:02"
    advert = bootloader.advertisement()
    assert advert is not None and advert.local_name == "NOKE_FW"
    assert dfu.dfu_service_kind(advert.service_uuids) == "secure"
    assert SimDfuTarget(LOCK, TRUSTED, hardware="3P").local_name == "N3P_FW"
    ((service,),) = [bootloader.services()]
    properties = {c.uuid: c.properties for c in service.characteristics}
    assert properties == {
        dfu.CONTROL_POINT_UUID: ("write", "notify"),
        dfu.DATA_PACKET_UUID: ("write-without-response", "notify"),
    }


def test_control_point_needs_notifications_first_and_packets_fit_the_mtu() -> None:
    bootloader = SimDfuTarget(LOCK, TRUSTED)
    bootloader.on_connect()
    with pytest.raises(GattRefused) as refused:
        bootloader.on_write(dfu.CONTROL_POINT_UUID, dfu.encode_select(dfu.ObjectType.COMMAND))
    assert refused.value.att_error == ATT_CCCD_IMPROPERLY_CONFIGURED
    with pytest.raises(GattRefused) as refused:
        bootloader.on_write(dfu.DATA_PACKET_UUID, bytes(245))
    assert refused.value.att_error == ATT_INVALID_ATTRIBUTE_LENGTH


def test_requests_out_of_order_or_malformed_are_refused() -> None:
    bootloader = target()
    not_yet = control(bootloader, dfu.encode_create(dfu.ObjectType.DATA, 4096))
    assert not_yet == dfu.ErrorResponse(dfu.Opcode.CREATE, dfu.ResultCode.OPERATION_NOT_PERMITTED)
    too_big = control(bootloader, dfu.encode_create(dfu.ObjectType.COMMAND, 513))
    assert too_big == dfu.ErrorResponse(dfu.Opcode.CREATE, dfu.ResultCode.INSUFFICIENT_RESOURCES)
    short = control(bootloader, bytes([dfu.Opcode.CREATE, 1]))
    assert short == dfu.ErrorResponse(dfu.Opcode.CREATE, dfu.ResultCode.INVALID_PARAMETER)
    odd_type = control(bootloader, bytes([dfu.Opcode.SELECT, 9]))
    assert odd_type == dfu.ErrorResponse(dfu.Opcode.SELECT, dfu.ResultCode.INVALID_OBJECT)
    ((_, ping),) = bootloader.on_write(dfu.CONTROL_POINT_UUID, bytes([0x09, 0x01]))
    assert ping == bytes([0x60, 0x09, dfu.ResultCode.NOT_SUPPORTED])
    assert bootloader.refusals[dfu.ResultCode.OPERATION_NOT_PERMITTED, None] == 1


def test_receipts_come_every_prn_packets_counted_from_create() -> None:
    bootloader = target()
    assert control(bootloader, dfu.encode_set_prn(3)) == dfu.Success(dfu.Opcode.SET_PRN)
    init = PACKAGE_4I.init_packet
    control(bootloader, dfu.encode_create(dfu.ObjectType.COMMAND, len(init)))
    notes = [bootloader.on_write(dfu.DATA_PACKET_UUID, init[i : i + 20]) for i in range(0, 118, 20)]
    assert [len(n) for n in notes] == [0, 0, 1, 0, 0, 1]
    receipt = dfu.decode_response(notes[2][0][1])
    assert receipt == dfu.ChecksumResponse(60, zlib.crc32(init[:60]))


# --- updates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prn", [0, 12])
def test_a_good_package_boots_the_new_version(prn: int) -> None:
    booted: list[int] = []
    bootloader = target(on_boot=booted.append)
    session = dfu_transfer.DfuSession(PACKAGE_4I, packet_size=244, prn=prn)
    events = run(bootloader, session)
    assert events[-1] == dfu_transfer.Finished(PACKAGE_4I.size, V3_15)
    assert (bootloader.firmware_version, bootloader.firmware, booted) == (V3_15, (3, 15), [V3_15])
    assert (bootloader.updates, bootloader.init_packets_accepted) == (1, 1)
    assert bootloader.objects_executed == 16  # 65000 bytes in 4096-byte objects
    assert not bootloader.in_dfu_mode and bootloader.advertisement() is None
    assert not bootloader.refusals
    with pytest.raises(GattRefused):  # it rebooted into the application
        bootloader.on_write(dfu.CONTROL_POINT_UUID, dfu.encode_select(dfu.ObjectType.DATA))


def refused_with(bootloader: SimDfuTarget, package: dfu_package.DfuPackage) -> dfu_transfer.Refused:
    session = dfu_transfer.DfuSession(package, packet_size=244)
    events = run(bootloader, session)
    assert isinstance(events[-1], dfu_transfer.Refused) and session.refusal == events[-1]
    assert not session.finished
    return events[-1]


def assert_old_firmware_kept(bootloader: SimDfuTarget) -> None:
    assert bootloader.firmware_version == V3_14 and bootloader.updates == 0
    assert bootloader.in_dfu_mode  # still there for a retry with a good package
    select = control(bootloader, dfu.encode_select(dfu.ObjectType.DATA))
    assert isinstance(select, dfu.SelectResponse) and select.offset == 0  # nothing kept


def test_a_package_for_other_hardware_is_refused() -> None:
    bootloader = target()
    refusal = refused_with(bootloader, PACKAGE_3P)
    assert (refusal.result, refusal.extended) == (
        dfu.ResultCode.EXTENDED_ERROR,
        dfu.ExtendedError.HW_VERSION_FAILURE,
    )
    assert bootloader.packets_received == 1  # the init packet; not one image byte
    assert_old_firmware_kept(bootloader)


@pytest.mark.parametrize(
    ("key", "result", "extended"),
    [
        (OTHER_KEY, dfu.ResultCode.INVALID_OBJECT, None),
        (None, dfu.ResultCode.EXTENDED_ERROR, dfu.ExtendedError.SIGNATURE_MISSING),
    ],
)
def test_a_package_not_signed_by_the_trusted_key_is_refused(
    key: ec.EllipticCurvePrivateKey | None,
    result: dfu.ResultCode,
    extended: dfu.ExtendedError | None,
) -> None:
    bootloader = target()
    refusal = refused_with(bootloader, repackage(PACKAGE_4I.firmware, key=key))
    assert (refusal.request, refusal.result, refusal.extended) == (
        dfu.Opcode.EXECUTE,
        result,
        extended,
    )
    assert_old_firmware_kept(bootloader)


def test_a_downgrade_and_an_image_too_big_are_refused() -> None:
    bootloader = target(firmware_version=dfu.version_number(3, 16))
    refusal = refused_with(bootloader, PACKAGE_4I)
    assert refusal.extended is dfu.ExtendedError.FW_VERSION_FAILURE
    small = target(bank_size=32 * 1024)
    assert refused_with(small, PACKAGE_4I).extended is dfu.ExtendedError.INSUFFICIENT_SPACE
    assert small.firmware_version == V3_14


def test_a_corrupted_packet_is_caught_by_the_planner_and_resent() -> None:
    bootloader = target(faults=DfuFaults(corrupt_packet=10))
    session = dfu_transfer.DfuSession(PACKAGE_4I, packet_size=244, prn=4)
    events = run(bootloader, session)
    (retry,) = [e for e in events if isinstance(e, dfu_transfer.Retrying)]
    assert (retry.object_type, retry.offset) == (dfu.ObjectType.DATA, 0)
    assert bootloader.faults.packets_corrupted == 1 and session.retries == 1
    assert bootloader.firmware_version == V3_15 and bootloader.updates == 1


def test_a_corrupted_packet_nobody_checked_fails_the_final_hash() -> None:
    bootloader = target(faults=DfuFaults(corrupt_packet=10))
    final = naive_upload(bootloader, PACKAGE_4I.init_packet, PACKAGE_4I.firmware)
    assert final == dfu.ErrorResponse(
        dfu.Opcode.EXECUTE, dfu.ResultCode.EXTENDED_ERROR, dfu.ExtendedError.VERIFICATION_FAILED
    )
    assert bootloader.objects_executed == 16  # every object went in; the hash caught it
    assert_old_firmware_kept(bootloader)


def test_a_truncated_image_is_refused() -> None:
    image = PACKAGE_4I.firmware[:60_000]  # the init packet still says 65000 bytes
    package = repackage(image, fw_size=65_000)
    bootloader = target()
    final = naive_upload(bootloader, package.init_packet, image)
    # The short last object is neither page-aligned nor the image's end.
    assert final == dfu.ErrorResponse(dfu.Opcode.CREATE, dfu.ResultCode.INVALID_PARAMETER)
    assert bootloader.firmware_version == V3_14 and bootloader.updates == 0
    with pytest.raises(LocalProtocolError):  # and the planner will not even try
        dfu_transfer.DfuSession(package)


def test_a_page_aligned_truncation_never_boots() -> None:
    image = PACKAGE_4I.firmware[: 15 * 4096]
    package = repackage(image, fw_size=65_000)
    bootloader = target()
    final = naive_upload(bootloader, package.init_packet, image)
    assert final == dfu.Success(dfu.Opcode.EXECUTE)  # each object fine, the image incomplete
    assert bootloader.firmware_version == V3_14 and bootloader.in_dfu_mode


# --- resume -----------------------------------------------------------------------------------


def test_resume_after_a_dropped_link_continues_from_the_last_verified_offset() -> None:
    radio = Radio()
    bootloader = SimDfuTarget(LOCK, TRUSTED)
    radio.add(bootloader, LinkFaults(drop_link_after_writes=40))
    sessions: list[dfu_transfer.DfuSession] = []
    held_at_drop: list[int] = []
    resumed_from: list[int] = []
    while not bootloader.updates:
        link = radio.connect(bootloader.address)
        link.subscribe(dfu.CONTROL_POINT_UUID, True)
        session = dfu_transfer.DfuSession(PACKAGE_4I, packet_size=244, prn=12)
        sessions.append(session)
        pending = collections.deque[bytes]()
        try:
            while (action := session.next_action()) is not None:
                if action.characteristic is not None:
                    notes = link.write(action.characteristic, action.data, response=action.response)
                    pending.extend(value for _, value in notes)
                if action.expects_notification:
                    [event] = session.receive(pending.popleft())
                    if (
                        isinstance(event, dfu_transfer.Selected)
                        and event.object_type is dfu.ObjectType.DATA
                    ):
                        resumed_from.append(event.resume_offset)
        except LinkDropped:
            held_at_drop.append(len(bootloader.received))
        link.close()
    assert len(sessions) == 2 and radio.faults_of(bootloader.address).links_dropped == 1
    # 40 writes: 7 for the init packet and the data Select, Create + 17 packets + CalcChecksum
    # + Execute for the first object, Create + 12 packets of the second: the drop fell inside
    # it, and the second session picks up exactly the bytes the bootloader holds.
    assert held_at_drop == [4096 + 12 * 244] and resumed_from == [0, held_at_drop[0]]
    assert sessions[1].image_bytes_sent == PACKAGE_4I.size - held_at_drop[0]
    assert sessions[0].image_bytes_sent + sessions[1].image_bytes_sent == PACKAGE_4I.size
    assert bootloader.firmware_version == V3_15 and bootloader.updates == 1


def test_after_a_power_cycle_only_executed_objects_survive() -> None:
    bootloader = target()
    session = dfu_transfer.DfuSession(PACKAGE_4I, packet_size=244)
    while session.image_bytes_sent < 3 * 4096 + 1000:
        action = session.next_action()
        assert action is not None
        if action.characteristic is not None:
            notes = bootloader.on_write(action.characteristic, action.data)
        if action.expects_notification:
            session.receive(notes[0][1])
    assert len(bootloader.received) > 3 * 4096
    bootloader.power_cycle()
    assert len(bootloader.received) == 3 * 4096
    bootloader.on_connect()
    bootloader.on_subscribe(dfu.CONTROL_POINT_UUID, True)
    second = dfu_transfer.DfuSession(PACKAGE_4I, packet_size=244)
    events = run(bootloader, second)
    data_selects = [
        e
        for e in events
        if isinstance(e, dfu_transfer.Selected) and e.object_type is dfu.ObjectType.DATA
    ]
    assert data_selects[0].resume_offset == 3 * 4096
    assert second.image_bytes_sent == PACKAGE_4I.size - 3 * 4096
    assert bootloader.firmware_version == V3_15


def test_an_idle_bootloader_leaves_dfu_mode_keeping_what_it_executed() -> None:
    now = [0.0]
    booted: list[int] = []
    bootloader = SimDfuTarget(LOCK, TRUSTED, clock=lambda: now[0], on_boot=booted.append)
    old_version = bootloader.firmware_version
    bootloader.on_connect()
    bootloader.on_subscribe(dfu.CONTROL_POINT_UUID, True)
    session = dfu_transfer.DfuSession(PACKAGE_4I, packet_size=244)
    while session.image_bytes_sent < 2 * 4096 + 500:
        action = session.next_action()
        assert action is not None
        if action.characteristic is not None:
            notes = bootloader.on_write(action.characteristic, action.data)
        if action.expects_notification:
            session.receive(notes[0][1])
    now[0] = 500.0  # a connected client keeps it in DFU mode, however long it takes
    bootloader.advertisement()
    assert bootloader.in_dfu_mode
    bootloader.on_disconnect()
    now[0] = 559.0
    assert bootloader.advertisement() is not None  # 59 s idle: still waiting for a client
    now[0] = 560.0
    assert bootloader.advertisement() is None  # 60 s idle: back to the old application
    assert not bootloader.in_dfu_mode and bootloader.windows_expired == 1
    assert booted == [old_version] and bootloader.firmware_version == old_version
    assert len(bootloader.received) == 2 * 4096  # the executed objects stayed in flash
    with pytest.raises(GattRefused):
        bootloader.on_write(dfu.CONTROL_POINT_UUID, dfu.encode_select(dfu.ObjectType.DATA))

    now[0] = 1000.0
    bootloader.enter_dfu_mode()  # the next fwupdate command: a fresh window
    now[0] = 1059.0
    bootloader.on_connect()
    assert bootloader.in_dfu_mode
    bootloader.on_subscribe(dfu.CONTROL_POINT_UUID, True)
    second = dfu_transfer.DfuSession(PACKAGE_4I, packet_size=244)
    run(bootloader, second)
    assert second.image_bytes_sent == PACKAGE_4I.size - 2 * 4096
    assert bootloader.firmware_version == V3_15 and booted == [old_version, V3_15]


# --- the committed images ---------------------------------------------------------------------


def test_firmware_images_are_reproducible_and_small() -> None:
    built = SCRIPT.build()
    for name, content in built.items():
        assert (IMAGES / name).read_bytes() == content, f"{name} is stale: rerun the script"
    assert all(len(built[f"{stem}.zip"]) < 100 * 1024 for stem in ("noke-4i-3.15", "noke-3p-2.11"))
    assert built["test_signing_key.pub.pem"] == SCRIPT.public_key_pem(TEST_KEY)
    readme = built["README.md"].decode()
    for stem in ("noke-4i-3.15", "noke-3p-2.11"):
        assert hashlib.sha256(built[f"{stem}.zip"]).hexdigest() in readme


# --- on the radio: MTU, flash time ------------------------------------------------------------


def test_the_bootloader_negotiates_mtu_247_and_refuses_longer_writes() -> None:
    radio = Radio()
    bootloader = SimDfuTarget(LOCK, TRUSTED)
    radio.add(bootloader)
    link = radio.connect(bootloader.address)
    assert link.mtu == dfu.BOOTLOADER_MAX_ATT_MTU == 247
    with pytest.raises(GattRefused) as refused:
        link.write(dfu.DATA_PACKET_UUID, bytes(245), response=False)
    assert refused.value.att_error == 0x0D
    small = Radio(LatencyModel(att_mtu=185))
    other = SimDfuTarget(LOCK, TRUSTED)
    small.add(other)
    assert small.connect(other.address).mtu == 185  # the lower of the two sides


def test_flash_erase_and_write_are_charged_to_create_and_execute() -> None:
    bootloader = target()
    run(bootloader, dfu_transfer.DfuSession(PACKAGE_4I, packet_size=244))
    assert bootloader.take_busy_s() > 0  # the last Execute's write
    assert bootloader.take_busy_s() == 0.0  # taken once
    fresh = target()
    control(fresh, dfu.encode_create(dfu.ObjectType.COMMAND, len(PACKAGE_4I.init_packet)))
    assert fresh.take_busy_s() == 0.0  # the init packet lives in RAM
    flash = fresh.flash
    assert flash.erase(4096) == pytest.approx(0.085) and flash.erase(4097) == pytest.approx(0.17)
    assert flash.write(4096) == pytest.approx(1024 * 41e-6)
    quick = target(flash=NO_FLASH_TIME)
    run(quick, dfu_transfer.DfuSession(PACKAGE_4I, packet_size=244))
    assert quick.take_busy_s() == 0.0 and quick.updates == 1
