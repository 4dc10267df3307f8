"""``blelock firmware-info PACKAGE``: what a DFU package holds, without touching a lock.

(``blelock firmware-update LOCK PACKAGE`` is the vendor's firmware-update operation, run by
:mod:`blelock.cli.open`.)
"""

from __future__ import annotations

import argparse

from blelock.cli.render import show_package
from blelock.protocol.dfu_package import read_package


def run(args: argparse.Namespace) -> int:
    show_package(read_package(args.package, for_update=False), as_json=args.json)
    return 0
