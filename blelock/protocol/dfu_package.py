"""The Nordic DFU package: the zip ``nrfutil pkg generate`` makes (``manifest.json``, and per
image a ``.bin`` and its init packet ``.dat``, :mod:`blelock.protocol.dfu_init`).

Every manifest kind nrfutil writes is read: ``application``, ``softdevice``, ``bootloader`` and
``softdevice_bootloader`` (with its ``info_read_only_metadata``), each image checked against its
init packet (type, size, SHA-256). What blelock *sends* is narrower: one application image
(:attr:`DfuPackage.update`); a package that would also replace the SoftDevice or the bootloader
is read and shown, and refused for an update with the reason. Sans-I/O but for
:func:`read_package`, which accepts a path for convenience (call it off the event loop).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from blelock.errors import ProtocolError, UsageError
from blelock.protocol._bytes import crc32
from blelock.protocol.dfu import (
    INIT_COMMAND_MAX_SIZE,
    MAX_IMAGE_SIZE,
    MAX_MANIFEST_SIZE,
    MAX_PACKAGE_SIZE,
    hardware_name,
    version_text,
)
from blelock.protocol.dfu_init import FirmwareType, HashType, InitPacket, parse_init_packet

__all__ = [
    "KIND_TYPES",
    "MANIFEST_NAME",
    "DfuPackage",
    "FirmwareImage",
    "encode_package",
    "read_package",
]


# --- the package: the zip nrfutil makes -------------------------------------------------------

MANIFEST_NAME = "manifest.json"
KIND_TYPES: Mapping[str, tuple[FirmwareType, ...]] = {
    "softdevice_bootloader": (FirmwareType.SOFTDEVICE_BOOTLOADER,),
    "softdevice": (FirmwareType.SOFTDEVICE,),
    "bootloader": (FirmwareType.BOOTLOADER,),
    "application": (FirmwareType.APPLICATION, FirmwareType.EXTERNAL_APPLICATION),
}
"""Manifest kinds and the init packet types they may hold, in the order nrfutil sends them
(SoftDevice and bootloader first: the application is checked against the new SoftDevice)."""
_DISPLAY_KIND = {"softdevice_bootloader": "sd_bl"}  # nrfutil pkg display's word for it
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
class FirmwareImage:
    """One image of a package: its init packet and its bytes, consistent with each other."""

    kind: str
    """The manifest key: application, softdevice, bootloader or softdevice_bootloader."""
    bin_file: str
    dat_file: str
    init_packet: bytes = field(repr=False)
    firmware: bytes = field(repr=False)
    init: InitPacket = field(repr=False)
    metadata: tuple[tuple[str, int], ...] = ()
    """``info_read_only_metadata`` (an SD+BL image's ``bl_size`` / ``sd_size``)."""

    @property
    def display_kind(self) -> str:
        return _DISPLAY_KIND.get(self.kind, self.kind)

    @property
    def hardware(self) -> str:
        hw = self.init.command.hw_version
        return "none" if hw is None else hardware_name(hw)

    @property
    def version(self) -> str:
        """``fw_version`` read as blelock writes Nokē versions (major << 16 | minor)."""
        fw = self.init.command.fw_version
        return "none" if fw is None else version_text(fw)

    @property
    def size(self) -> int:
        return len(self.firmware)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.firmware).hexdigest()

    @property
    def crc32(self) -> int:
        return crc32(self.firmware)

    def describe(self) -> dict[str, object]:
        """What ``nrfutil pkg display`` shows of this image, under its names and in its forms
        (signature and hashes as stored, little-endian hex; ``sd_req`` as hex)."""
        init, command = self.init, self.init.command
        return {
            "type": self.display_kind,
            "image_file": self.bin_file,
            "init_packet_file": self.dat_file,
            "op_code": "INIT",
            "signature_type": "UNSIGNED"
            if init.signature_type is None
            else init.signature_type.name,
            "signature": init.signature.hex() if init.signed else None,
            "fw_version": command.fw_version,
            "hw_version": command.hw_version,
            "sd_req": [f"0x{value:X}" for value in command.sd_req],
            "init_type": None if command.fw_type is None else command.fw_type.name,
            "sd_size": command.sd_size,
            "bl_size": command.bl_size,
            "app_size": command.app_size,
            "hash_type": command.hash_type.name,
            "hash": command.fw_hash.hex(),
            "boot_validation_type": [item.type.name for item in command.boot_validation],
            "boot_validation_signature": [item.data.hex() for item in command.boot_validation],
            "is_debug": command.is_debug,
            "image_bytes": self.size,
            "image_sha256": self.sha256,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class DfuPackage:
    """Every image of a DFU zip, in nrfutil's send order. The attributes below ``update``
    are those of the one image blelock sends."""

    images: tuple[FirmwareImage, ...]
    source: str = field(default="the package", compare=False)

    @property
    def refusal(self) -> str | None:
        """Why blelock will not send this package, or None."""
        kinds = [image.kind for image in self.images]
        if kinds == ["application"]:
            return None
        others = [kind.replace("_", "+") for kind in kinds if kind != "application"]
        return (
            f"{self.source} updates the {' and '.join(others)}"
            + (" as well as the application" if "application" in kinds else "")
            + ": blelock sends application updates only (a SoftDevice or bootloader update "
            "can leave a lock that does not start; use the vendor's tool or nrfutil for it)"
        )

    @property
    def update(self) -> FirmwareImage:
        """The application image blelock sends; UsageError for a package it does not send."""
        if (reason := self.refusal) is not None:
            raise UsageError(reason, hint="blelock firmware-info shows what the package holds")
        return self.images[0]

    @property
    def init_packet(self) -> bytes:
        return self.update.init_packet

    @property
    def firmware(self) -> bytes:
        return self.update.firmware

    @property
    def init(self) -> InitPacket:
        return self.update.init

    @property
    def bin_file(self) -> str:
        return self.update.bin_file

    @property
    def dat_file(self) -> str:
        return self.update.dat_file

    @property
    def hardware(self) -> str:
        return self.update.hardware

    @property
    def version(self) -> str:
        return self.update.version

    @property
    def size(self) -> int:
        return self.update.size

    @property
    def sha256(self) -> str:
        return self.update.sha256

    @property
    def crc32(self) -> int:
        return self.update.crc32


PackageEntry = tuple[str, str, bytes, bytes]
"""``(kind, stem, init_packet, firmware)`` for :func:`encode_package`."""


def encode_package(
    init_packet: bytes = b"",
    firmware: bytes = b"",
    *,
    stem: str = "app",
    kind: str = "application",
    images: Sequence[PackageEntry] = (),
    metadata: Mapping[str, Mapping[str, int]] | None = None,
) -> bytes:
    """A DFU zip as nrfutil lays it out (``manifest.json``, ``<stem>.bin``, ``<stem>.dat`` per
    image). One image from the positional arguments, or several as ``images``. Byte-identical
    for identical input: fixed dates and attributes, and entries *stored* (the image does not
    compress, and stored bytes do not depend on the zlib version)."""
    entries_in = list(images) or [(kind, stem, init_packet, firmware)]
    manifest: dict[str, dict[str, object]] = {}
    files: list[tuple[str, bytes]] = []
    for image_kind, image_stem, dat, image in entries_in:
        if image_kind not in KIND_TYPES:
            raise UsageError(f"{image_kind!r} is not a DFU manifest kind")
        bin_name, dat_name = f"{image_stem}.bin", f"{image_stem}.dat"
        manifest[image_kind] = {"bin_file": bin_name, "dat_file": dat_name}
        if metadata and image_kind in metadata:
            manifest[image_kind]["info_read_only_metadata"] = dict(metadata[image_kind])
        files += [(bin_name, image), (dat_name, dat)]
    document = (json.dumps({"manifest": manifest}, indent=4) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, content in [(MANIFEST_NAME, document), *files]:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.create_system = 3  # Unix, whatever builds it
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def read_package(source: bytes | str | os.PathLike[str], *, for_update: bool = True) -> DfuPackage:
    """Read and check a DFU zip given as bytes or a path. Every problem is a UsageError naming the
    package, the member and what is wrong: the package is the user's input. ``for_update``
    (the default) also refuses a package blelock does not send (:attr:`DfuPackage.refusal`),
    before anything touches a lock; ``firmware-info`` reads any."""
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
    images: list[FirmwareImage] = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for kind, entry in _manifest_images(archive, label):
                dat_name, bin_name = str(entry["dat_file"]), str(entry["bin_file"])
                init_packet = _member(archive, dat_name, INIT_COMMAND_MAX_SIZE, label)
                firmware = _member(archive, bin_name, MAX_IMAGE_SIZE, label)
                images.append(_image(kind, entry, init_packet, firmware, label))
    except zipfile.BadZipFile as exc:
        raise UsageError(
            f"{label} is not a usable zip file ({exc}); a DFU package is the zip nrfutil makes: "
            "manifest.json, an init packet (.dat) and an image (.bin)"
        ) from None
    except _ZIP_ERRORS as exc:
        raise UsageError(f"{label} is a damaged zip file ({type(exc).__name__}: {exc})") from None
    package = DfuPackage(tuple(images), source=label)
    if for_update and (reason := package.refusal) is not None:
        raise UsageError(reason, hint="blelock firmware-info shows what the package holds")
    return package


def _manifest_images(archive: zipfile.ZipFile, label: str) -> list[tuple[str, dict[str, object]]]:
    raw = _member(archive, MANIFEST_NAME, MAX_MANIFEST_SIZE, label)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UsageError(f"{label}: {MANIFEST_NAME} is not valid JSON ({exc})") from None
    manifest = document.get("manifest") if isinstance(document, dict) else None
    if not isinstance(manifest, dict):
        raise UsageError(f'{label}: {MANIFEST_NAME} has no "manifest" object')
    found: list[tuple[str, dict[str, object]]] = []
    for kind in KIND_TYPES:
        entry = manifest.get(kind)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise UsageError(f'{label}: {MANIFEST_NAME} "manifest.{kind}" is not an object')
        for key in ("bin_file", "dat_file"):
            value = entry.get(key)
            if not isinstance(value, str) or not value:
                raise UsageError(f"{label}: manifest.{kind}.{key} is missing or not a file name")
        found.append((kind, entry))
    if not found:
        raise UsageError(
            f"{label}: {MANIFEST_NAME} names no image (application, softdevice, bootloader "
            "or softdevice_bootloader)"
        )
    return found


def _member(archive: zipfile.ZipFile, name: str, limit: int, label: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise UsageError(f"{label} has no {name}") from None
    if info.file_size > limit:
        raise UsageError(f"{label}: {name} is {info.file_size} bytes, more than {limit}")
    return archive.read(info)  # checks the entry's CRC-32


def _image(
    kind: str, entry: dict[str, object], init_packet: bytes, firmware: bytes, label: str
) -> FirmwareImage:
    bin_name, dat_name = str(entry["bin_file"]), str(entry["dat_file"])
    try:
        init = parse_init_packet(init_packet)
    except ProtocolError as exc:
        raise UsageError(f"{label}: {dat_name} is not an init packet: {exc.message}") from None
    command = init.command
    if command.fw_type not in KIND_TYPES[kind]:
        shown = "no type" if command.fw_type is None else f"a {command.fw_type.name}"
        raise UsageError(f"{label}: {dat_name} is for {shown}, but the manifest says {kind}")
    if command.hash_type is not HashType.SHA256:
        raise UsageError(f"{label}: {dat_name}'s hash is {command.hash_type.name}, not SHA-256")
    if not firmware:
        raise UsageError(f"{label}: {bin_name} is empty")
    if len(firmware) != command.image_size:
        raise UsageError(
            f"{label}: {bin_name} is {len(firmware)} bytes but its init packet says "
            f"{command.image_size}: the image is truncated or belongs to another package"
        )
    if not command.hash_matches(firmware):
        raise UsageError(
            f"{label}: {bin_name} does not match its init packet's SHA-256: the image is "
            "corrupted or belongs to another package"
        )
    metadata: list[tuple[str, int]] = []
    info = entry.get("info_read_only_metadata")
    if isinstance(info, dict):
        for key, value in sorted(info.items()):
            if isinstance(value, int) and not isinstance(value, bool):
                metadata.append((str(key), value))
    given = dict(metadata)
    for key in ("sd_size", "bl_size"):
        if key in given and given[key] != getattr(command, key):
            raise UsageError(
                f"{label}: manifest.{kind} says {key} {given[key]}, its init packet "
                f"{getattr(command, key)}"
            )
    return FirmwareImage(kind, bin_name, dat_name, init_packet, firmware, init, tuple(metadata))
