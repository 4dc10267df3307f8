"""Nordic Secure DFU, sans-I/O: codecs, Nordic's protobuf init packet (against packages nrfutil
6.1.7 made, tests/fixtures/nrfutil/), the package reader, and the transfer planner against a
small in-memory bootloader written here (independent of the simulator)."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blelock.errors import LocalProtocolError, ProtocolError, RemoteProtocolError, UsageError
from blelock.protocol import dfu, dfu_init, dfu_package, dfu_transfer
from blelock.protocol._dfu_cc import dfu_cc_pb2

ROOT = Path(__file__).resolve().parents[2]
NRFUTIL = ROOT / "tests" / "fixtures" / "nrfutil"
NRFUTIL_KEY = dfu_init.load_public_key((NRFUTIL / "test_key.pub.pem").read_bytes())
KEY = ec.derive_private_key(0xB1E10C, ec.SECP256R1())
OTHER_KEY = ec.derive_private_key(0x0DD, ec.SECP256R1())
HW_4I = dfu.hardware_version("4I")
V3_15 = dfu.version_number(3, 15)


def image_of(size: int, seed: str = "image") -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


def init_for(image: bytes, **changes: Any) -> dfu_init.InitCommand:
    command = dfu_init.InitCommand.for_image(
        image, hw_version=HW_4I, fw_version=V3_15, sd_req=[0x0100]
    )
    return dataclasses.replace(command, **changes)


def package_of(
    image: bytes, key: ec.EllipticCurvePrivateKey | None = KEY
) -> dfu_package.DfuPackage:
    data = dfu_package.encode_package(
        dfu_init.encode_init_packet(init_for(image), key), image, stem="app"
    )
    return dfu_package.read_package(data)


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def manifest(bin_file: object = "app.bin", dat_file: object = "app.dat") -> bytes:
    return json.dumps(
        {"manifest": {"application": {"bin_file": bin_file, "dat_file": dat_file}}}
    ).encode()


# --- control point codec ----------------------------------------------------------------------


@given(st.sampled_from(list(dfu.ObjectType)), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF))
def test_requests_round_trip(kind: dfu.ObjectType, size: int, prn: int) -> None:
    assert dfu.decode_request(dfu.encode_create(kind, size)) == dfu.CreateRequest(kind, size)
    assert dfu.decode_request(dfu.encode_set_prn(prn)) == dfu.SetPrnRequest(prn)
    assert dfu.decode_request(dfu.encode_select(kind)) == dfu.SelectRequest(kind)
    assert dfu.decode_request(dfu.encode_calc_checksum()) == dfu.CalcChecksumRequest()
    assert dfu.decode_request(dfu.encode_execute()) == dfu.ExecuteRequest()


def test_requests_have_the_documented_bytes() -> None:
    # bleak.md §3: opcode, then little-endian payload.
    assert dfu.encode_create(dfu.ObjectType.DATA, 0x1000).hex() == "010200100000"
    assert dfu.encode_set_prn(12).hex() == "020c00"
    assert dfu.encode_select(dfu.ObjectType.COMMAND).hex() == "0601"
    assert dfu.encode_calc_checksum().hex() == "03"
    assert dfu.encode_execute().hex() == "04"


def test_request_encoders_refuse_what_does_not_fit() -> None:
    with pytest.raises(LocalProtocolError):
        dfu.encode_set_prn(0x10000)
    with pytest.raises(LocalProtocolError):
        dfu.encode_create(dfu.ObjectType.DATA, 2**32)


u32 = st.integers(0, 2**32 - 1)
responses = st.one_of(
    st.builds(dfu.SelectResponse, u32, u32, u32),
    st.builds(dfu.ChecksumResponse, u32, u32),
    st.builds(
        dfu.Success,
        st.sampled_from([dfu.Opcode.CREATE, dfu.Opcode.SET_PRN, dfu.Opcode.EXECUTE]),
    ),
    st.builds(
        dfu.ErrorResponse,
        st.sampled_from([op for op in dfu.Opcode if op is not dfu.Opcode.RESPONSE]),
        st.integers(0, 255)
        .map(dfu.ResultCode)
        .filter(lambda r: r not in (dfu.ResultCode.SUCCESS, dfu.ResultCode.EXTENDED_ERROR)),
    ),
    st.builds(
        dfu.ErrorResponse,
        st.sampled_from([dfu.Opcode.EXECUTE, dfu.Opcode.CREATE]),
        st.just(dfu.ResultCode.EXTENDED_ERROR),
        st.integers(0, 255).map(dfu.ExtendedError),
    ),
)


@given(responses)
def test_responses_round_trip(response: dfu.Response) -> None:
    assert dfu.decode_response(response.encode()) == response


def test_responses_have_the_documented_bytes() -> None:
    select = dfu.decode_response(bytes.fromhex("600601001000003412000078563412"))
    assert select == dfu.SelectResponse(max_size=4096, offset=0x1234, crc=0x12345678)
    refused = dfu.decode_response(bytes.fromhex("60040b06"))
    assert refused == dfu.ErrorResponse(
        dfu.Opcode.EXECUTE, dfu.ResultCode.EXTENDED_ERROR, dfu.ExtendedError.HW_VERSION_FAILURE
    )
    assert isinstance(refused, dfu.ErrorResponse)
    assert refused.message == "the package is for other hardware"


def test_unknown_codes_stay_readable() -> None:
    assert dfu.ResultCode(0x42).name == "UNKNOWN_0x42"
    assert dfu.ExtendedError(0x99).value == 0x99
    assert "0x42" in dfu.explain(dfu.ResultCode(0x42))


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("6001", "at least 3"),
        ("610101", "not 0x60"),
        ("600701", "unknown opcode"),
        ("60060100", "SELECT response is 4 bytes"),
        ("60030b", "extended error response is 3 bytes"),
        ("6004010000", "EXECUTE response is 5 bytes"),
    ],
)
def test_malformed_responses_are_refused(raw: str, complaint: str) -> None:
    with pytest.raises(RemoteProtocolError, match=complaint):
        dfu.decode_response(bytes.fromhex(raw))


def test_error_responses_must_be_errors() -> None:
    with pytest.raises(LocalProtocolError):
        dfu.ErrorResponse(dfu.Opcode.EXECUTE, dfu.ResultCode.SUCCESS)
    with pytest.raises(LocalProtocolError):
        dfu.ErrorResponse(dfu.Opcode.EXECUTE, dfu.ResultCode.EXTENDED_ERROR)


@given(st.binary(max_size=40))
def test_decoders_raise_only_protocol_errors(data: bytes) -> None:
    for decode in (dfu.decode_response, dfu.decode_request, dfu_init.parse_init_packet):
        with contextlib.suppress(ProtocolError):
            decode(data)


NRFUTIL_DAT = zipfile.ZipFile(NRFUTIL / "app.zip").read("app.dat")


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, len(NRFUTIL_DAT) - 1), st.integers(0, 255)), max_size=4),
       st.integers(0, len(NRFUTIL_DAT)))  # fmt: skip
def test_init_parser_on_damaged_nrfutil_packets(edits: list[tuple[int, int]], cut: int) -> None:
    """Bytes flipped in, or cut off, a real .dat: an InitPacket or a ProtocolError, never
    another exception."""
    damaged = bytearray(NRFUTIL_DAT)
    for where, value in edits:
        damaged[where] = value
    with contextlib.suppress(ProtocolError):
        dfu_init.parse_init_packet(bytes(damaged[:cut] if cut else damaged))


# --- names, addresses, versions ---------------------------------------------------------------


def test_versions_and_hardware_codes_read_back() -> None:
    assert dfu.hardware_version("4I") == 0x3449
    assert dfu.hardware_name(dfu.hardware_version("3P")) == "3P"
    assert dfu.hardware_name(0xFFFFFFFF) == "0xFFFFFFFF"
    assert dfu.hardware_name(52) == "0x00000034"  # nrfutil's nRF52 number, not the code "4"
    assert dfu.version_text(dfu.parse_version_text("3.15")) == "3.15"
    assert dfu.version_number(3, 9) < dfu.version_number(3, 15) < dfu.version_number(4, 0)
    with pytest.raises(LocalProtocolError):
        dfu.hardware_version("")
    with pytest.raises(LocalProtocolError):
        dfu.parse_version_text("3")


def test_bootloader_address_is_the_next_one_and_wraps() -> None:
    assert dfu.bootloader_address("aa:bb:cc:dd:ee:01") == "AA:BB:CC:DD:EE:02"
    assert dfu.bootloader_address("AA:BB:CC:DD:EE:FF") == "AA:BB:CC:DD:EE:00"
    with pytest.raises(LocalProtocolError):
        dfu.bootloader_address("AA:BB")


def test_dfu_services_are_told_apart() -> None:
    assert dfu.dfu_service_kind([dfu.SECURE_DFU_SERVICE_UUID.upper()]) == "secure"
    assert dfu.dfu_service_kind([dfu.LEGACY_DFU_SERVICE_UUID]) == "legacy"
    assert dfu.dfu_service_kind(["1bc50001-0200-d29e-e511-446c609db825"]) is None


def test_packet_size_follows_the_mtu_up_to_the_bootloaders() -> None:
    assert dfu_transfer.packet_size_for_mtu(23) == 20
    assert dfu_transfer.packet_size_for_mtu(185) == 182
    assert dfu_transfer.packet_size_for_mtu(517) == dfu.MAX_PACKET_SIZE == 244
    with pytest.raises(LocalProtocolError):
        dfu_transfer.packet_size_for_mtu(22)


# --- the init packet: Nordic's protobuf, checked against nrfutil 6.1.7 ----------------------

_DISPLAY_LINE = re.compile(r"^\|- (?P<key>[A-Za-z_ #0-9()-]+?)(?::\s*| (?=0x))(?P<value>.*)$")


def nrfutil_display(path: Path) -> list[dict[str, str]]:
    """What ``nrfutil pkg display`` printed, one dict per image."""
    images: list[dict[str, str]] = []
    for line in path.read_text().splitlines():
        match = _DISPLAY_LINE.match(line.strip())
        if match is None:
            continue
        key, value = match["key"], match["value"].strip()
        if key.startswith("Image #"):
            images.append({})
        elif images:
            images[-1][key] = value
    return images


def as_nrfutil_shows(image: dfu_package.FirmwareImage) -> dict[str, str]:
    """blelock's description of an image, in the text nrfutil pkg display prints."""
    facts = image.describe()

    def number(value: object) -> str:
        assert isinstance(value, int)
        return f"0x{value:08X} ({value})"

    def blob(value: object) -> str:
        return "N/A" if value is None else f"b'{value}'"

    return {
        "Type": str(facts["type"]),
        "Image file": str(facts["image_file"]),
        "Init packet file": str(facts["init_packet_file"]),
        "op_code": str(facts["op_code"]),
        "signature_type": str(facts["signature_type"]),
        "signature (little-endian)": blob(facts["signature"]),
        "fw_version": number(facts["fw_version"]),
        "hw_version": number(facts["hw_version"]),
        "sd_req": ", ".join(facts["sd_req"]),  # type: ignore[arg-type]
        "type": str(facts["init_type"]),
        "sd_size": str(facts["sd_size"]),
        "bl_size": str(facts["bl_size"]),
        "app_size": str(facts["app_size"]),
        "hash_type": str(facts["hash_type"]),
        "hash (little-endian)": blob(facts["hash"]),
        "boot_validation_type": str(facts["boot_validation_type"]),
        "boot_validation_signature (little-endian)": "["
        + ", ".join(blob(item) for item in facts["boot_validation_signature"])  # type: ignore[attr-defined]
        + "]",
        "is_debug": str(facts["is_debug"]),
    }


FT, VT, CRC = dfu_init.FirmwareType, dfu_init.ValidationType, dfu_init.HashType.CRC
FIXTURES = ["app", "app_sha256", "app_ecdsa", "app_debug", "bl", "sd", "sd_bl_app"]


@pytest.mark.parametrize("name", FIXTURES)
def test_nrfutil_packages_read_as_nrfutil_displays_them(name: str) -> None:
    package = dfu_package.read_package(NRFUTIL / f"{name}.zip", for_update=False)
    shown = nrfutil_display(NRFUTIL / f"{name}.display.txt")
    assert len(shown) == len(package.images) >= 1
    for image, nrfutil in zip(package.images, shown, strict=True):
        assert as_nrfutil_shows(image) == nrfutil


@pytest.mark.parametrize("stem", ["noke-4i-3.15", "noke-3p-2.11"])
def test_nrfutil_displays_blelocks_packages_as_blelock_does(stem: str) -> None:
    """The reverse direction: nrfutil pkg display, run on firmware_images/, read every field
    blelock wrote (tests/fixtures/nrfutil/README.md says how the files were made)."""
    package = dfu_package.read_package(ROOT / "firmware_images" / f"{stem}.zip")
    (shown,) = nrfutil_display(NRFUTIL / f"blelock-{stem}.display.txt")
    assert as_nrfutil_shows(package.update) == shown


@pytest.mark.parametrize("name", [n for n in FIXTURES if n != "app_debug"])
def test_nrfutil_signatures_verify_as_the_sdk_checks_them(name: str) -> None:
    package = dfu_package.read_package(NRFUTIL / f"{name}.zip", for_update=False)
    for image in package.images:
        init = image.init
        assert dfu_init.verify_init_packet(init, NRFUTIL_KEY)
        assert not dfu_init.verify_init_packet(init, KEY.public_key())
        # r and s each little-endian, over the InitCommand alone: the other readings fail.
        big_endian = init.signature[:32][::-1] + init.signature[32:][::-1]
        assert not dfu_init.verify_init_packet(
            dataclasses.replace(init, signature=big_endian), NRFUTIL_KEY
        )
        packet = dfu_cc_pb2.Packet.FromString(init.raw)
        command_bytes = packet.signed_command.command.SerializeToString()
        assert not dfu_init.verify_init_packet(
            dataclasses.replace(init, signed_bytes=command_bytes), NRFUTIL_KEY
        )
        assert init.raw[0] == 0x12  # Packet.signed_command, length-delimited
        assert init.command.fw_hash == hashlib.sha256(image.firmware).digest()[::-1]


def fixture_image(name: str, kind: str = "application") -> dfu_package.FirmwareImage:
    package = dfu_package.read_package(NRFUTIL / f"{name}.zip", for_update=False)
    (image,) = [image for image in package.images if image.kind == kind]
    return image


@pytest.mark.parametrize(
    ("name", "kind", "options"),
    [
        ("app", "application", {}),
        ("app_sha256", "application",
         {"boot_validation": [dfu_init.BootValidation(VT.VALIDATE_GENERATED_SHA256)]}),
        ("app_debug", "application", {"is_debug": True}),
        ("bl", "bootloader", {"fw_type": dfu_init.FirmwareType.BOOTLOADER, "fw_version": 3}),
        ("sd", "softdevice", {"fw_type": FT.SOFTDEVICE, "sd_req": [0x100, 0x101]}),
    ],
)  # fmt: skip
def test_blelocks_init_command_is_byte_for_byte_nrfutils(
    name: str, kind: str, options: dict[str, Any]
) -> None:
    """Same image, same options as the nrfutil command line: the same signed bytes (the
    signature differs only because nrfutil's ECDSA nonce is random)."""
    image = fixture_image(name, kind)
    arguments: dict[str, Any] = {"hw_version": 52, "fw_version": 7, "sd_req": [0x100]} | options
    command = dfu_init.InitCommand.for_image(image.firmware, **arguments)
    assert command.encode() == image.init.signed_bytes
    assert dfu_init.parse_init_packet(dfu_init.encode_init_packet(command, None)).command == (
        image.init.command
    )


def test_an_ecdsa_boot_validation_is_nrfutils_too() -> None:
    image = fixture_image("app_ecdsa")
    (validation,) = image.init.command.boot_validation
    assert validation.type is dfu_init.ValidationType.VALIDATE_ECDSA_P256_SHA256
    ours = dfu_init.sign_image(image.firmware, KEY)
    assert len(ours.data) == len(validation.data) == 64
    command = dfu_init.InitCommand.for_image(
        image.firmware, hw_version=52, fw_version=7, sd_req=[0x100], boot_validation=[validation]
    )
    assert command.encode() == image.init.signed_bytes
    assert dfu_init.validate_image(image.init, image.firmware, NRFUTIL_KEY) is None
    refusal = dfu_init.validate_image(image.init, image.firmware, KEY.public_key())
    assert refusal is not None and refusal.extended is dfu.ExtendedError.VERIFICATION_FAILED


def test_blelocks_packet_decodes_with_the_generated_module() -> None:
    image = image_of(5000)
    raw = dfu_init.encode_init_packet(init_for(image), KEY)
    packet = dfu_cc_pb2.Packet.FromString(raw)
    assert packet.HasField("signed_command") and not packet.HasField("command")
    signed = packet.signed_command
    init = signed.command.init
    assert signed.command.op_code == dfu_cc_pb2.INIT
    assert signed.signature_type == dfu_cc_pb2.ECDSA_P256_SHA256 and len(signed.signature) == 64
    assert (init.fw_version, init.hw_version, list(init.sd_req)) == (V3_15, HW_4I, [0x100])
    assert (init.type, init.app_size, init.sd_size, init.bl_size) == (
        dfu_cc_pb2.APPLICATION,
        5000,
        0,
        0,
    )
    assert init.hash.hash_type == dfu_cc_pb2.SHA256
    assert init.hash.hash == hashlib.sha256(image).digest()[::-1]
    assert init.HasField("is_debug") and not init.is_debug
    assert [v.type for v in init.boot_validation] == [dfu_cc_pb2.VALIDATE_GENERATED_CRC]
    parsed = dfu_init.parse_init_packet(raw)
    assert parsed.command == init_for(image) and parsed.raw == raw and parsed.signed
    assert dfu_init.verify_init_packet(parsed, KEY.public_key())
    assert dfu_init.encode_init_packet(init_for(image), KEY) == raw  # deterministic signatures


def test_a_tampered_packet_never_verifies() -> None:
    raw = dfu_init.encode_init_packet(init_for(image_of(100)), KEY)
    for where in range(len(raw)):
        tampered = bytearray(raw)
        tampered[where] ^= 0x01
        try:
            init = dfu_init.parse_init_packet(bytes(tampered))
        except RemoteProtocolError:
            continue
        assert not dfu_init.verify_init_packet(init, KEY.public_key()), where


def test_unsigned_init_packet_parses_but_does_not_verify() -> None:
    init = dfu_init.parse_init_packet(dfu_init.encode_init_packet(init_for(image_of(10)), None))
    assert not init.signed and init.signature_type is None and init.raw[0] == 0x0A
    assert not dfu_init.verify_init_packet(init, KEY.public_key())


def _reset_packet() -> bytes:
    packet = dfu_cc_pb2.Packet()
    packet.command.op_code = dfu_cc_pb2.RESET
    packet.command.reset.timeout = 5
    return packet.SerializeToString()


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (b"", "neither a command nor a signed command"),
        (_reset_packet(), "not an INIT command"),
        (b"BLDI\\x01" + bytes(60), "not a Nordic init packet"),
        (NRFUTIL_DAT[:-10], "not a Nordic init packet"),
        # a SignedCommand without its required signature
        (bytes.fromhex("1202") + bytes.fromhex("0a00"), "not a Nordic init packet"),
    ],
)
def test_broken_init_packets_are_refused(raw: bytes, complaint: str) -> None:
    with pytest.raises(RemoteProtocolError, match=complaint):
        dfu_init.parse_init_packet(raw)


def test_public_key_loading() -> None:
    pem = (ROOT / "firmware_images" / "test_signing_key.pub.pem").read_bytes()
    assert isinstance(dfu_init.load_public_key(pem).curve, ec.SECP256R1)
    with pytest.raises(LocalProtocolError):
        dfu_init.load_public_key(b"-----BEGIN PUBLIC KEY-----\\nnope\\n-----END PUBLIC KEY-----\\n")


STATE = dfu_init.BootloaderState(
    public_key=KEY.public_key(),
    hw_version=HW_4I,
    app_version=dfu.version_number(3, 14),
    bootloader_version=2,
    softdevice_id=0x0100,
    bank_size=8192,
)
EXT = dfu.ResultCode.EXTENDED_ERROR
ED25519 = dfu_init.SignatureType.ED25519


@pytest.mark.parametrize(
    ("key", "signature_type", "changes", "result", "extended"),
    [
        (None, None, {}, EXT, dfu.ExtendedError.SIGNATURE_MISSING),
        (KEY, ED25519, {}, EXT, dfu.ExtendedError.WRONG_SIGNATURE_TYPE),
        (OTHER_KEY, None, {}, dfu.ResultCode.INVALID_OBJECT, None),
        (KEY, None, {"fw_type": None}, EXT, dfu.ExtendedError.INIT_COMMAND_INVALID),
        (KEY, None, {"fw_type": FT.EXTERNAL_APPLICATION}, EXT,
         dfu.ExtendedError.INIT_COMMAND_INVALID),
        (KEY, None, {"hash_type": dfu_init.HashType.CRC}, EXT, dfu.ExtendedError.WRONG_HASH_TYPE),
        (KEY, None, {"fw_hash": bytes(16)}, EXT, dfu.ExtendedError.WRONG_HASH_TYPE),
        (KEY, None, {"hw_version": None}, EXT, dfu.ExtendedError.INIT_COMMAND_INVALID),
        (KEY, None, {"hw_version": dfu.hardware_version("3P")}, EXT,
         dfu.ExtendedError.HW_VERSION_FAILURE),
        (KEY, None, {"sd_req": (0x0101,)}, EXT, dfu.ExtendedError.SD_VERSION_FAILURE),
        (KEY, None, {"sd_req": ()}, EXT, dfu.ExtendedError.SD_VERSION_FAILURE),
        (KEY, None, {"fw_version": dfu.version_number(3, 13)}, EXT,
         dfu.ExtendedError.FW_VERSION_FAILURE),
        (KEY, None, {"fw_version": None}, EXT, dfu.ExtendedError.INIT_COMMAND_INVALID),
        (KEY, None, {"fw_type": FT.BOOTLOADER, "fw_version": 1, "app_size": 0, "bl_size": 100},
         EXT, dfu.ExtendedError.FW_VERSION_FAILURE),
        (KEY, None, {"app_size": 0}, EXT, dfu.ExtendedError.INIT_COMMAND_INVALID),
        (KEY, None, {"sd_size": 100}, EXT, dfu.ExtendedError.INIT_COMMAND_INVALID),
        (KEY, None, {"app_size": 8193}, EXT, dfu.ExtendedError.INSUFFICIENT_SPACE),
        (KEY, None, {"boot_validation": (dfu_init.BootValidation(
            dfu_init.ValidationType.VALIDATE_ECDSA_P256_SHA256, b"short"),)}, EXT,
         dfu.ExtendedError.INIT_COMMAND_INVALID),
    ],
)  # fmt: skip
def test_bootloader_refuses_init_packets_with_the_sdk_codes(
    key: ec.EllipticCurvePrivateKey | None,
    signature_type: dfu_init.SignatureType | None,
    changes: dict[str, Any],
    result: dfu.ResultCode,
    extended: dfu.ExtendedError | None,
) -> None:
    raw = dfu_init.encode_init_packet(
        init_for(image_of(100), **changes),
        key,
        signature_type=signature_type or dfu_init.SignatureType.ECDSA_P256_SHA256,
    )
    verdict = dfu_init.validate_init_packet(raw, STATE)
    assert isinstance(verdict, dfu_init.Refusal)
    assert (verdict.result, verdict.extended) == (result, extended)


def test_bootloader_checks_in_the_sdks_order() -> None:
    """Each packet is wrong twice; the SDK's earlier check is the one that answers."""
    wrong = {
        dfu.ExtendedError.SIGNATURE_MISSING: (None, {"hw_version": 1}),
        dfu.ExtendedError.INIT_COMMAND_INVALID: (KEY, {"fw_type": None, "hash_type": CRC}),
        dfu.ExtendedError.WRONG_HASH_TYPE: (KEY, {"hash_type": CRC, "hw_version": 1}),
        dfu.ExtendedError.HW_VERSION_FAILURE: (KEY, {"hw_version": 1, "sd_req": (7,)}),
        dfu.ExtendedError.SD_VERSION_FAILURE: (KEY, {"sd_req": (7,), "fw_version": 1}),
        dfu.ExtendedError.FW_VERSION_FAILURE: (KEY, {"fw_version": 1, "app_size": 9000}),
    }  # fmt: skip
    for expected, (key, changes) in wrong.items():
        raw = dfu_init.encode_init_packet(init_for(image_of(100), **changes), key)
        verdict = dfu_init.validate_init_packet(raw, STATE)
        assert isinstance(verdict, dfu_init.Refusal) and verdict.extended is expected, expected


def test_bootloader_allows_same_newer_and_debug_versions_and_any_softdevice() -> None:
    image = image_of(100)
    for changes in (
        {},  # 3.15 over 3.14
        {"fw_version": STATE.app_version},  # re-flashing the same version is allowed
        {"fw_version": 1, "is_debug": True},  # a debug package may go down
        {"sd_req": (0x0101, dfu_init.SD_REQ_ANY)},
    ):
        raw = dfu_init.encode_init_packet(init_for(image, **changes), KEY)
        assert isinstance(dfu_init.validate_init_packet(raw, STATE), dfu_init.InitPacket), changes


def test_the_image_check_is_the_reversed_sha256() -> None:
    image = image_of(100)
    init = dfu_init.validate_init_packet(dfu_init.encode_init_packet(init_for(image), KEY), STATE)
    assert isinstance(init, dfu_init.InitPacket)
    assert dfu_init.validate_image(init, image, KEY.public_key()) is None
    for wrong in (image[:-1], image[:-1] + b"\\x00", image + b"\\x00"):
        refusal = dfu_init.validate_image(init, wrong, KEY.public_key())
        assert refusal is not None and refusal.extended is dfu.ExtendedError.VERIFICATION_FAILED
    forward = dataclasses.replace(init_for(image), fw_hash=hashlib.sha256(image).digest())
    init = dfu_init.validate_init_packet(dfu_init.encode_init_packet(forward, KEY), STATE)
    assert isinstance(init, dfu_init.InitPacket)  # the bootloader cannot tell before the image
    assert dfu_init.validate_image(init, image, KEY.public_key()) is not None


# --- the package ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "hardware", "version"),
    [("noke-4i-3.15", "4I", "3.15"), ("noke-3p-2.11", "3P", "2.11")],
)
def test_shipped_packages_read_and_verify(stem: str, hardware: str, version: str) -> None:
    path = ROOT / "firmware_images" / f"{stem}.zip"
    package = dfu_package.read_package(path)
    assert (package.hardware, package.version) == (hardware, version)
    assert package.firmware.startswith(f"BLELOCK TEST FIRMWARE {hardware} {version}".encode())
    assert (package.bin_file, package.dat_file, package.source) == (
        f"{stem}.bin", f"{stem}.dat", str(path))  # fmt: skip
    pem = (ROOT / "firmware_images" / "test_signing_key.pub.pem").read_bytes()
    assert dfu_init.verify_init_packet(package.init, dfu_init.load_public_key(pem))
    assert dfu_package.read_package(path.read_bytes()) == package  # bytes or path: the same package


def test_encode_package_is_byte_identical_and_nrfutil_shaped() -> None:
    image = image_of(3000)
    dat = dfu_init.encode_init_packet(init_for(image), KEY)
    first = dfu_package.encode_package(dat, image, stem="app")
    assert dfu_package.encode_package(dat, image, stem="app") == first
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert json.loads(archive.read("manifest.json")) == json.loads(manifest())
        assert archive.read("app.bin") == image and archive.read("app.dat") == dat


GOOD_IMAGE = image_of(3000)
GOOD_DAT = dfu_init.encode_init_packet(init_for(GOOD_IMAGE), KEY)
SOFTDEVICE_DAT = dfu_init.encode_init_packet(
    init_for(GOOD_IMAGE, fw_type=dfu_init.FirmwareType.SOFTDEVICE), KEY
)


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"PK\x03\x04 definitely not a zip", "not a usable zip file"),
        (b"", "not a usable zip file"),
        (zip_of({"app.bin": GOOD_IMAGE, "app.dat": GOOD_DAT}), "has no manifest.json"),
        (zip_of({"manifest.json": b"{nope", "app.bin": GOOD_IMAGE, "app.dat": GOOD_DAT}),
         "not valid JSON"),
        (zip_of({"manifest.json": b"[]"}), 'no "manifest" object'),
        (zip_of({"manifest.json": b'{"manifest": {"dfu_version": 0.5}}'}), "names no image"),
        (zip_of({"manifest.json": b'{"manifest": {"application": 3}}'}), "is not an object"),
        (zip_of({"manifest.json": manifest(bin_file=None)}), "application.bin_file is missing"),
        (zip_of({"manifest.json": manifest(dat_file=7)}), "application.dat_file is missing"),
        (zip_of({"manifest.json": b'{"manifest": {"softdevice": {}, "application": {}}}'}),
         "softdevice.bin_file is missing"),
        (zip_of({"manifest.json": manifest(), "app.dat": GOOD_DAT}), "has no app.bin"),
        (zip_of({"manifest.json": manifest(), "app.bin": GOOD_IMAGE, "app.dat": b"BLDI"}),
         "app.dat is not an init packet"),
        (zip_of({"manifest.json": manifest(), "app.bin": GOOD_IMAGE[:-100], "app.dat": GOOD_DAT}),
         "app.bin is 2900 bytes but its init packet says 3000: the image is truncated"),
        (zip_of({"manifest.json": manifest(), "app.bin": GOOD_IMAGE[::-1], "app.dat": GOOD_DAT}),
         "does not match its init packet's SHA-256"),
        (zip_of({"manifest.json": manifest(), "app.bin": b"", "app.dat": GOOD_DAT}), "is empty"),
        (zip_of({"manifest.json": manifest(), "app.bin": GOOD_IMAGE, "app.dat": SOFTDEVICE_DAT}),
         "app.dat is for a SOFTDEVICE, but the manifest says application"),
        (zip_of({"manifest.json": manifest(), "app.bin": GOOD_IMAGE, "app.dat": bytes(600)}),
         "app.dat is 600 bytes, more than 512"),
    ],
)  # fmt: skip
def test_bad_packages_are_refused_clearly(data: bytes, complaint: str) -> None:
    with pytest.raises(UsageError) as refused:
        dfu_package.read_package(data)
    assert complaint in str(refused.value)


def test_a_damaged_entry_fails_its_zip_crc() -> None:
    good = dfu_package.encode_package(GOOD_DAT, GOOD_IMAGE, stem="app")
    damaged = bytearray(good)
    damaged[good.index(GOOD_IMAGE[:32]) + 1000] ^= 0xFF  # inside the stored image
    with pytest.raises(UsageError, match="CRC"):
        dfu_package.read_package(bytes(damaged))


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read DFU package"):
        dfu_package.read_package(tmp_path / "absent.zip")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3400), st.integers(1, 255)), min_size=1, max_size=4))
def test_any_damage_to_a_package_is_a_usage_error_or_harmless(
    flips: list[tuple[int, int]],
) -> None:
    data = bytearray(dfu_package.encode_package(GOOD_DAT, GOOD_IMAGE, stem="app"))
    for where, mask in flips:
        data[where % len(data)] ^= mask
    try:
        package = dfu_package.read_package(bytes(data))
    except UsageError:
        return
    assert package.firmware == GOOD_IMAGE  # only a byte zip ignores can have been hit


@given(st.binary(max_size=200))
def test_package_reader_on_noise(data: bytes) -> None:
    with pytest.raises(UsageError):
        dfu_package.read_package(b"PK\x03\x04" + data)


# --- the planner against an in-memory bootloader ---------------------------------------------


@dataclass
class Model:
    """The least a bootloader does (SDK 15.3 object rules, CRCs, PRN); trusts any init packet."""

    package: dfu_package.DfuPackage
    max_size: int = 4096
    command_max: int = dfu.INIT_COMMAND_MAX_SIZE
    corrupt: Callable[[int], bool] = lambda n: False
    """Which packet numbers (1-based, over the model's life) arrive with a flipped byte."""
    refuse_init: dfu.ErrorResponse | None = None
    init: bytearray = field(default_factory=bytearray)
    init_size: int = 0
    init_ok: bool = False
    image: bytearray = field(default_factory=bytearray)
    offset_last: int = 0
    object_size: int = 0
    current: int = dfu.ObjectType.COMMAND
    prn: int = 0
    count: int = 0
    packets: int = 0
    booted: bool = False

    def control(self, data: bytes) -> bytes:
        request = dfu.decode_request(data)
        op = dfu.Opcode(data[0])
        if isinstance(request, dfu.SetPrnRequest):
            self.prn, self.count = request.prn, 0
        elif isinstance(request, dfu.SelectRequest):
            self.current = request.object_type
            held = self.init if self.current == dfu.ObjectType.COMMAND else self.image
            size = self.command_max if self.current == dfu.ObjectType.COMMAND else self.max_size
            return dfu.SelectResponse(size, len(held), zlib.crc32(held)).encode()
        elif isinstance(request, dfu.CreateRequest):
            self.current, self.count = request.object_type, 0
            if request.object_type == dfu.ObjectType.COMMAND:
                self.init, self.init_size, self.init_ok = bytearray(), request.size, False
                self.image, self.offset_last = bytearray(), 0
            else:
                del self.image[self.offset_last :]
                self.object_size = request.size
        elif isinstance(request, dfu.CalcChecksumRequest):
            return self._checksum().encode()
        elif isinstance(request, dfu.ExecuteRequest):
            return self._execute(op)
        return dfu.Success(op).encode()

    def _checksum(self) -> dfu.ChecksumResponse:
        held = self.init if self.current == dfu.ObjectType.COMMAND else self.image
        return dfu.ChecksumResponse(len(held), zlib.crc32(held))

    def _execute(self, op: dfu.Opcode) -> bytes:
        if self.current == dfu.ObjectType.COMMAND:
            if self.refuse_init is not None:
                return self.refuse_init.encode()
            self.init_ok = bytes(self.init) == self.package.init_packet
            return dfu.Success(op).encode()
        if len(self.image) - self.offset_last != self.object_size:
            return dfu.ErrorResponse(op, dfu.ResultCode.OPERATION_NOT_PERMITTED).encode()
        self.offset_last, self.object_size = len(self.image), 0
        if len(self.image) == len(self.package.firmware):
            if bytes(self.image) != self.package.firmware:
                return dfu.ErrorResponse(
                    op, dfu.ResultCode.EXTENDED_ERROR, dfu.ExtendedError.VERIFICATION_FAILED
                ).encode()
            self.booted = True
        return dfu.Success(op).encode()

    def packet(self, data: bytes) -> bytes | None:
        self.packets += 1
        if self.corrupt(self.packets):
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if self.current == dfu.ObjectType.COMMAND:
            if len(self.init) + len(data) <= self.init_size:
                self.init += data
        elif len(self.image) - self.offset_last + len(data) <= self.object_size:
            self.image += data
        self.count += 1
        if self.prn and self.count == self.prn:
            self.count = 0
            return self._checksum().encode()
        return None


class LinkLost(Exception):
    pass


@dataclass
class Run:
    events: list[dfu_transfer.Event] = field(default_factory=list)
    actions: list[dfu_transfer.Action] = field(default_factory=list)


def drive(
    session: dfu_transfer.DfuSession,
    model: Model,
    *,
    lose_link: Callable[[dfu_transfer.Action, Run], bool] = lambda action, run: False,
) -> Run:
    """A synchronous driver: the shape the async one has. ``lose_link`` drops the link before
    an action reaches the bootloader."""
    run, pending = Run(), collections.deque[bytes]()
    while (action := session.next_action()) is not None:
        if lose_link(action, run):
            raise LinkLost
        run.actions.append(action)
        if isinstance(action, dfu_transfer.WriteControl):
            pending.append(model.control(action.data))
        elif isinstance(action, dfu_transfer.WritePacket):
            assert len(action.data) <= session.packet_size
            if (note := model.packet(action.data)) is not None:
                pending.append(note)
        if action.expects_notification:
            run.events.extend(session.receive(pending.popleft()))
    assert not pending, "the bootloader said something nobody read"
    return run


def interrupted(
    model: Model, lose_link: Callable[[dfu_transfer.Action, Run], bool], **options: int
) -> None:
    with pytest.raises(LinkLost):
        drive(dfu_transfer.DfuSession(model.package, **options), model, lose_link=lose_link)


def after_packets(count: int) -> Callable[[dfu_transfer.Action, Run], bool]:
    def rule(action: dfu_transfer.Action, run: Run) -> bool:
        sent = sum(isinstance(a, dfu_transfer.WritePacket) for a in run.actions)
        return isinstance(action, dfu_transfer.WritePacket) and sent == count

    return rule


def writes(run: Run, opcode: dfu.Opcode) -> int:
    return sum(
        isinstance(a, dfu_transfer.WriteControl) and a.request is opcode for a in run.actions
    )


E = TypeVar("E")


def events(run: Run, kind: type[E]) -> list[E]:
    return [e for e in run.events if isinstance(e, kind)]


PACKAGE = package_of(image_of(3 * 4096 + 1000, "planner"))


@pytest.mark.parametrize("prn", [0, 1, 4, 12, 17])
@pytest.mark.parametrize("packet_size", [20, 244])
def test_full_transfer(prn: int, packet_size: int) -> None:
    model = Model(PACKAGE)
    session = dfu_transfer.DfuSession(PACKAGE, packet_size=packet_size, prn=prn)
    run = drive(session, model)
    assert model.booted and session.finished and bytes(model.image) == PACKAGE.firmware
    assert isinstance(run.events[-1], dfu_transfer.Finished) and session.next_action() is None
    # Receipts every `prn` packets of each object; a CalcChecksum only where a receipt did not
    # already confirm the object's end.
    objects = [len(PACKAGE.init_packet)] + [4096] * 3 + [1000]
    packets = [math.ceil(size / packet_size) for size in objects]
    assert session.packets_sent == sum(packets)
    assert sum(isinstance(a, dfu_transfer.AwaitReceipt) for a in run.actions) == (
        sum(p // prn for p in packets) if prn else 0
    )
    assert writes(run, dfu.Opcode.CALCULATE_CHECKSUM) == sum(
        1 for p in packets if not prn or p % prn
    )
    assert writes(run, dfu.Opcode.CREATE) == writes(run, dfu.Opcode.EXECUTE) == 5
    confirmed = [
        e.offset
        for e in events(run, dfu_transfer.Confirmed)
        if e.object_type is dfu.ObjectType.DATA
    ]
    assert confirmed == sorted(confirmed) and confirmed[-1] == PACKAGE.size
    assert session.progress == dfu_transfer.Progress(PACKAGE.size, PACKAGE.size)
    if (prn, packet_size) == (17, 244):  # a receipt lands on each full object's last packet
        assert writes(run, dfu.Opcode.CALCULATE_CHECKSUM) == 2  # the init packet, the short tail


def test_resume_continues_a_partly_sent_object() -> None:
    model = Model(PACKAGE)
    interrupted(model, after_packets(30), packet_size=244)  # 1 init + 29 data packets
    held = len(model.image)
    assert held == 4096 + 12 * 244  # 17 packets make the first object; mid-second object
    session = dfu_transfer.DfuSession(PACKAGE, packet_size=244)
    run = drive(session, model)
    selected = events(run, dfu_transfer.Selected)
    assert [e.resume_offset for e in selected] == [len(PACKAGE.init_packet), held]
    assert writes(run, dfu.Opcode.CREATE) == 2  # the init packet and the partial object are kept
    assert session.image_bytes_sent == PACKAGE.size - held
    assert model.booted and bytes(model.image) == PACKAGE.firmware


def test_resume_executes_a_complete_object_the_link_lost_before_execute() -> None:
    model = Model(PACKAGE)

    def before_second_data_execute(action: dfu_transfer.Action, run: Run) -> bool:
        return (
            isinstance(action, dfu_transfer.WriteControl)
            and action.request is dfu.Opcode.EXECUTE
            and writes(run, dfu.Opcode.EXECUTE) == 2
        )

    interrupted(model, before_second_data_execute, packet_size=244)
    assert (len(model.image), model.offset_last) == (8192, 4096)
    session = dfu_transfer.DfuSession(PACKAGE, packet_size=244)
    run = drive(session, model)
    assert session.image_bytes_sent == PACKAGE.size - 8192
    assert events(run, dfu_transfer.Executed)[1] == dfu_transfer.Executed(dfu.ObjectType.DATA, 8192)
    assert model.booted


def test_resume_after_an_empty_object_was_created() -> None:
    model = Model(PACKAGE)

    def after_third_create(action: dfu_transfer.Action, run: Run) -> bool:
        return isinstance(action, dfu_transfer.WritePacket) and writes(run, dfu.Opcode.CREATE) == 3

    interrupted(model, after_third_create, packet_size=244)
    assert (len(model.image), model.object_size) == (4096, 4096)  # object 2 created, empty
    run = drive(dfu_transfer.DfuSession(PACKAGE, packet_size=244), model)
    # The resumed Execute is refused (nothing written in the current object) and tolerated.
    assert dfu_transfer.Acknowledged(dfu.Opcode.EXECUTE) in run.events
    assert not events(run, dfu_transfer.Refused) and model.booted


def test_resume_continues_a_partly_sent_init_packet() -> None:
    model = Model(PACKAGE)
    interrupted(model, after_packets(2), packet_size=20)
    assert len(model.init) == 40
    run = drive(dfu_transfer.DfuSession(PACKAGE, packet_size=20), model)
    assert events(run, dfu_transfer.Selected)[0].resume_offset == 40
    assert writes(run, dfu.Opcode.CREATE) == 4  # data objects only
    assert model.booted


def test_resume_recreates_a_partial_object_whose_crc_does_not_match() -> None:
    model = Model(PACKAGE, corrupt=lambda n: n == 25)  # inside the second data object
    interrupted(model, after_packets(30), packet_size=244)
    assert len(model.image) == 4096 + 12 * 244
    session = dfu_transfer.DfuSession(PACKAGE, packet_size=244)
    run = drive(session, model)
    assert events(run, dfu_transfer.Selected)[1].resume_offset == 4096
    assert (
        dfu_transfer.Confirmed(dfu.ObjectType.DATA, 4096) in run.events
    )  # base checked after Create
    assert session.image_bytes_sent == PACKAGE.size - 4096
    assert model.booted and bytes(model.image) == PACKAGE.firmware


def test_resume_starts_over_when_even_the_executed_data_is_not_ours() -> None:
    model = Model(PACKAGE)
    drive_until = after_packets(40)
    interrupted(model, drive_until, packet_size=244)
    model.image[:4096] = bytes(4096)  # flash holding something else: the CRC cannot match
    session = dfu_transfer.DfuSession(PACKAGE, packet_size=244)
    run = drive(session, model)
    (restart,) = events(run, dfu_transfer.Retrying)
    assert restart.offset == 0 and "starting over" in restart.reason
    assert model.booted and bytes(model.image) == PACKAGE.firmware
    assert session.image_bytes_sent == PACKAGE.size


@pytest.mark.parametrize("prn", [0, 4])
def test_a_corrupted_packet_is_caught_and_its_object_resent(prn: int) -> None:
    model = Model(PACKAGE, corrupt=lambda n: n == 3)  # first data object
    session = dfu_transfer.DfuSession(PACKAGE, packet_size=244, prn=prn)
    run = drive(session, model)
    (retry,) = events(run, dfu_transfer.Retrying)
    assert retry == dfu_transfer.Retrying(dfu.ObjectType.DATA, 0, retry.reason, 1)
    assert "receipt" in retry.reason if prn else "checksum" in retry.reason
    assert session.retries == 1 and model.booted and bytes(model.image) == PACKAGE.firmware
    # With receipts the damage shows after 4 packets, not at the end of the 4096-byte object.
    assert session.image_bytes_sent == PACKAGE.size + (4 * 244 if prn else 4096)


def test_a_link_that_keeps_corrupting_gives_up() -> None:
    model = Model(PACKAGE, corrupt=lambda n: n > 1)
    session = dfu_transfer.DfuSession(PACKAGE, packet_size=244)
    with pytest.raises(RemoteProtocolError, match="failed its check 3 times"):
        drive(session, model)
    assert session.next_action() is None and not model.booted


def test_a_refusal_ends_the_session() -> None:
    refusal = dfu.ErrorResponse(
        dfu.Opcode.EXECUTE, dfu.ResultCode.EXTENDED_ERROR, dfu.ExtendedError.HW_VERSION_FAILURE
    )
    model = Model(PACKAGE, refuse_init=refusal)
    session = dfu_transfer.DfuSession(PACKAGE)
    run = drive(session, model)
    assert run.events[-1] == session.refusal
    assert session.refusal == dfu_transfer.Refused(
        dfu.Opcode.EXECUTE, refusal.result, refusal.extended
    )
    assert session.refusal.message == "the package is for other hardware"
    assert not session.finished and model.image == bytearray()


def test_an_init_packet_too_big_for_the_bootloader_is_a_local_error() -> None:
    model = Model(PACKAGE, command_max=64)
    with pytest.raises(LocalProtocolError, match="takes 64"):
        drive(dfu_transfer.DfuSession(PACKAGE), model)


def test_misuse_and_confusion() -> None:
    session = dfu_transfer.DfuSession(PACKAGE)
    with pytest.raises(RemoteProtocolError, match="nothing was asked"):
        session.receive(dfu.Success(dfu.Opcode.SET_PRN).encode())
    action = session.next_action()
    assert isinstance(action, dfu_transfer.WriteControl) and action.request is dfu.Opcode.SET_PRN
    assert session.awaiting == action
    with pytest.raises(RuntimeError, match="call receive"):
        session.next_action()
    with pytest.raises(RemoteProtocolError, match="expected a response to SET_PRN"):
        session.receive(dfu.Success(dfu.Opcode.EXECUTE).encode())
    assert session.next_action() is None  # the session is dead after a protocol error


@pytest.mark.parametrize(
    "options",
    [{"packet_size": 19}, {"packet_size": 245}, {"prn": -1}, {"prn": 65536}, {"max_attempts": 0}],
)
def test_planner_options_are_checked(options: dict[str, int]) -> None:
    with pytest.raises(LocalProtocolError):
        dfu_transfer.DfuSession(PACKAGE, **options)


@settings(max_examples=200)
@given(st.integers(0, 40), st.binary(max_size=20))
def test_receive_raises_only_protocol_errors(steps: int, noise: bytes) -> None:
    """Whatever the bootloader says at whatever point: an event or a ProtocolError."""
    model = Model(PACKAGE)
    session = dfu_transfer.DfuSession(PACKAGE, packet_size=244, prn=4)
    pending = collections.deque[bytes]()
    for _ in range(steps):  # an honest conversation up to some point…
        action = session.next_action()
        assert action is not None
        if isinstance(action, dfu_transfer.WriteControl):
            pending.append(model.control(action.data))
        elif isinstance(action, dfu_transfer.WritePacket) and (note := model.packet(action.data)):
            pending.append(note)
        if action.expects_notification:
            session.receive(pending.popleft())
    while (action := session.next_action()) is not None:  # …then noise where an answer is due
        if action.expects_notification:
            break
    else:
        return
    try:
        [event] = session.receive(noise)
    except ProtocolError:
        return
    t = dfu_transfer
    assert isinstance(event, t.Acknowledged | t.Selected | t.Confirmed | t.Executed
                      | t.Retrying | t.Refused | t.Finished)  # fmt: skip


# --- a bootloader that reports more data than the image ---------------------------------


def test_a_bootloader_holding_more_than_the_image_is_started_over_by_name() -> None:
    model = Model(PACKAGE)
    # A complete init packet and more image than ours (a longer image, sent earlier).
    model.init, model.init_size, model.init_ok = (
        bytearray(PACKAGE.init_packet),
        len(PACKAGE.init_packet),
        True,
    )
    model.image = bytearray(PACKAGE.firmware + b"\xff" * 500)
    model.offset_last = len(model.image)
    session = dfu_transfer.DfuSession(PACKAGE, packet_size=244)
    run = drive(session, model)
    (retry,) = events(run, dfu_transfer.Retrying)
    assert retry.object_type is dfu.ObjectType.DATA and retry.offset == 0
    assert f"{len(PACKAGE.firmware) + 500} bytes of a {len(PACKAGE.firmware)}-byte image" in (
        retry.reason
    )
    assert model.booted and bytes(model.image) == PACKAGE.firmware


def test_a_bootloader_that_keeps_reporting_more_than_the_image_is_refused_by_name() -> None:
    class Overreporting(Model):
        def control(self, data: bytes) -> bytes:
            answer = super().control(data)
            request = dfu.decode_request(data)
            if isinstance(request, dfu.SelectRequest) and request.object_type == (
                dfu.ObjectType.DATA
            ):
                return dfu.SelectResponse(self.max_size, len(PACKAGE.firmware) + 1, 0).encode()
            return answer

    with pytest.raises(RemoteProtocolError, match=r"inconsistent.*holds \d+ bytes of a \d+-byte"):
        drive(dfu_transfer.DfuSession(PACKAGE, packet_size=244), Overreporting(PACKAGE))
