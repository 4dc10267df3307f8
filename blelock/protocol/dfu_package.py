"""The Nordic DFU package (zip + manifest.json + init packet + image) and the init packet, with
the checks a secure bootloader makes. Sans-I/O but for :func:`read_package`, which accepts a path
for convenience (call it off the event loop). What is public and what is a stand-in (the init
packet): see :mod:`blelock.protocol.dfu`."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from blelock.errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    UsageError,
)
from blelock.protocol._bytes import OpenByteEnum, crc32
from blelock.protocol.dfu import (
    INIT_COMMAND_MAX_SIZE,
    MAX_IMAGE_SIZE,
    MAX_MANIFEST_SIZE,
    MAX_PACKAGE_SIZE,
    ErrorResponse,
    ExtendedError,
    Opcode,
    ResultCode,
    _u32,
    hardware_name,
    version_text,
)

__all__ = [
    "INIT_PACKET_MAGIC",
    "MANIFEST_NAME",
    "DfuPackage",
    "FirmwareType",
    "HashType",
    "InitCommand",
    "InitPacket",
    "Refusal",
    "SignatureType",
    "encode_init_packet",
    "encode_package",
    "load_public_key",
    "parse_init_packet",
    "read_package",
    "validate_image",
    "validate_init_packet",
    "verify_init_packet",
]


# --- the init packet (a documented stand-in for dfu-cc.proto) ---------------------------------


class FirmwareType(OpenByteEnum):
    """dfu-cc.proto ``FwType`` values. This bootloader stand-in accepts APPLICATION only."""

    APPLICATION = 0
    SOFTDEVICE = 1
    BOOTLOADER = 2
    SOFTDEVICE_BOOTLOADER = 3
    EXTERNAL_APPLICATION = 4


class HashType(OpenByteEnum):
    """dfu-cc.proto ``HashType`` values."""

    NO_HASH = 0
    CRC = 1
    SHA128 = 2
    SHA256 = 3
    SHA512 = 4


class SignatureType(OpenByteEnum):
    """dfu-cc.proto ``SignatureType`` values."""

    ECDSA_P256_SHA256 = 0
    ED25519 = 1


INIT_PACKET_MAGIC = b"BLDI"
"""Marks the stand-in layout ("blelock DFU init"). A real nrfutil ``.dat`` starts with a
protobuf tag instead, so it is told apart rather than misread."""
_INIT_LAYOUT_VERSION = 1
_COMMAND = struct.Struct("<4sBBBxIII32s")
_SIGNATURE_SIZE = 64
_TRAILER = struct.Struct("<BB")


@dataclass(frozen=True, slots=True)
class InitCommand:
    """The signed part of an init packet: what the bootloader checks before taking an image.

    Layout (little-endian, 52 bytes; offsets in bytes)::

        0   4  magic "BLDI"
        4   1  layout version (1)
        5   1  fw_type    (FirmwareType, dfu-cc.proto values: 0 = application)
        6   1  hash_type  (HashType: 3 = SHA-256)
        7   1  reserved, 0
        8   4  hw_version (u32)
        12  4  fw_version (u32)
        16  4  fw_size    (u32, bytes of the image)
        20  32 fw_hash    (SHA-256 of the image, in hashlib's byte order; Nordic stores it
                           reversed, which buys nothing here)

    An :class:`InitPacket` appends ``signature_type u8, signature_length u8, signature``: the
    signature is ECDSA P-256 over SHA-256 of these 52 bytes, **raw r || s** (32 + 32 bytes,
    big-endian, IEEE P1363), and length 0 means unsigned. As in dfu-cc.proto, the signature type
    sits outside the signed bytes.
    """

    hw_version: int
    fw_version: int
    fw_size: int
    fw_hash: bytes
    fw_type: FirmwareType = FirmwareType.APPLICATION
    hash_type: HashType = HashType.SHA256

    def encode(self) -> bytes:
        if len(self.fw_hash) != 32:
            raise LocalProtocolError(f"fw_hash is {len(self.fw_hash)} bytes, expected 32")
        for name in ("hw_version", "fw_version", "fw_size"):
            _u32(getattr(self, name), name)
        return _COMMAND.pack(
            INIT_PACKET_MAGIC,
            _INIT_LAYOUT_VERSION,
            self.fw_type,
            self.hash_type,
            self.hw_version,
            self.fw_version,
            self.fw_size,
            self.fw_hash,
        )

    @classmethod
    def for_image(cls, image: bytes, *, hw_version: int, fw_version: int) -> InitCommand:
        return cls(
            hw_version=hw_version,
            fw_version=fw_version,
            fw_size=len(image),
            fw_hash=hashlib.sha256(image).digest(),
        )


@dataclass(frozen=True, slots=True)
class InitPacket:
    command: InitCommand
    signature_type: SignatureType
    signature: bytes
    """Raw r || s (64 bytes), or empty when the packet is unsigned."""
    signed_bytes: bytes
    """The 52 bytes the signature covers."""
    raw: bytes

    @property
    def signed(self) -> bool:
        return bool(self.signature)


def encode_init_packet(
    command: InitCommand,
    private_key: ec.EllipticCurvePrivateKey | None,
    *,
    signature_type: SignatureType = SignatureType.ECDSA_P256_SHA256,
) -> bytes:
    """The ``.dat`` file. Signing is deterministic (RFC 6979), so the same key and command give
    the same bytes: reproducible packages. ``private_key=None`` makes an unsigned packet."""
    body = command.encode()
    if private_key is None:
        return body + _TRAILER.pack(signature_type, 0)
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise LocalProtocolError(
            f"init packets are signed with P-256, not {private_key.curve.name}"
        )
    der = private_key.sign(body, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return body + _TRAILER.pack(signature_type, len(signature)) + signature


def parse_init_packet(data: bytes) -> InitPacket:
    """Raises only RemoteProtocolError. Unknown enum values decode (the bootloader refuses them
    with the right code); only a broken layout fails here."""
    data = bytes(data)
    minimum = _COMMAND.size + _TRAILER.size
    if data[:1] in (b"\x0a", b"\x12"):  # protobuf field 1 or 2, length-delimited
        raise RemoteProtocolError(
            "this looks like a Nordic protobuf init packet (dfu-cc.proto); blelock speaks only "
            "its own stand-in layout (see blelock/protocol/dfu.py)"
        )
    if len(data) < minimum:
        raise RemoteProtocolError(f"init packet is {len(data)} bytes, expected at least {minimum}")
    magic, layout, fw_type, hash_type, hw, fw, size, digest = _COMMAND.unpack_from(data)
    if magic != INIT_PACKET_MAGIC:
        raise RemoteProtocolError(f"init packet does not start with {INIT_PACKET_MAGIC!r}")
    if layout != _INIT_LAYOUT_VERSION:
        raise RemoteProtocolError(f"init packet layout {layout} is not supported (only 1)")
    signature_type, length = _TRAILER.unpack_from(data, _COMMAND.size)
    if length not in (0, _SIGNATURE_SIZE):
        raise RemoteProtocolError(f"init packet signature is {length} bytes, expected 0 or 64")
    if len(data) != minimum + length:
        raise RemoteProtocolError(
            f"init packet is {len(data)} bytes, its fields say {minimum + length}"
        )
    command = InitCommand(
        hw_version=hw,
        fw_version=fw,
        fw_size=size,
        fw_hash=digest,
        fw_type=FirmwareType(fw_type),
        hash_type=HashType(hash_type),
    )
    return InitPacket(
        command=command,
        signature_type=SignatureType(signature_type),
        signature=data[minimum:],
        signed_bytes=data[: _COMMAND.size],
        raw=data,
    )


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """A trusted signing key from PEM (SubjectPublicKeyInfo); must be P-256."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise LocalProtocolError("the signing key is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise LocalProtocolError("the signing key is not an ECDSA P-256 public key")
    return key


def verify_init_packet(init: InitPacket, public_key: ec.EllipticCurvePublicKey) -> bool:
    """Whether ``init`` carries a valid ECDSA P-256/SHA-256 signature by ``public_key``."""
    if (
        not init.signed
        or init.signature_type is not SignatureType.ECDSA_P256_SHA256
        or not isinstance(public_key.curve, ec.SECP256R1)
    ):
        return False
    r = int.from_bytes(init.signature[:32], "big")
    s = int.from_bytes(init.signature[32:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), init.signed_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# --- the bootloader's checks (used by the simulated bootloader) -------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a bootloader says no, with the codes it says it with."""

    result: ResultCode
    extended: ExtendedError | None
    reason: str

    def response(self, request: Opcode) -> bytes:
        return ErrorResponse(request, self.result, self.extended).encode()


def _ext(code: ExtendedError, reason: str) -> Refusal:
    return Refusal(ResultCode.EXTENDED_ERROR, code, reason)


def validate_init_packet(
    data: bytes,
    *,
    public_key: ec.EllipticCurvePublicKey,
    hw_version: int,
    fw_version: int,
    max_image_size: int,
) -> InitPacket | Refusal:
    """What a secure bootloader checks when the init packet's command object is executed, in
    SDK 15.3's order (``nrf_dfu_validation_init_cmd_execute`` → ``prevalidate``), each failure
    with the code that SDK answers: undecodable → INVALID_OBJECT; no signature → SIGNATURE_MISSING;
    another signature type → WRONG_SIGNATURE_TYPE; a signature that does not verify →
    INVALID_OBJECT; not an application → INIT_COMMAND_INVALID; other hardware →
    HW_VERSION_FAILURE; older than ``fw_version`` (equal is allowed) → FW_VERSION_FAILURE;
    not SHA-256 → WRONG_HASH_TYPE; size 0 → INIT_COMMAND_INVALID; larger than the bank →
    INSUFFICIENT_RESOURCES."""
    try:
        init = parse_init_packet(data)
    except ProtocolError as exc:
        return Refusal(ResultCode.INVALID_OBJECT, None, f"init packet does not decode: {exc}")
    command = init.command
    if not init.signed:
        return _ext(ExtendedError.SIGNATURE_MISSING, "init packet is not signed")
    if init.signature_type is not SignatureType.ECDSA_P256_SHA256:
        return _ext(
            ExtendedError.WRONG_SIGNATURE_TYPE, f"signature type {init.signature_type.name}"
        )
    if not verify_init_packet(init, public_key):
        return Refusal(
            ResultCode.INVALID_OBJECT, None, "signature does not verify with the trusted key"
        )
    if command.fw_type is not FirmwareType.APPLICATION:
        return _ext(ExtendedError.INIT_COMMAND_INVALID, f"firmware type {command.fw_type.name}")
    if command.hw_version != hw_version:
        return _ext(
            ExtendedError.HW_VERSION_FAILURE,
            f"package for hardware {hardware_name(command.hw_version)}, "
            f"this is {hardware_name(hw_version)}",
        )
    if command.fw_version < fw_version:
        return _ext(
            ExtendedError.FW_VERSION_FAILURE,
            f"version {version_text(command.fw_version)} is older than {version_text(fw_version)}",
        )
    if command.hash_type is not HashType.SHA256:
        return _ext(ExtendedError.WRONG_HASH_TYPE, f"hash type {command.hash_type.name}")
    if command.fw_size == 0:
        return _ext(ExtendedError.INIT_COMMAND_INVALID, "firmware size 0")
    if command.fw_size > max_image_size:
        return Refusal(
            ResultCode.INSUFFICIENT_RESOURCES,
            None,
            f"image of {command.fw_size} bytes does not fit in {max_image_size}",
        )
    return init


def validate_image(init: InitPacket, image: bytes) -> Refusal | None:
    """The check on the last Execute (SDK ``postvalidate``): the received image's SHA-256 must be
    the init packet's, else VERIFICATION_FAILED."""
    if len(image) != init.command.fw_size or hashlib.sha256(image).digest() != init.command.fw_hash:
        return _ext(ExtendedError.VERIFICATION_FAILED, "image hash does not match the init packet")
    return None


# --- the package: the zip nrfutil makes -------------------------------------------------------

MANIFEST_NAME = "manifest.json"
_OTHER_KINDS = ("softdevice", "bootloader", "softdevice_bootloader")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no build time in the bytes
# zipfile and zlib report a damaged archive in many ways; all mean "this file is not usable".
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    struct.error,
    IndexError,
    KeyError,
)


@dataclass(frozen=True, slots=True)
class DfuPackage:
    """A validated application update: init packet and image, consistent with each other."""

    init_packet: bytes
    firmware: bytes
    init: InitPacket
    bin_file: str
    dat_file: str
    source: str = field(default="the package", compare=False)

    @property
    def hardware(self) -> str:
        return hardware_name(self.init.command.hw_version)

    @property
    def version(self) -> str:
        return version_text(self.init.command.fw_version)

    @property
    def size(self) -> int:
        return len(self.firmware)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.firmware).hexdigest()

    @property
    def crc32(self) -> int:
        return crc32(self.firmware)


def encode_package(init_packet: bytes, firmware: bytes, *, stem: str) -> bytes:
    """A DFU zip as nrfutil lays it out (``manifest.json``, ``<stem>.bin``, ``<stem>.dat``).
    Byte-identical for identical input: fixed dates and attributes, and entries *stored*
    (the image does not compress, and stored bytes do not depend on the zlib version)."""
    bin_name, dat_name = f"{stem}.bin", f"{stem}.dat"
    manifest = {"manifest": {"application": {"bin_file": bin_name, "dat_file": dat_name}}}
    entries = (
        (MANIFEST_NAME, (json.dumps(manifest, indent=4) + "\n").encode()),
        (bin_name, firmware),
        (dat_name, init_packet),
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.create_system = 3  # Unix, whatever builds it
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def read_package(source: bytes | str | os.PathLike[str]) -> DfuPackage:
    """Read and check a DFU zip given as bytes or a path. Every problem is a UsageError naming the
    package, the member and what is wrong: the package is the user's input."""
    if isinstance(source, bytes | bytearray | memoryview):
        data, label = bytes(source), "the package"
    else:
        label = os.fspath(source)
        try:
            with open(source, "rb") as file:
                data = file.read(MAX_PACKAGE_SIZE + 1)
        except OSError as exc:
            raise UsageError(f"cannot read DFU package {label}: {exc.strerror or exc}") from None
    if len(data) > MAX_PACKAGE_SIZE:
        raise UsageError(f"{label} is larger than {MAX_PACKAGE_SIZE} bytes: not a DFU package")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            app = _manifest_application(archive, label)
            dat_name, bin_name = app["dat_file"], app["bin_file"]
            init_packet = _member(archive, dat_name, INIT_COMMAND_MAX_SIZE, label)
            firmware = _member(archive, bin_name, MAX_IMAGE_SIZE, label)
    except zipfile.BadZipFile as exc:
        raise UsageError(
            f"{label} is not a usable zip file ({exc}); a DFU package is the zip nrfutil makes: "
            "manifest.json, an init packet (.dat) and an image (.bin)"
        ) from None
    except _ZIP_ERRORS as exc:
        raise UsageError(f"{label} is a damaged zip file ({type(exc).__name__}: {exc})") from None
    try:
        init = parse_init_packet(init_packet)
    except ProtocolError as exc:
        raise UsageError(f"{label}: {dat_name} is not an init packet: {exc.message}") from None
    _check_consistent(init, firmware, label, bin_name)
    return DfuPackage(init_packet, firmware, init, bin_name, dat_name, source=label)


def _manifest_application(archive: zipfile.ZipFile, label: str) -> dict[str, str]:
    raw = _member(archive, MANIFEST_NAME, MAX_MANIFEST_SIZE, label)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UsageError(f"{label}: {MANIFEST_NAME} is not valid JSON ({exc})") from None
    manifest = document.get("manifest") if isinstance(document, dict) else None
    if not isinstance(manifest, dict):
        raise UsageError(f'{label}: {MANIFEST_NAME} has no "manifest" object')
    if others := [kind for kind in _OTHER_KINDS if kind in manifest]:
        raise UsageError(
            f"{label} updates the {', '.join(others)}: only application packages are supported"
        )
    application = manifest.get("application")
    if not isinstance(application, dict):
        raise UsageError(f'{label}: {MANIFEST_NAME} has no "manifest.application" object')
    names: dict[str, str] = {}
    for key in ("bin_file", "dat_file"):
        value = application.get(key)
        if not isinstance(value, str) or not value:
            raise UsageError(f"{label}: manifest.application.{key} is missing or not a file name")
        names[key] = value
    return names


def _member(archive: zipfile.ZipFile, name: str, limit: int, label: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise UsageError(f"{label} has no {name}") from None
    if info.file_size > limit:
        raise UsageError(f"{label}: {name} is {info.file_size} bytes, more than {limit}")
    return archive.read(info)  # checks the entry's CRC-32


def _check_consistent(init: InitPacket, firmware: bytes, label: str, bin_name: str) -> None:
    command = init.command
    if command.fw_type is not FirmwareType.APPLICATION:
        raise UsageError(f"{label}: the init packet is for a {command.fw_type.name}, not an app")
    if command.hash_type is not HashType.SHA256:
        raise UsageError(
            f"{label}: the init packet's hash is {command.hash_type.name}, not SHA-256"
        )
    if not firmware:
        raise UsageError(f"{label}: {bin_name} is empty")
    if len(firmware) != command.fw_size:
        raise UsageError(
            f"{label}: {bin_name} is {len(firmware)} bytes but its init packet says "
            f"{command.fw_size}: the image is truncated or belongs to another package"
        )
    if hashlib.sha256(firmware).digest() != command.fw_hash:
        raise UsageError(
            f"{label}: {bin_name} does not match its init packet's SHA-256: the image is "
            "corrupted or belongs to another package"
        )
