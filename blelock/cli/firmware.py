"""``blelock firmware-info PACKAGE``: what a DFU package holds, without touching a lock."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from blelock.cli.render import show_package
    from blelock.protocol.dfu_package import read_package

    show_package(read_package(args.package), as_json=args.json)
    return 0
