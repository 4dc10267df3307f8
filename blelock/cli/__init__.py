"""``blelock``: argparse and a table of commands, nothing heavy at import time.

Each command lives in its own module, imported only when it runs, so ``blelock --version`` and
``blelock --help`` start in milliseconds on a Raspberry Pi. Exit codes: 0 done, 1 failed,
2 usage (bad arguments or input), 130 cancelled.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from blelock import __version__

__all__ = ["COMMANDS", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


class Command(NamedTuple):
    module: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]


def _lock_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mac", metavar="MAC", help="the lock's MAC, e.g. C7:E6:B0:C6:75:38")
    parser.add_argument(
        "--tracking-key",
        metavar="K",
        help="a string the cloud attaches to this activity (e.g. a technician's id)",
    )


def _scan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds", type=_positive_float, default=5.0, help="how long to listen (default 5)"
    )


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--locks", type=_positive_int, default=3, help="simulated padlocks (default 3)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated world")


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "blelock.cli.demo",
        "start the simulated Nokē cloud and padlocks, find them and unlock each",
        _demo_arguments,
    ),
    "scan": Command("blelock.cli.scan", "list the locks advertising nearby", _scan_arguments),
    "unlock": Command("blelock.cli.unlock", "unlock a Nokē lock", _lock_arguments),
    "unshackle": Command(
        "blelock.cli.unlock", "free the shackle of a Nokē HD padlock", _lock_arguments
    ),
}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON only, on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    common.add_argument("--config", metavar="PATH", help="config file (default: per-user)")
    parser = argparse.ArgumentParser(
        prog="blelock",
        description="Open Nokē padlocks over Bluetooth LE, with a BLE-free simulator.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"blelock {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name, help=command.summary, description=command.summary, parents=[common]
        )
        command.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed usage or --version already
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    module = importlib.import_module(COMMANDS[args.command].module)
    try:
        code: int = module.run(args)
        return code
    except KeyboardInterrupt:
        print("blelock: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:
        from blelock.cli.render import report_failure

        return report_failure(exc, as_json=args.json, debug=args.debug)
