"""Nordic Secure DFU over BLE, sans-I/O: GATT names, vendor limits and the control-point codec.

Its siblings: :mod:`blelock.protocol.dfu_init` (Nordic's protobuf init packet, signing and the
bootloader's checks), :mod:`blelock.protocol.dfu_package` (the DFU zip) and
:mod:`blelock.protocol.dfu_transfer` (the companion's transfer planner).

Nokē locks run a Nordic bootloader (noke.md §8.2): after the cloud's ``fwupdate`` command the lock
reboots into it, and the image goes over Nordic's Secure DFU protocol. This module knows that
protocol and nothing about Nokē, asyncio or bleak; ``blelock.dfu`` drives :class:`DfuSession`
over a link, ``simulators.dfu_target`` plays the bootloader with the codecs and checks below.

What is public and followed exactly (shared/research/bleak.md §3, from nrfutil 6.1.7, and the
nRF5 SDK 15.3 bootloader sources, ``nrf_dfu_req_handler.c`` / ``nrf_dfu_validation.c`` /
``nrf_dfu_ble.c``):

* the service (0xFE59), control point ``8EC90001-…`` (write + notify) and data packet
  ``8EC90002-…`` (write without response) characteristics;
* opcodes, object types, result codes and extended error codes, and the response layout
  ``60 <request opcode> <result> [payload | extended error]``, little-endian integers;
* the flow: set PRN, init packet as a *command* object, then the image as *data* objects of at
  most the Select-reported maximum size, CRC32 checks (a running CRC over everything sent so far),
  packet receipt notifications every PRN packets (the counter restarts at Create and SetPRN),
  Select-based resume;
* which result code the bootloader gives for which refusal (``dfu_init.validate_init_packet``,
  ``dfu_init.validate_image``) and the limits in "Vendor limits" below;
* the init packet (dfu-cc.proto, through the protobuf runtime) and the DFU zip with all four
  manifest kinds;
* the buttonless DFU service's characteristics and its Enter-bootloader request
  (:func:`encode_enter_bootloader`, :func:`decode_buttonless_response`).

What is *not* followed, and why:

* The legacy (pre-secure, SDK ≤ 11) DFU service ``00001530-…`` that older Nokē parts advertise is
  only *identified* (:func:`dfu_service_kind`); its protocol is not spoken here.
* Hardware and firmware version numbers for Nokē are invented (:func:`hardware_version`,
  :func:`version_number`); Nokē's real values are not public (noke.md §13).

The package reader is the one function here that may touch a file (a path is accepted for
convenience); call it off the event loop.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

from blelock.errors import (
    LocalProtocolError,
    RemoteProtocolError,
)
from blelock.protocol._bytes import OpenByteEnum, u16le, u32le

# --- GATT (bleak.md §3, noke.md §2: public) --------------------------------------------------

SECURE_DFU_SERVICE_UUID = "0000fe59-0000-1000-8000-00805f9b34fb"
"""Nordic's 16-bit SIG-assigned Secure DFU service 0xFE59, in 128-bit form."""
CONTROL_POINT_UUID = "8ec90001-f315-4f60-9fb8-838830daea50"
"""Write with response + notify. Every request is answered by one notification here; the
bootloader refuses control-point writes until this CCCD is enabled (ATT error 0xFD)."""
DATA_PACKET_UUID = "8ec90002-f315-4f60-9fb8-838830daea50"
"""Write without response: the object bytes, at most ATT MTU - 3 per write."""
BUTTONLESS_UNBONDED_UUID = "8ec90003-f315-4f60-9fb8-838830daea50"
"""Buttonless DFU without bonds (write + indicate, in the 0xFE59 service of the application):
the device reboots into its bootloader, which advertises at the device's address + 1."""
BUTTONLESS_BONDED_UUID = "8ec90004-f315-4f60-9fb8-838830daea50"
"""Buttonless DFU with bonds: the bootloader keeps the device's address (and its bond)."""
LEGACY_DFU_SERVICE_UUID = "00001530-1212-efde-1523-785feabcd123"
"""Nordic legacy DFU (nRF5 SDK ≤ 11), seen on older Nokē parts. Identified, not spoken."""
LEGACY_DFU_CONTROL_POINT_UUID = "00001531-1212-efde-1523-785feabcd123"

# --- Vendor limits: every number the protocol imposes, in one place ---------------------------

INIT_COMMAND_MAX_SIZE = 512
"""Largest command object (init packet) the bootloader stores: ``INIT_COMMAND_MAX_SIZE`` in nRF5
SDK 15.3 ``nrf_dfu_types.h``; a bigger Create is refused with INSUFFICIENT_RESOURCES."""
DATA_OBJECT_MAX_SIZE = 4096
"""Largest data object on nRF52: one flash page (``DATA_OBJECT_MAX_SIZE = CODE_PAGE_SIZE``). The
bootloader reports it in Select; the planner uses what the bootloader says, not this."""
BOOTLOADER_MAX_ATT_MTU = 247
"""``NRF_SDH_BLE_GATT_MAX_MTU_SIZE`` in the SDK's BLE bootloader configurations: the bootloader
negotiates no larger MTU, so a data packet carries at most 244 bytes."""
MAX_PACKET_SIZE = BOOTLOADER_MAX_ATT_MTU - 3
MIN_PACKET_SIZE = 20
"""The default ATT MTU (23) minus the 3-byte ATT header: what every BLE link can carry."""
RESPONSE_TIMEOUT_S = 20.0
"""nrfutil's ``DEFAULT_TIMEOUT`` for every control-point response (bleak.md §3 step 5). Flash
erase on Create and the hash check on the last Execute are the slow ones."""
DEFAULT_PRN = 0
"""nrfutil's default: no packet receipt notifications, one CRC check per object."""

# Our own limits (invented, stated here so they are found): sanity bounds on user input.
MAX_IMAGE_SIZE = 1024 * 1024
"""No nRF52 application is larger than the chip's 1 MiB flash; refuse bigger images early."""
MAX_PACKAGE_SIZE = 4 * 1024 * 1024
"""A package is an image plus a few hundred bytes; this bounds what is read into memory."""
MAX_MANIFEST_SIZE = 64 * 1024
MAX_OBJECT_ATTEMPTS = 3
"""How often the planner sends one object before giving up on a link that keeps corrupting it
(our number: a retry costs at most one object, 4 KiB, and a rerun resumes anyway)."""


class Opcode(enum.IntEnum):
    """Control-point opcodes (nrfutil ``DfuTransport.OP_CODE``)."""

    CREATE = 0x01
    SET_PRN = 0x02
    CALCULATE_CHECKSUM = 0x03
    EXECUTE = 0x04
    SELECT = 0x06
    RESPONSE = 0x60


class ObjectType(enum.IntEnum):
    COMMAND = 0x01
    """The init packet."""
    DATA = 0x02
    """The firmware image."""


class ResultCode(OpenByteEnum):
    """Byte 2 of a response (nrfutil ``RES_CODE``; SDK 15.3 ``nrf_dfu_result_t``)."""

    INVALID_CODE = 0x00
    SUCCESS = 0x01
    NOT_SUPPORTED = 0x02
    INVALID_PARAMETER = 0x03
    INSUFFICIENT_RESOURCES = 0x04
    INVALID_OBJECT = 0x05
    INVALID_SIGNATURE = 0x06
    """Listed by nrfutil; SDK 15.3 never sends it (a bad signature is INVALID_OBJECT)."""
    UNSUPPORTED_TYPE = 0x07
    OPERATION_NOT_PERMITTED = 0x08
    OPERATION_FAILED = 0x0A
    EXTENDED_ERROR = 0x0B
    """Followed by one :class:`ExtendedError` byte."""


class ExtendedError(OpenByteEnum):
    """The byte after EXTENDED_ERROR (nrfutil ``EXT_ERROR_CODE``, SDK ``NRF_DFU_EXT_ERROR_*``)."""

    NO_ERROR = 0x00
    INVALID_ERROR_CODE = 0x01
    WRONG_COMMAND_FORMAT = 0x02
    UNKNOWN_COMMAND = 0x03
    INIT_COMMAND_INVALID = 0x04
    FW_VERSION_FAILURE = 0x05
    HW_VERSION_FAILURE = 0x06
    SD_VERSION_FAILURE = 0x07
    SIGNATURE_MISSING = 0x08
    WRONG_HASH_TYPE = 0x09
    HASH_FAILED = 0x0A
    WRONG_SIGNATURE_TYPE = 0x0B
    VERIFICATION_FAILED = 0x0C
    INSUFFICIENT_SPACE = 0x0D
    FW_ALREADY_PRESENT = 0x0E


_RESULT_TEXT: dict[int, str] = {
    ResultCode.INVALID_CODE: "the bootloader did not understand the request",
    ResultCode.SUCCESS: "success",
    ResultCode.NOT_SUPPORTED: "the bootloader does not support this request",
    ResultCode.INVALID_PARAMETER: "the bootloader refused a parameter (object size or alignment)",
    ResultCode.INSUFFICIENT_RESOURCES: "the image or object is too large for this bootloader",
    ResultCode.INVALID_OBJECT: "the bootloader refused the init packet (it does not decode, or "
    "its signature does not verify with the lock's trusted key)",
    ResultCode.INVALID_SIGNATURE: "the signature does not verify",
    ResultCode.UNSUPPORTED_TYPE: "the bootloader does not support this object type",
    ResultCode.OPERATION_NOT_PERMITTED: "the bootloader does not permit this now (out of order, "
    "or an object incomplete)",
    ResultCode.OPERATION_FAILED: "the bootloader failed to carry out the request",
}

_EXTENDED_TEXT: dict[int, str] = {
    ExtendedError.NO_ERROR: "no detail given",
    ExtendedError.INVALID_ERROR_CODE: "the bootloader reported an invalid error code",
    ExtendedError.WRONG_COMMAND_FORMAT: "the request was malformed",
    ExtendedError.UNKNOWN_COMMAND: "the bootloader does not know this request",
    ExtendedError.INIT_COMMAND_INVALID: "the init packet is invalid (firmware type or size)",
    ExtendedError.FW_VERSION_FAILURE: "the package is older than the firmware on the lock",
    ExtendedError.HW_VERSION_FAILURE: "the package is for other hardware",
    ExtendedError.SD_VERSION_FAILURE: "the package needs another SoftDevice",
    ExtendedError.SIGNATURE_MISSING: "the package is not signed",
    ExtendedError.WRONG_HASH_TYPE: "the package uses a hash the bootloader does not support",
    ExtendedError.HASH_FAILED: "the bootloader could not hash the image",
    ExtendedError.WRONG_SIGNATURE_TYPE: "the package uses a signature type the bootloader "
    "does not support",
    ExtendedError.VERIFICATION_FAILED: "the received image does not match the init packet's "
    "hash (corrupted in transfer or truncated)",
    ExtendedError.INSUFFICIENT_SPACE: "the image does not fit in the lock's flash",
    ExtendedError.FW_ALREADY_PRESENT: "this firmware is already on the lock",
}


def explain(result: ResultCode, extended: ExtendedError | None = None) -> str:
    """A sentence for a refusal, for the user."""
    if result is ResultCode.EXTENDED_ERROR and extended is not None:
        return _EXTENDED_TEXT.get(extended, f"extended error 0x{extended.value:02X}")
    return _RESULT_TEXT.get(result, f"result 0x{result.value:02X}")


# --- control point: requests ------------------------------------------------------------------


def _u32(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise LocalProtocolError(f"{what} {value} does not fit in 32 bits")
    return value.to_bytes(4, "little")


def encode_create(object_type: ObjectType, size: int) -> bytes:
    return bytes([Opcode.CREATE, object_type]) + _u32(size, "object size")


def encode_set_prn(prn: int) -> bytes:
    if not 0 <= prn <= 0xFFFF:
        raise LocalProtocolError(f"PRN {prn} is outside 0-65535")
    return bytes([Opcode.SET_PRN]) + prn.to_bytes(2, "little")


def encode_calc_checksum() -> bytes:
    return bytes([Opcode.CALCULATE_CHECKSUM])


def encode_execute() -> bytes:
    return bytes([Opcode.EXECUTE])


def encode_select(object_type: ObjectType) -> bytes:
    return bytes([Opcode.SELECT, object_type])


@dataclass(frozen=True, slots=True)
class CreateRequest:
    object_type: int
    size: int


@dataclass(frozen=True, slots=True)
class SetPrnRequest:
    prn: int


@dataclass(frozen=True, slots=True)
class CalcChecksumRequest:
    pass


@dataclass(frozen=True, slots=True)
class ExecuteRequest:
    pass


@dataclass(frozen=True, slots=True)
class SelectRequest:
    object_type: int


@dataclass(frozen=True, slots=True)
class UnknownRequest:
    """An opcode this module does not speak (protocol version, ping, abort, …)."""

    opcode: int
    payload: bytes


Request = (
    CreateRequest
    | SetPrnRequest
    | CalcChecksumRequest
    | ExecuteRequest
    | SelectRequest
    | UnknownRequest
)

_REQUEST_LENGTHS = {
    Opcode.CREATE: 6,
    Opcode.SET_PRN: 3,
    Opcode.CALCULATE_CHECKSUM: 1,
    Opcode.EXECUTE: 1,
    Opcode.SELECT: 2,
}


def decode_request(data: bytes) -> Request:
    """A control-point write, as the bootloader reads it. Object types stay raw ints: an unknown
    type is the bootloader's to refuse (INVALID_OBJECT), not a decoding failure."""
    if not data:
        raise RemoteProtocolError("empty control-point write")
    opcode = data[0]
    if opcode not in _REQUEST_LENGTHS:
        return UnknownRequest(opcode, bytes(data[1:]))
    expected = _REQUEST_LENGTHS[Opcode(opcode)]
    if len(data) != expected:
        raise RemoteProtocolError(
            f"{Opcode(opcode).name} request is {len(data)} bytes, expected {expected}"
        )
    if opcode == Opcode.CREATE:
        return CreateRequest(data[1], u32le(data, 2))
    if opcode == Opcode.SET_PRN:
        return SetPrnRequest(u16le(data, 1))
    if opcode == Opcode.SELECT:
        return SelectRequest(data[1])
    if opcode == Opcode.CALCULATE_CHECKSUM:
        return CalcChecksumRequest()
    return ExecuteRequest()


# --- control point: responses -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelectResponse:
    max_size: int
    offset: int
    crc: int
    request: ClassVar[Opcode] = Opcode.SELECT

    def encode(self) -> bytes:
        return _header(Opcode.SELECT, ResultCode.SUCCESS) + struct.pack(
            "<III", self.max_size, self.offset, self.crc
        )


@dataclass(frozen=True, slots=True)
class ChecksumResponse:
    """The answer to CalcChecksum, and also the unsolicited packet receipt notification."""

    offset: int
    crc: int
    request: ClassVar[Opcode] = Opcode.CALCULATE_CHECKSUM

    def encode(self) -> bytes:
        return _header(Opcode.CALCULATE_CHECKSUM, ResultCode.SUCCESS) + struct.pack(
            "<II", self.offset, self.crc
        )


@dataclass(frozen=True, slots=True)
class Success:
    """Create, SetPRN and Execute succeed with no payload."""

    request: Opcode

    def encode(self) -> bytes:
        return _header(self.request, ResultCode.SUCCESS)


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    request: Opcode
    result: ResultCode
    extended: ExtendedError | None = None
    """Present exactly when ``result`` is EXTENDED_ERROR."""

    def __post_init__(self) -> None:
        if self.result is ResultCode.SUCCESS:
            raise LocalProtocolError("an error response cannot carry SUCCESS")
        if (self.result is ResultCode.EXTENDED_ERROR) != (self.extended is not None):
            raise LocalProtocolError("an extended error code goes with EXTENDED_ERROR only")

    def encode(self) -> bytes:
        tail = b"" if self.extended is None else bytes([self.extended])
        return _header(self.request, self.result) + tail

    @property
    def message(self) -> str:
        return explain(self.result, self.extended)


Response = SelectResponse | ChecksumResponse | Success | ErrorResponse


def _header(request: Opcode, result: ResultCode) -> bytes:
    return bytes([Opcode.RESPONSE, request, result])


def decode_response(data: bytes) -> Response:
    """A control-point notification. Raises only RemoteProtocolError."""
    if len(data) < 3:
        raise RemoteProtocolError(f"DFU response is {len(data)} bytes, expected at least 3")
    if data[0] != Opcode.RESPONSE:
        raise RemoteProtocolError(f"DFU notification starts with 0x{data[0]:02X}, not 0x60")
    if data[1] not in _REQUEST_LENGTHS:
        raise RemoteProtocolError(f"DFU response to unknown opcode 0x{data[1]:02X}")
    request, result = Opcode(data[1]), ResultCode(data[2])
    if result is ResultCode.EXTENDED_ERROR:
        _exact(data, 4, f"{request.name} extended error response")
        return ErrorResponse(request, result, ExtendedError(data[3]))
    if result is not ResultCode.SUCCESS:
        _exact(data, 3, f"{request.name} error response")
        return ErrorResponse(request, result)
    if request is Opcode.SELECT:
        _exact(data, 15, "SELECT response")
        return SelectResponse(u32le(data, 3), u32le(data, 7), u32le(data, 11))
    if request is Opcode.CALCULATE_CHECKSUM:
        _exact(data, 11, "CALCULATE_CHECKSUM response")
        return ChecksumResponse(u32le(data, 3), u32le(data, 7))
    _exact(data, 3, f"{request.name} response")
    return Success(request)


def _exact(data: bytes, length: int, what: str) -> None:
    if len(data) != length:
        raise RemoteProtocolError(f"{what} is {len(data)} bytes, expected {length}")


# --- buttonless DFU: how a Nordic application is asked into its bootloader -------------------

BUTTONLESS_ENTER_BOOTLOADER = 0x01
BUTTONLESS_RESPONSE = 0x20


class ButtonlessResult(OpenByteEnum):
    """The result byte of a buttonless response (SDK ``ble_dfu_buttonless_rsp_code_t``)."""

    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    OPERATION_FAILED = 0x04
    INVALID_ADV_NAME = 0x05
    BUSY = 0x06
    NOT_BONDED = 0x07


def encode_enter_bootloader() -> bytes:
    return bytes([BUTTONLESS_ENTER_BOOTLOADER])


def decode_buttonless_response(data: bytes) -> ButtonlessResult:
    """The indication answering Enter bootloader: ``20 01 <result>``. RemoteProtocolError on
    anything else."""
    if len(data) != 3 or data[0] != BUTTONLESS_RESPONSE:
        raise RemoteProtocolError(f"buttonless response {bytes(data).hex()} is not 20 <op> <res>")
    if data[1] != BUTTONLESS_ENTER_BOOTLOADER:
        raise RemoteProtocolError(f"buttonless response to opcode 0x{data[1]:02X}, not 0x01")
    return ButtonlessResult(data[2])


def bootloader_address_after(mac: str, characteristic: str) -> str:
    """Where the bootloader advertises after buttonless entry through ``characteristic``."""
    if characteristic.lower() == BUTTONLESS_BONDED_UUID:
        if not _MAC.fullmatch(mac):
            raise LocalProtocolError(f"{mac!r} is not a MAC address like AA:BB:CC:DD:EE:FF")
        return mac.upper()
    if characteristic.lower() == BUTTONLESS_UNBONDED_UUID:
        return bootloader_address(mac)
    raise LocalProtocolError(f"{characteristic} is not a buttonless DFU characteristic")


# --- addresses and advertisements -------------------------------------------------------------

_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


def bootloader_address(mac: str) -> str:
    """Where an unbonded Nordic bootloader advertises: the application's address with the last
    byte plus one, wrapping (nrfutil's buttonless rule, bleak.md §3)."""
    if not _MAC.fullmatch(mac):
        raise LocalProtocolError(f"{mac!r} is not a MAC address like AA:BB:CC:DD:EE:FF")
    last = (int(mac[-2:], 16) + 1) % 256
    return f"{mac[:-2].upper()}{last:02X}"


def dfu_service_kind(service_uuids: Iterable[str]) -> Literal["secure", "legacy"] | None:
    """Which DFU bootloader an advertisement announces, from its service UUIDs (lowercase
    128-bit, as bleak gives them). ``"legacy"`` is not supported; say so to the user."""
    uuids = {uuid.lower() for uuid in service_uuids}
    if SECURE_DFU_SERVICE_UUID in uuids:
        return "secure"
    if LEGACY_DFU_SERVICE_UUID in uuids:
        return "legacy"
    return None


# --- versions (invented encoding: Nokē's real values are not public) --------------------------


def hardware_version(code: str) -> int:
    """The init packet's ``hw_version`` for a Nokē hardware code (noke.md §1.4): its ASCII bytes
    as a big-endian integer, so ``"4I"`` is 0x3449 and reads back without a table."""
    raw = code.encode("ascii", errors="replace")
    if not 2 <= len(raw) <= 4 or not raw.isalnum():
        raise LocalProtocolError(f"hardware code {code!r} is not 2-4 letters or digits")
    return int.from_bytes(raw, "big")


def hardware_name(value: int) -> str:
    """Inverse of :func:`hardware_version`; a hex number for anything that is not a code (one
    byte is never read as a code: ``52`` is nrfutil's nRF52 convention, not ``"4"``)."""
    raw = value.to_bytes(4, "big").lstrip(b"\x00") if 0 <= value <= 0xFFFFFFFF else b""
    if len(raw) >= 2 and raw.isalnum():
        return raw.decode("ascii")
    return f"0x{value:08X}"


def version_number(major: int, minor: int) -> int:
    """The init packet's ``fw_version`` for Nokē's ``major.minor`` (the advertised bytes, noke.md
    §1.3): ``major << 16 | minor``, so versions order as numbers do."""
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
        raise LocalProtocolError(f"version {major}.{minor} is out of range")
    return major << 16 | minor


def version_text(number: int) -> str:
    return f"{number >> 16}.{number & 0xFFFF}"


def parse_version_text(text: str) -> int:
    major, dot, minor = text.strip().partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        raise LocalProtocolError(f"version {text!r} is not MAJOR.MINOR")
    return version_number(int(major), int(minor))
