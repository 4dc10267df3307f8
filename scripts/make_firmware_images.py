"""Build the DFU packages for the simulated locks into ``firmware_images/``.

    .venv/bin/python scripts/make_firmware_images.py            # (re)write firmware_images/
    .venv/bin/python scripts/make_firmware_images.py --check    # exit 1 if they are stale

Everything is deterministic, so a run reproduces the committed files byte for byte:

* each image is pseudo-random bytes from SHAKE-256 of a fixed seed (random, so no compression or
  pattern hides a transfer bug; seeded, so checksums are stable), after a readable header;
* the init packets are signed with a TEST ECDSA P-256 key derived from a fixed seed, with
  deterministic (RFC 6979) signatures;
* the init packets are Nordic's protobuf ``.dat`` with the fields ``nrfutil pkg generate
  --hw-version H --sd-req 0x0100 --application-version V --application app.bin --key-file K``
  writes (CRC boot validation, ``is_debug`` false): ``nrfutil pkg display`` reads them;
* the zips are written by :func:`blelock.protocol.dfu_package.encode_package` (fixed dates,
  stored).

The test key is public by construction: anyone can derive it from this file. It exists so the
simulated bootloader has something to check signatures against. Never trust it on a real lock.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from blelock.protocol import dfu, dfu_init, dfu_package

OUT_DIR = Path(__file__).resolve().parent.parent / "firmware_images"
PUBLIC_KEY_FILE = "test_signing_key.pub.pem"
TEST_KEY_SEED = b"blelock TEST DFU signing key v1 - public, never for real locks"
SOFTDEVICE_ID = 0x0100
"""``sd_req``: the SoftDevice id the simulated bootloaders report (simulators/dfu_target.py)."""
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class ImageSpec:
    stem: str
    hardware: str
    version: str
    size: int


IMAGES = (
    # Sizes just under 64 and 48 KiB and not page multiples: the last data object is short.
    ImageSpec("noke-4i-3.15", hardware="4I", version="3.15", size=65_000),
    ImageSpec("noke-3p-2.11", hardware="3P", version="2.11", size=49_000),
)


def derive_test_signing_key(seed: bytes = TEST_KEY_SEED) -> ec.EllipticCurvePrivateKey:
    """The test key: a P-256 scalar from SHA-256 of ``seed``, in 1..n-1."""
    scalar = int.from_bytes(hashlib.sha256(seed).digest(), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def image_bytes(spec: ImageSpec) -> bytes:
    header = f"BLELOCK TEST FIRMWARE {spec.hardware} {spec.version}\n".encode("ascii")
    body = hashlib.shake_256(f"blelock test image {spec.stem}".encode()).digest(
        spec.size - len(header)
    )
    return header + body


def package_bytes(spec: ImageSpec, key: ec.EllipticCurvePrivateKey) -> bytes:
    image = image_bytes(spec)
    command = dfu_init.InitCommand.for_image(
        image,
        hw_version=dfu.hardware_version(spec.hardware),
        fw_version=dfu.parse_version_text(spec.version),
        sd_req=[SOFTDEVICE_ID],
    )
    return dfu_package.encode_package(
        dfu_init.encode_init_packet(command, key), image, stem=spec.stem
    )


def build() -> dict[str, bytes]:
    """Every file of ``firmware_images/``, by name."""
    key = derive_test_signing_key()
    files = {f"{spec.stem}.zip": package_bytes(spec, key) for spec in IMAGES}
    files[PUBLIC_KEY_FILE] = public_key_pem(key)
    files["README.md"] = _readme(files).encode()
    return files


def _readme(files: dict[str, bytes]) -> str:
    rows = []
    for spec in IMAGES:
        package = dfu_package.read_package(files[f"{spec.stem}.zip"])
        zipped = files[f"{spec.stem}.zip"]
        rows.append(
            f"| `{spec.stem}.zip` | {package.hardware} | {package.version} | "
            f"0x{package.init.command.hw_version or 0:08X} | "
            f"0x{package.init.command.fw_version or 0:08X} | {package.size} | "
            f"{len(zipped)} | `{hashlib.sha256(zipped).hexdigest()}` |"
        )
    key_sha = hashlib.sha256(files[PUBLIC_KEY_FILE]).hexdigest()
    return f"""# Firmware images for the simulated locks

DFU packages for `blelock firmware-update` against the simulated Nordic bootloader
(`simulators/dfu_target.py`). **Test data only: these are not Nokē firmware** (real images are
not public) and nothing here may be flashed to a real lock.

## How they were made

    .venv/bin/python scripts/make_firmware_images.py

The script is deterministic: running it again rewrites these files byte for byte, and
`--check` verifies that they are current. This README (with the checksums below) is written by
the same run.

- **Images**: a readable header line (`BLELOCK TEST FIRMWARE <hw> <version>`) followed by
  pseudo-random bytes from SHAKE-256 of a fixed seed, so checksums are reproducible. Sizes are
  not multiples of the 4 KiB data object, so the last object is short.
- **Init packets** (`.dat`): Nordic's protobuf init packet (`dfu-cc.proto`), with the fields
  `nrfutil pkg generate` writes for an application: `hw_version` (the hardware code's ASCII as
  a big-endian number, `4I` = 0x3449), `fw_version` (`major << 16 | minor`), `sd_req` 0x0100
  (the simulated SoftDevice), type APPLICATION, `app_size`, the image's SHA-256 stored
  little-endian, `is_debug` false and CRC boot validation; signed with ECDSA P-256 / SHA-256
  over the InitCommand, r‖s little-endian (deterministic signatures, RFC 6979).
  `nrfutil pkg display` reads them (`tests/fixtures/nrfutil/blelock-*.display.txt`).
- **Packages**: the zip layout nrfutil makes: `manifest.json` (`manifest.application.bin_file`
  / `dat_file`), the `.bin` and the `.dat`; entries stored with fixed dates.

## The test signing key

`{PUBLIC_KEY_FILE}` is the public half of a P-256 key the script derives from a fixed seed
written in the script. It is **not a secret**: anyone can re-derive the private key. The
simulated bootloader trusts it so that signature checks are real. Never install it as a
trusted key anywhere that matters. SHA-256 of the PEM file: `{key_sha}`.

## Packages

| file | hardware | version | hw_version | fw_version | image bytes | zip bytes | SHA-256 of zip |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where to write")
    parser.add_argument("--check", action="store_true", help="only verify the files are current")
    args = parser.parse_args(argv)
    stale = []
    for name, content in build().items():
        path: Path = args.out / name
        if args.check:
            if not path.is_file() or path.read_bytes() != content:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        print(f"{path}  {len(content)} bytes  sha256 {hashlib.sha256(content).hexdigest()}")
    if stale:
        print(f"stale in {args.out}: {', '.join(stale)}; rerun without --check", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
