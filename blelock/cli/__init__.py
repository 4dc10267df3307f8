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


def _unlock_arguments(parser: argparse.ArgumentParser) -> None:
    _lock_arguments(parser)
    parser.add_argument(
        "--offline",
        action="store_true",
        help="use the cached offline key even if the cloud is reachable",
    )


def _sync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--macs", nargs="+", metavar="MAC", help="only these locks (default: every lock)"
    )
    parser.add_argument(
        "--tracking-key",
        action="append",
        default=[],
        metavar="K",
        help="ask the cloud to issue offline keys for this tracking key (needs --macs); repeatable",
    )


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _package_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", metavar="PACKAGE", help="a DFU package (.zip)")


def _update_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mac", metavar="MAC", help="the lock's MAC, e.g. C7:E6:B0:C6:75:38")
    _package_arguments(parser)
    parser.add_argument(
        "--prn",
        type=_prn,
        default=0,
        metavar="N",
        help="ask the bootloader for a receipt every N packets (0: none; default 0)",
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
    "unlock": Command(
        "blelock.cli.unlock",
        "unlock a Nokē lock (with a cached offline key when the cloud is unreachable)",
        _unlock_arguments,
    ),
    "unshackle": Command(
        "blelock.cli.unlock", "free the shackle of a Nokē HD padlock", _lock_arguments
    ),
    "sync": Command(
        "blelock.cli.sync",
        "fetch offline keys from the cloud and upload the locks' pending logs",
        _sync_arguments,
    ),
    "keys": Command("blelock.cli.keys", "list cached offline keys (never the keys)", _no_arguments),
    "logs": Command("blelock.cli.logs", "show the log records waiting for upload", _no_arguments),
    "upload": Command("blelock.cli.sync", "upload the pending log records now", _no_arguments),
    "firmware-update": Command(
        "blelock.cli.firmware",
        "put a Nokē lock into its bootloader and send it a firmware package (resumable)",
        _update_arguments,
    ),
    "firmware-info": Command(
        "blelock.cli.firmware",
        "show what a firmware package holds, without touching a lock",
        _package_arguments,
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


def _prn(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 65535")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _common_options(*, defaults: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the command. After it, they default to "not given"
    (SUPPRESS), so they never overwrite what was given before it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON only, on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    common.add_argument("--config", metavar="PATH", help="config file (default: per-user)")
    common.add_argument(
        "--data-dir", metavar="DIR", help="where the store lives (default: per-user data dir)"
    )
    if not defaults:
        for action in common._actions:
            action.default = argparse.SUPPRESS
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blelock",
        description="Open Nokē padlocks over Bluetooth LE, online or offline, with a BLE-free "
        "simulator.",
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"blelock {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    after_command = _common_options(defaults=False)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name, help=command.summary, description=command.summary, parents=[after_command]
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
