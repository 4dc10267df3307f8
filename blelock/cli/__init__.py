"""``blelock``: argparse and a table of commands, nothing heavy at import time.

Each command lives in its own module, imported only when it runs. The table itself asks every
vendor's plugin for its options, so ``blelock --version`` is answered before it is built, and
costs little more than the interpreter's start. Exit codes: 0 done, 1 failed, 2 usage (bad
arguments or input), 130 cancelled.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from blelock import __version__

if TYPE_CHECKING:
    from blelock.vendors.base import OptionSpec, VendorPlugin

__all__ = ["COMMANDS", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
VERSION_LINE = f"blelock {__version__}"
"""What ``--version`` prints, from argparse's action or from :func:`main`'s short path."""


class Command(NamedTuple):
    module: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]


def _plugins() -> list[VendorPlugin]:
    from blelock import vendors

    return list(vendors.plugins().values())


def _vendor_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vendor",
        metavar="V",
        help="whose lock it is, when its id alone does not say (see `blelock scan`)",
    )


def _add_options(parser: argparse.ArgumentParser, options: Iterable[OptionSpec]) -> None:
    """Each vendor option once (the first plugin's help text)."""
    seen: set[str] = set()
    for option in options:
        if option.name in seen:
            continue
        seen.add(option.name)
        flag = "--" + option.name.replace("_", "-")
        if option.flag:
            parser.add_argument(flag, dest=option.name, action="store_true", help=option.help)
        elif option.repeatable:
            parser.add_argument(
                flag, dest=option.name, action="append", default=[], metavar=option.metavar,
                help=option.help,
            )  # fmt: skip
        else:
            parser.add_argument(flag, dest=option.name, metavar=option.metavar, help=option.help)


def operation_options(operation: str | None) -> list[OptionSpec]:
    return [
        option
        for plugin in _plugins()
        for name, spec in plugin.operations.items()
        if operation is None or name == operation
        for option in spec.options
    ]


def _open_arguments(parser: argparse.ArgumentParser, operation: str | None = None) -> None:
    parser.add_argument("lock", metavar="LOCK", help="the lock's id as `blelock scan` lists it")
    if operation is None:
        parser.add_argument(
            "--op", metavar="OPERATION", help="what to do (default: the vendor's opening)"
        )
    _vendor_option(parser)
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--offline", action="store_true", help="use keys synced earlier only")
    how.add_argument("--online", action="store_true", help="fail rather than work offline")
    _add_options(parser, operation_options(operation))


def _unlock_arguments(parser: argparse.ArgumentParser) -> None:
    _open_arguments(parser, "unlock")


def _unshackle_arguments(parser: argparse.ArgumentParser) -> None:
    _open_arguments(parser, "unshackle")


def _sync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--locks",
        "--macs",
        dest="locks",
        nargs="+",
        metavar="LOCK",
        help="only these locks (default: every lock)",
    )
    _vendor_option(parser)
    _add_options(parser, [option for plugin in _plugins() for option in plugin.sync_options])


def _vendor_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vendor", metavar="V", help="only this vendor's")


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=["check"],
        help="check: run SQLite's full integrity check and say what is damaged "
        "(exit 1 when anything is)",
    )


def _upload_arguments(parser: argparse.ArgumentParser) -> None:
    _vendor_filter_arguments(parser)
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="send again the batches the cloud refused (see `blelock logs`) once fixed",
    )


def _package_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", metavar="PACKAGE", help="a DFU package (.zip)")


def _update_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lock", metavar="LOCK", help="the lock's id as `blelock scan` lists it")
    _package_arguments(parser)
    _vendor_option(parser)
    _add_options(parser, operation_options("firmware-update"))


def _scan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds", type=_positive_float, default=5.0, help="how long to listen (default 5)"
    )


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--locks", type=_positive_int, default=3, help="simulated padlocks (default 3)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated world")
    for plugin in _plugins():
        if plugin.demo_locks is not None:
            parser.add_argument(
                f"--{plugin.name}-locks",
                dest=f"{plugin.name}_locks",
                type=_non_negative_int,
                default=plugin.demo_locks.default,
                help=plugin.demo_locks.help,
            )


def _access_arguments(parser: argparse.ArgumentParser) -> None:
    # Parsed by blelock.cli.access when it runs: its options come from every vendor's access
    # translation, which only an access command should import.
    parser.add_argument(
        "access_arguments",
        nargs=argparse.REMAINDER,
        metavar="ACTION ...",
        help="grant | list | show GRANT | revoke GRANT | constraints LOCK | reconcile "
        "(`blelock access -h` for more)",
    )


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "blelock.cli.demo",
        "start the simulated clouds and padlocks, and open each",
        _demo_arguments,
    ),
    "scan": Command("blelock.cli.scan", "list the locks advertising nearby", _scan_arguments),
    "open": Command(
        "blelock.cli.open",
        "open a lock of any vendor (with keys synced earlier when its cloud is unreachable)",
        _open_arguments,
    ),
    "unlock": Command("blelock.cli.open", "open LOCK --op unlock", _unlock_arguments),
    "unshackle": Command("blelock.cli.open", "open LOCK --op unshackle", _unshackle_arguments),
    "sync": Command(
        "blelock.cli.sync",
        "fetch offline keys from each vendor's cloud and upload the locks' pending logs",
        _sync_arguments,
    ),
    "keys": Command(
        "blelock.cli.keys", "list cached offline keys (never the keys)", _vendor_filter_arguments
    ),
    "logs": Command(
        "blelock.cli.logs", "show the log records waiting for upload", _vendor_filter_arguments
    ),
    "store": Command(
        "blelock.cli.store", "check the store for damage (`blelock store check`)", _store_arguments
    ),
    "upload": Command("blelock.cli.sync", "upload the pending log records now", _upload_arguments),
    "firmware-update": Command(
        "blelock.cli.open",
        "put a lock into its bootloader and send it a firmware package (resumable)",
        _update_arguments,
    ),
    "firmware-info": Command(
        "blelock.cli.firmware",
        "show what a firmware package holds, without touching a lock",
        _package_arguments,
    ),
    "access": Command(
        "blelock.cli.access",
        "who may open which locks, when: grant, list, show, revoke, constraints, reconcile",
        _access_arguments,
    ),
    "serve": Command(
        "blelock.cli.serve",
        "run the kiosk service: live view of nearby locks and a local HTTP API (until SIGTERM)",
        _no_arguments,
    ),
    "agent": Command(
        "blelock.cli.agent",
        "keep the store and cloud connections open, and run `open` / `unlock` for the CLI "
        "(in the foreground, until SIGTERM)",
        _no_arguments,
    ),
}
"""The core commands; each vendor plugin with a command subtree adds ``blelock NAME …``."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
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


def common_options(*, defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes (``--json``, ``--config``, …), for a nested parser."""
    return _common_options(defaults=defaults)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blelock",
        description="Open smart locks over Bluetooth LE, online or offline, with a BLE-free "
        "simulator.",
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=VERSION_LINE)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    after_command = _common_options(defaults=False)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name, help=command.summary, description=command.summary, parents=[after_command]
        )
        command.add_arguments(sub)
    for plugin in _plugins():
        if plugin.cli_module is None:
            continue
        sub = commands.add_parser(
            plugin.name,
            help=plugin.cli_summary,
            description=plugin.cli_summary,
            parents=[after_command],
        )
        # The subtree is the plugin's: parsed by its own parser when the command runs.
        sub.add_argument("plugin_arguments", nargs=argparse.REMAINDER, metavar="...")
    return parser


def _plugin_arguments(plugin: VendorPlugin, args: argparse.Namespace) -> argparse.Namespace:
    """``blelock NAME …``: the rest parsed by the plugin's own parser."""
    assert plugin.cli_module is not None
    module = importlib.import_module(plugin.cli_module)
    parser = argparse.ArgumentParser(
        prog=f"blelock {plugin.name}",
        description=plugin.cli_summary,
        parents=[_common_options(defaults=False)],
    )
    module.add_arguments(parser, [_common_options(defaults=False)])
    rest: list[str] = args.plugin_arguments
    parsed = parser.parse_args(rest, namespace=args)
    return parsed


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given == ["--version"]:
        # Before the table: building it loads every vendor's plugin for its options, which
        # was half of this start. Any other line, --version in it or not, is parsed whole.
        print(VERSION_LINE)
        return EXIT_OK
    parser = build_parser()
    try:
        args = parser.parse_args(given)
        plugin = None if args.command in COMMANDS else _plugin_named(args.command)
        if plugin is not None:
            args = _plugin_arguments(plugin, args)
    except SystemExit as exit_:  # argparse has printed usage or --version already
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    _without_httpx_cli()
    try:
        if plugin is not None:
            assert plugin.cli_module is not None
            module = importlib.import_module(plugin.cli_module)
        else:
            module = importlib.import_module(COMMANDS[args.command].module)
        code: int = module.run(args)
        return code
    except KeyboardInterrupt:
        print("blelock: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:
        from blelock.cli.render import report_failure

        return report_failure(exc, as_json=args.json, debug=args.debug)


def _without_httpx_cli() -> None:
    """httpx imports its own command-line client (click, pygments, rich.syntax: ~25 ms) when
    those happen to be installed, and blelock never runs it. A None in ``sys.modules`` makes
    httpx's guarded ``from ._main import main`` take the fallback it has for their absence."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def _plugin_named(name: str) -> VendorPlugin:
    return next(plugin for plugin in _plugins() if plugin.name == name)
