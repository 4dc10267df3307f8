"""Nordic's DFU init packet (the ``.dat``), in Nordic's real format, and the checks a Secure DFU
bootloader makes of it and of the image it describes.

The format is the protobuf schema ``dfu-cc.proto`` (``Packet`` / ``SignedCommand`` / ``Command``
/ ``InitCommand``), spoken through the ``protobuf`` runtime and the module generated from
``blelock/protocol/_dfu_cc/dfu_cc.proto`` (``scripts/gen_dfu_cc.py``); nothing here touches the
wire format by hand. That module is imported on first use, not with this module, so that code
which only names :class:`InitPacket` in a hint (an unlock, ``blelock --version``) never loads
protobuf.

What nrfutil and the nRF5 SDK do, followed exactly (shared/research/dfu-nordic.md, checked
against packages nrfutil 6.1.7 made, in ``tests/fixtures/nrfutil/``):

* the signature is ECDSA P-256 / SHA-256 over the serialized ``InitCommand`` alone (not the
  ``Command`` around it), stored as raw r‖s with **each 32-byte half little-endian**;
* the image hash is the SHA-256 of the image stored **reversed** (little-endian);
* ``boot_validation`` VALIDATE_ECDSA_P256_SHA256 carries a signature of the image in the same
  r‖s little-endian form; VALIDATE_GENERATED_CRC and VALIDATE_GENERATED_SHA256 carry nothing (the
  bootloader computes them);
* nrfutil writes every InitCommand field explicitly, zero sizes and ``is_debug = false``
  included, and ``fw_version = 0xFFFFFFFF`` for a SoftDevice; :meth:`InitCommand.for_image`
  does the same, so blelock's InitCommand bytes equal nrfutil's for the same inputs.

One simplification, stated: the bootloader verifies the signature over the InitCommand bytes as
they sit in the packet; this module re-serializes the decoded InitCommand instead, which gives
the same bytes for every packet encoded canonically (nrfutil's and blelock's are: a test checks
it) and may differ only for a hand-made non-canonical encoding.

Sans-I/O; decoders raise only RemoteProtocolError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from blelock.errors import LocalProtocolError, RemoteProtocolError
from blelock.protocol._bytes import OpenByteEnum
from blelock.protocol.dfu import ErrorResponse, ExtendedError, Opcode, ResultCode

# The generated module is imported inside the functions that use it: where DFU runs.
if TYPE_CHECKING:
    from blelock.protocol._dfu_cc import dfu_cc_pb2

__all__ = [
    "FW_VERSION_NONE",
    "SD_REQ_ANY",
    "SIGNATURE_SIZE",
    "BootValidation",
    "BootloaderState",
    "FirmwareType",
    "HashType",
    "InitCommand",
    "InitPacket",
    "Refusal",
    "SignatureType",
    "ValidationType",
    "encode_init_packet",
    "load_public_key",
    "parse_init_packet",
    "sign_image",
    "validate_image",
    "validate_init_packet",
    "verify_init_packet",
]


class FirmwareType(OpenByteEnum):
    """dfu-cc.proto ``FwType``."""

    APPLICATION = 0
    SOFTDEVICE = 1
    BOOTLOADER = 2
    SOFTDEVICE_BOOTLOADER = 3
    EXTERNAL_APPLICATION = 4


class HashType(OpenByteEnum):
    """dfu-cc.proto ``HashType``."""

    NO_HASH = 0
    CRC = 1
    SHA128 = 2
    SHA256 = 3
    SHA512 = 4


class SignatureType(OpenByteEnum):
    """dfu-cc.proto ``SignatureType``."""

    ECDSA_P256_SHA256 = 0
    ED25519 = 1


class ValidationType(OpenByteEnum):
    """dfu-cc.proto ``ValidationType``: how the bootloader checks the image at every boot."""

    NO_VALIDATION = 0
    VALIDATE_GENERATED_CRC = 1
    VALIDATE_GENERATED_SHA256 = 2
    VALIDATE_ECDSA_P256_SHA256 = 3


SD_REQ_ANY = 0xFFFE
"""``sd_req`` value meaning "any SoftDevice" (nrfutil: for debugging only)."""
FW_VERSION_NONE = 0xFFFFFFFF
"""What nrfutil writes as ``fw_version`` of a SoftDevice image (it has none)."""
SIGNATURE_SIZE = 64
"""Raw r‖s of ECDSA P-256."""
_HASH_SIZE = 32


@dataclass(frozen=True, slots=True)
class BootValidation:
    type: ValidationType
    data: bytes = b""
    """The ``bytes`` field: an ECDSA signature of the image (r‖s little-endian), else empty."""


@dataclass(frozen=True, slots=True)
class InitCommand:
    """The signed part of an init packet, as decoded. A field the packet leaves out is None
    (``type``, ``fw_version``, ``hw_version``) or zero/empty (as protobuf reads it)."""

    fw_type: FirmwareType | None
    fw_version: int | None
    hw_version: int | None
    sd_req: tuple[int, ...] = ()
    sd_size: int = 0
    bl_size: int = 0
    app_size: int = 0
    hash_type: HashType = HashType.NO_HASH
    fw_hash: bytes = b""
    """As stored: for SHA-256, the digest of the image reversed (little-endian)."""
    is_debug: bool = False
    boot_validation: tuple[BootValidation, ...] = ()

    @property
    def image_size(self) -> int:
        """Bytes of the image this command describes (an SD+BL image is both)."""
        return self.sd_size + self.bl_size + self.app_size

    def hash_matches(self, image: bytes) -> bool:
        return self.hash_type is HashType.SHA256 and self.fw_hash == sha256_le(image)

    @classmethod
    def for_image(
        cls,
        image: bytes,
        *,
        hw_version: int,
        fw_version: int,
        sd_req: Sequence[int],
        fw_type: FirmwareType = FirmwareType.APPLICATION,
        is_debug: bool = False,
        boot_validation: Sequence[BootValidation] = (
            BootValidation(ValidationType.VALIDATE_GENERATED_CRC),
        ),
    ) -> InitCommand:
        """What ``nrfutil pkg generate`` writes for one image (nrfutil's defaults: CRC boot
        validation, ``is_debug`` false). SoftDevice+bootloader images need their two sizes,
        which the image alone does not tell: build those with the constructor."""
        sizes = {
            FirmwareType.APPLICATION: (0, 0, len(image)),
            FirmwareType.EXTERNAL_APPLICATION: (0, 0, len(image)),
            FirmwareType.SOFTDEVICE: (len(image), 0, 0),
            FirmwareType.BOOTLOADER: (0, len(image), 0),
        }
        if fw_type not in sizes:
            raise LocalProtocolError(f"for_image makes single images, not {fw_type.name}")
        sd_size, bl_size, app_size = sizes[fw_type]
        return cls(
            fw_type=fw_type,
            fw_version=FW_VERSION_NONE if fw_type is FirmwareType.SOFTDEVICE else fw_version,
            hw_version=hw_version,
            sd_req=tuple(sd_req),
            sd_size=sd_size,
            bl_size=bl_size,
            app_size=app_size,
            hash_type=HashType.SHA256,
            fw_hash=sha256_le(image),
            is_debug=is_debug,
            boot_validation=tuple(boot_validation),
        )

    def encode(self) -> bytes:
        """The serialized ``InitCommand``: the bytes a signature covers."""
        return self._message().SerializeToString(deterministic=True)

    def _message(self) -> dfu_cc_pb2.InitCommand:
        from blelock.protocol._dfu_cc import dfu_cc_pb2 as pb

        message = pb.InitCommand()
        if self.fw_version is not None:
            message.fw_version = _uint32(self.fw_version, "fw_version")
        if self.hw_version is not None:
            message.hw_version = _uint32(self.hw_version, "hw_version")
        message.sd_req.extend(_uint32(value, "sd_req") for value in self.sd_req)
        if self.fw_type is not None:
            message.type = pb.FwType.Value(_known(self.fw_type, pb.FwType.keys(), "firmware type"))
        message.sd_size = _uint32(self.sd_size, "sd_size")
        message.bl_size = _uint32(self.bl_size, "bl_size")
        message.app_size = _uint32(self.app_size, "app_size")
        if self.hash_type is not HashType.NO_HASH or self.fw_hash:
            message.hash.hash_type = pb.HashType.Value(
                _known(self.hash_type, pb.HashType.keys(), "hash type")
            )
            message.hash.hash = self.fw_hash
        message.is_debug = self.is_debug
        for item in self.boot_validation:
            entry = message.boot_validation.add()
            entry.type = pb.ValidationType.Value(
                _known(item.type, pb.ValidationType.keys(), "boot validation type")
            )
            entry.bytes = item.data
        return message


def _known(value: OpenByteEnum, names: list[str], what: str) -> str:
    if value.name not in names:
        raise LocalProtocolError(f"{what} {value.name} is not in dfu-cc.proto")
    return value.name


def _uint32(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFFFFFF:
        raise LocalProtocolError(f"{what} {value} does not fit in 32 bits")
    return value


def sha256_le(image: bytes) -> bytes:
    """The init packet's SHA-256 field for ``image``: the digest, reversed (Nordic's order)."""
    return hashlib.sha256(image).digest()[::-1]


@dataclass(frozen=True, slots=True)
class InitPacket:
    command: InitCommand
    signature_type: SignatureType | None
    """None: unsigned (a ``Packet.command``, not a ``Packet.signed_command``)."""
    signature: bytes
    """As stored: r‖s, each half little-endian; empty when unsigned."""
    signed_bytes: bytes
    """The serialized InitCommand the signature covers."""
    raw: bytes = field(repr=False)

    @property
    def signed(self) -> bool:
        return self.signature_type is not None


def _signature_le(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise LocalProtocolError(f"DFU signatures are P-256, not {private_key.curve.name}")
    der = private_key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "little") + s.to_bytes(32, "little")


def _verify_le(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    if len(signature) != SIGNATURE_SIZE or not isinstance(public_key.curve, ec.SECP256R1):
        return False
    r = int.from_bytes(signature[:32], "little")
    s = int.from_bytes(signature[32:], "little")
    try:
        public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_image(image: bytes, private_key: ec.EllipticCurvePrivateKey) -> BootValidation:
    """A VALIDATE_ECDSA_P256_SHA256 boot validation of ``image`` (nrfutil's
    ``--app-boot-validation VALIDATE_ECDSA_P256_SHA256``)."""
    return BootValidation(
        ValidationType.VALIDATE_ECDSA_P256_SHA256, _signature_le(private_key, image)
    )


def encode_init_packet(
    command: InitCommand,
    private_key: ec.EllipticCurvePrivateKey | None,
    *,
    signature_type: SignatureType = SignatureType.ECDSA_P256_SHA256,
) -> bytes:
    """The ``.dat``: a ``Packet`` holding a ``SignedCommand`` (or, with ``private_key=None``, an
    unsigned ``Command``). Signatures are deterministic (RFC 6979): same key and command, same
    bytes. ``signature_type`` other than ECDSA only labels the ECDSA signature (to test that a
    bootloader refuses the label)."""
    from blelock.protocol._dfu_cc import dfu_cc_pb2 as pb

    signed_bytes = command.encode()
    inner = pb.Command(op_code=pb.INIT)
    inner.init.ParseFromString(signed_bytes)  # the signed bytes, exactly, inside the packet
    packet = pb.Packet()
    if private_key is None:
        packet.command.CopyFrom(inner)
    else:
        packet.signed_command.command.CopyFrom(inner)
        packet.signed_command.signature_type = pb.SignatureType.Value(
            _known(signature_type, pb.SignatureType.keys(), "signature type")
        )
        packet.signed_command.signature = _signature_le(private_key, signed_bytes)
    return packet.SerializeToString(deterministic=True)


def parse_init_packet(data: bytes) -> InitPacket:
    """Decode a ``.dat``. Raises only RemoteProtocolError: for bytes that are not a
    ``dfu.Packet``, a packet without an INIT command, or an enum value dfu-cc.proto does not
    define where the schema requires one."""
    from google.protobuf.message import DecodeError

    from blelock.protocol._dfu_cc import dfu_cc_pb2 as pb

    raw = bytes(data)
    packet = pb.Packet()
    try:
        packet.ParseFromString(raw)
    except (DecodeError, ValueError, RecursionError, OverflowError) as exc:
        raise RemoteProtocolError(f"not a Nordic init packet (dfu.Packet): {exc}") from None
    if not packet.IsInitialized():  # a required enum holding a value the schema lacks
        raise RemoteProtocolError(
            "not a Nordic init packet (dfu.Packet): a required field is missing or holds a "
            "value dfu-cc.proto does not define"
        )
    signature_type: SignatureType | None = None
    signature = b""
    if packet.HasField("signed_command"):
        signed = packet.signed_command
        command = signed.command
        signature_type, signature = SignatureType(signed.signature_type), bytes(signed.signature)
    elif packet.HasField("command"):
        command = packet.command
    else:
        raise RemoteProtocolError("init packet holds neither a command nor a signed command")
    if not command.HasField("init") or command.op_code != pb.INIT:
        raise RemoteProtocolError("init packet's command is not an INIT command")
    init = command.init
    decoded = InitCommand(
        fw_type=FirmwareType(init.type) if init.HasField("type") else None,
        fw_version=init.fw_version if init.HasField("fw_version") else None,
        hw_version=init.hw_version if init.HasField("hw_version") else None,
        sd_req=tuple(init.sd_req),
        sd_size=init.sd_size,
        bl_size=init.bl_size,
        app_size=init.app_size,
        hash_type=HashType(init.hash.hash_type) if init.HasField("hash") else HashType.NO_HASH,
        fw_hash=bytes(init.hash.hash),
        is_debug=init.is_debug,
        boot_validation=tuple(
            BootValidation(ValidationType(item.type), bytes(item.bytes))
            for item in init.boot_validation
        ),
    )
    return InitPacket(
        command=decoded,
        signature_type=signature_type,
        signature=signature,
        signed_bytes=init.SerializeToString(deterministic=True),
        raw=raw,
    )


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """A trusted signing key from PEM (SubjectPublicKeyInfo, as ``nrfutil keys display --key pk
    --format pem`` prints it); must be P-256."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise LocalProtocolError("the signing key is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise LocalProtocolError("the signing key is not an ECDSA P-256 public key")
    return key


def verify_init_packet(init: InitPacket, public_key: ec.EllipticCurvePublicKey) -> bool:
    """Whether ``init`` carries a valid ECDSA P-256/SHA-256 signature by ``public_key``."""
    if init.signature_type is not SignatureType.ECDSA_P256_SHA256:
        return False
    return _verify_le(public_key, init.signature, init.signed_bytes)


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


@dataclass(frozen=True, slots=True)
class BootloaderState:
    """What a bootloader compares an init packet with (its settings page and build)."""

    public_key: ec.EllipticCurvePublicKey
    hw_version: int
    """``NRF_DFU_HW_VERSION`` of the build."""
    app_version: int
    """The installed application's version (settings ``app_version``)."""
    bootloader_version: int = 1
    softdevice_id: int = 0x0100
    """``SD_FWID`` of the installed SoftDevice, matched against ``sd_req``."""
    bank_size: int = 512 * 1024
    """Room for a new image; a bigger one is INSUFFICIENT_SPACE."""
    types: Collection[FirmwareType] = (
        FirmwareType.APPLICATION,
        FirmwareType.SOFTDEVICE,
        FirmwareType.BOOTLOADER,
        FirmwareType.SOFTDEVICE_BOOTLOADER,
    )
    """The image types this bootloader installs (the SDK's: all but external applications)."""


_SIZE_FOR_TYPE = {
    FirmwareType.APPLICATION: ("app_size",),
    FirmwareType.EXTERNAL_APPLICATION: ("app_size",),
    FirmwareType.SOFTDEVICE: ("sd_size",),
    FirmwareType.BOOTLOADER: ("bl_size",),
    FirmwareType.SOFTDEVICE_BOOTLOADER: ("sd_size", "bl_size"),
}


def validate_init_packet(data: bytes, state: BootloaderState) -> InitPacket | Refusal:
    """What the SDK bootloader checks when the init packet's command object is executed
    (``nrf_dfu_validation_init_cmd_execute`` → ``prevalidate`` → version checks → sizes), in
    its order and with its codes:

    1. the packet decodes — else INVALID_OBJECT;
    2. signature: present (SIGNATURE_MISSING), ECDSA P-256 (WRONG_SIGNATURE_TYPE), 64 bytes and
       verifying with the trusted key over the InitCommand bytes (INVALID_OBJECT);
    3. firmware type present and one this bootloader installs — INIT_COMMAND_INVALID;
    4. hash type SHA-256 with a 32-byte hash — WRONG_HASH_TYPE;
    5. ``hw_version`` present and this build's — INIT_COMMAND_INVALID / HW_VERSION_FAILURE;
    6. ``sd_req`` lists the installed SoftDevice or "any" (0xFFFE) — SD_VERSION_FAILURE;
    7. ``fw_version`` not lower than the installed application's (bootloader's, for a
       bootloader; a SoftDevice has none) unless ``is_debug`` — FW_VERSION_FAILURE (and
       INIT_COMMAND_INVALID when an application or bootloader has no fw_version);
    8. sizes: the type's size non-zero, other sizes zero — INIT_COMMAND_INVALID; fits the
       bank — INSUFFICIENT_SPACE;
    9. boot validation entries well formed (an ECDSA one holds 64 bytes, the generated ones
       none) — INIT_COMMAND_INVALID.
    """
    try:
        init = parse_init_packet(data)
    except RemoteProtocolError as exc:
        return Refusal(ResultCode.INVALID_OBJECT, None, f"init packet does not decode: {exc}")
    command = init.command
    if init.signature_type is None:
        return _ext(ExtendedError.SIGNATURE_MISSING, "init packet is not signed")
    if init.signature_type is not SignatureType.ECDSA_P256_SHA256:
        return _ext(ExtendedError.WRONG_SIGNATURE_TYPE, f"signature {init.signature_type.name}")
    if not verify_init_packet(init, state.public_key):
        return Refusal(
            ResultCode.INVALID_OBJECT, None, "signature does not verify with the trusted key"
        )
    fw_type = command.fw_type
    if fw_type is None or fw_type not in state.types:
        what = "no firmware type" if fw_type is None else f"firmware type {fw_type.name}"
        return _ext(ExtendedError.INIT_COMMAND_INVALID, f"{what}: not installed here")
    if command.hash_type is not HashType.SHA256 or len(command.fw_hash) != _HASH_SIZE:
        return _ext(ExtendedError.WRONG_HASH_TYPE, f"hash type {command.hash_type.name}")
    if command.hw_version is None:
        return _ext(ExtendedError.INIT_COMMAND_INVALID, "no hw_version")
    if command.hw_version != state.hw_version:
        return _ext(
            ExtendedError.HW_VERSION_FAILURE,
            f"package for hw_version {command.hw_version}, this is {state.hw_version}",
        )
    if SD_REQ_ANY not in command.sd_req and state.softdevice_id not in command.sd_req:
        wanted = ", ".join(f"0x{value:04X}" for value in command.sd_req) or "none"
        return _ext(
            ExtendedError.SD_VERSION_FAILURE,
            f"package needs SoftDevice {wanted}, this has 0x{state.softdevice_id:04X}",
        )
    if refusal := _version_refusal(command, fw_type, state):
        return refusal
    if refusal := _size_refusal(command, fw_type, state):
        return refusal
    for item in command.boot_validation:
        size = SIGNATURE_SIZE if item.type is ValidationType.VALIDATE_ECDSA_P256_SHA256 else 0
        if len(item.data) != size:
            return _ext(
                ExtendedError.INIT_COMMAND_INVALID,
                f"boot validation {item.type.name} holds {len(item.data)} bytes, not {size}",
            )
    return init


def _version_refusal(
    command: InitCommand, fw_type: FirmwareType, state: BootloaderState
) -> Refusal | None:
    if fw_type is FirmwareType.SOFTDEVICE:
        return None
    if command.fw_version is None:
        return _ext(ExtendedError.INIT_COMMAND_INVALID, f"a {fw_type.name} needs a fw_version")
    current = (
        state.bootloader_version
        if fw_type in (FirmwareType.BOOTLOADER, FirmwareType.SOFTDEVICE_BOOTLOADER)
        else state.app_version
    )
    if command.fw_version < current and not command.is_debug:
        return _ext(
            ExtendedError.FW_VERSION_FAILURE,
            f"fw_version {command.fw_version} is lower than the installed {current}",
        )
    return None


def _size_refusal(
    command: InitCommand, fw_type: FirmwareType, state: BootloaderState
) -> Refusal | None:
    wanted = _SIZE_FOR_TYPE[fw_type]
    sizes = {"sd_size": command.sd_size, "bl_size": command.bl_size, "app_size": command.app_size}
    if any(sizes[name] == 0 for name in wanted) or any(
        value for name, value in sizes.items() if name not in wanted
    ):
        shown = ", ".join(f"{name} {value}" for name, value in sizes.items())
        return _ext(
            ExtendedError.INIT_COMMAND_INVALID, f"sizes do not fit a {fw_type.name}: {shown}"
        )
    if command.image_size > state.bank_size:
        return _ext(
            ExtendedError.INSUFFICIENT_SPACE,
            f"image of {command.image_size} bytes does not fit in {state.bank_size}",
        )
    return None


def validate_image(
    init: InitPacket, image: bytes, public_key: ec.EllipticCurvePublicKey
) -> Refusal | None:
    """The checks on the last Execute (SDK ``postvalidate``) and of the first boot: the image's
    SHA-256 is the init packet's (reversed), and an ECDSA boot validation verifies over the
    image with the trusted key; else VERIFICATION_FAILED. (The generated CRC / SHA-256 boot
    validations are computed by the bootloader here, so they cannot fail.)"""
    command = init.command
    if len(image) != command.image_size or not command.hash_matches(image):
        return _ext(ExtendedError.VERIFICATION_FAILED, "image hash does not match the init packet")
    for item in command.boot_validation:
        if item.type is ValidationType.VALIDATE_ECDSA_P256_SHA256 and not _verify_le(
            public_key, item.data, image
        ):
            return _ext(
                ExtendedError.VERIFICATION_FAILED, "the image's boot signature does not verify"
            )
    return None
