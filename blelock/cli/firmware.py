"""``blelock firmware-update MAC PACKAGE`` and ``blelock firmware-info PACKAGE``.

An update is two steps (Nokē Core API docs): the cloud's fwupdate command reboots the lock into
its Nordic bootloader, then the package goes over Secure DFU. A lock found already in its
bootloader (a transfer a lost link or a killed process left half done) skips the first step,
and the bootloader resumes from its last verified offset.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from blelock.cli.context import settings_from
from blelock.cli.render import show_firmware_update, show_package, transfer_progress
from blelock.cli.unlock import visit
from blelock.config import Settings
from blelock.dfu import DfuOutcome, update_firmware
from blelock.errors import lock_context
from blelock.model import Action, MacAddress, parse_mac
from blelock.protocol.dfu_package import DfuPackage, read_package
from blelock.transport.ble import open_link
from blelock.transport.scan import find_update_target


def info(args: argparse.Namespace) -> int:

    show_package(read_package(args.package), as_json=args.json)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "firmware-info":
        return info(args)

    mac = parse_mac(args.mac)
    package = read_package(args.package)  # a bad package is refused before any radio work
    settings = settings_from(args)
    with transfer_progress(package.size, enabled=not args.json) as advance:
        outcome = asyncio.run(update(mac, package, settings, prn=args.prn, on_progress=advance))
    show_firmware_update(outcome, as_json=args.json)
    return 0


async def update(
    mac: MacAddress,
    package: DfuPackage,
    settings: Settings,
    *,
    prn: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> DfuOutcome:
    """Both steps, from wherever the lock is now; ``on_progress`` gets the bytes confirmed."""

    with lock_context(mac, "scan"):
        target = await find_update_target(mac, settings)
    if target.lock is not None:
        await visit(mac, Action.FIRMWARE_UPDATE, settings, found=target.lock, mode="online")
        with lock_context(mac, "find the bootloader"):
            target = await find_update_target(mac, settings, bootloader_only=True)
    device = target.bootloader
    assert device is not None  # find_update_target found one or the other
    return await update_firmware(
        mac,
        lambda: open_link(device, settings, name="Nokē bootloader"),
        package,
        prn=prn,
        on_progress=None if on_progress is None else lambda p: on_progress(p.confirmed),
    )
