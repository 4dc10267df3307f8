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


def _upload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="send again the batches the cloud refused (see `blelock logs`) once fixed",
    )


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
    parser.add_argument(
        "--keyless-locks",
        type=_non_negative_int,
        default=2,
        help="simulated Keyless padlocks (default 2)",
    )


def _device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("device", metavar="DEVICE", help="the Keyless lockingDeviceId (a UUID)")


def _open_arguments(parser: argparse.ArgumentParser) -> None:
    _device_argument(parser)
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--offline", action="store_true", help="use keys synced earlier only")
    how.add_argument("--online", action="store_true", help="fail rather than work offline")
    parser.add_argument(
        "--rekey", action="store_true", help="make the lock start re-keying its certificate"
    )


def _keyless_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="keyless_command", metavar="ACTION", required=True)
    # Nested commands take the common options too (--json after the action, say).
    common = [_common_options(defaults=False)]
    activate = actions.add_parser(
        "activate", parents=common, help="make this companion an operating device"
    )
    activate.add_argument(
        "invitation_code", metavar="CODE", help="the invitation's code; - reads it from stdin"
    )
    _device_argument(
        actions.add_parser("set-time", parents=common, help="set a lock's clock to this machine's")
    )
    actions.add_parser("login", parents=common, help="check the administrator's credentials")
    devices = actions.add_parser("devices", parents=common, help="list locking devices")
    devices.add_argument("--claiming-status", choices=("CLAIMED", "UNCLAIMED"))
    devices.add_argument("--serial", metavar="SERIAL", help="only this serial number")
    permissions = actions.add_parser("permissions", parents=common, help="list permissions")
    permissions.add_argument("--user", metavar="USER_ID", help="only this user's")
    grant = actions.add_parser("grant", parents=common, help="let a user operate a lock")
    grant.add_argument("user_id", metavar="USER_ID")
    _device_argument(grant)
    grant.add_argument(
        "--operation", choices=("OPEN", "UPDATE_FIRMWARE", "UPDATE_TIME"), default="OPEN"
    )
    grant.add_argument("--start", metavar="ISO", help="default: now")
    grant.add_argument("--end", metavar="ISO", help="default: start + 30 days")
    grant.add_argument(
        "--key-validity-days", type=_positive_int, default=8, metavar="N",
        help="how long an operating key lasts (1-31, default 8)",
    )  # fmt: skip
    revoke = actions.add_parser("revoke", parents=common, help="withdraw a permission")
    revoke.add_argument("permission_id", metavar="PERMISSION_ID")
    offline = actions.add_parser("offline-key", parents=common, help="issue or list offline keys")
    kinds = offline.add_subparsers(dest="offline_key_command", metavar="ACTION", required=True)
    kinds.add_parser("list", parents=common, help="issued offline keys (never their values)")
    issue = kinds.add_parser(
        "issue", parents=common, help="issue an offline key to an operating device"
    )
    _device_argument(issue)
    issue.add_argument("--operating-device", required=True, metavar="ID")
    issue.add_argument("--start", metavar="ISO", help="default: now")
    issue.add_argument("--end", metavar="ISO", help="default: start + 24 h (the most allowed)")
    issue.add_argument(
        "--delivery", choices=("NONE", "SMS_WITHOUT_APP_LINK", "SMS_WITH_APP_LINK"),
        default="NONE",
    )  # fmt: skip
    issue.add_argument("--phone", metavar="E164", help="for SMS delivery")
    issue.add_argument("--app-link", metavar="URL", help="appLinkBaseUrl (at most 42 characters)")


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "blelock.cli.demo",
        "start the simulated clouds and Nokē and Keyless padlocks, and open each",
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
    "upload": Command("blelock.cli.sync", "upload the pending log records now", _upload_arguments),
    "open": Command(
        "blelock.cli.keyless",
        "open a Keyless lock (with keys synced earlier when the platform is unreachable)",
        _open_arguments,
    ),
    "keyless": Command(
        "blelock.cli.keyless",
        "Keyless: activate this device, set a lock's clock, administer the platform",
        _keyless_arguments,
    ),
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
    "serve": Command(
        "blelock.cli.serve",
        "run the kiosk service: live view of nearby locks and a local HTTP API (until SIGTERM)",
        _no_arguments,
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


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
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
        description="Open Nokē and Keyless padlocks over Bluetooth LE, online or offline, with "
        "a BLE-free simulator.",
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
