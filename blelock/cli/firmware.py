"""``blelock firmware-update MAC PACKAGE`` and ``blelock firmware-info PACKAGE``.

An update is two steps (Nokē Core API docs): the cloud's fwupdate command reboots the lock into
its Nordic bootloader, then the package goes over Secure DFU. A lock found already in its
bootloader (a transfer a lost link or a killed process left half done) skips the first step,
and the bootloader resumes from its last verified offset.
"""

from __future__ import annotations

import argparse
import asyncio

from blelock.cli.context import settings_from
from blelock.cli.render import show_firmware_update, show_package, transfer_progress
from blelock.jobs import update
from blelock.model import parse_mac
from blelock.protocol.dfu_package import read_package


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
