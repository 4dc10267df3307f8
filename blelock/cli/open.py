"""``blelock open LOCK [--op OP]``, its aliases ``unlock`` / ``unshackle``, and
``firmware-update LOCK PACKAGE``: one operation on one lock of whichever vendor owns it.

Online by default; when the vendor's cloud cannot be reached, what was synced earlier opens
the lock (``--offline`` forces it, ``--online`` refuses it). Every record the lock gives is in
the outbox before we return.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from blelock.cli import operation_options
from blelock.cli.context import settings_from
from blelock.cli.render import DRAW_MODULES, show_firmware_update, show_results, transfer_progress
from blelock.errors import UsageError
from blelock.jobs import resolve, run_operation
from blelock.model import VisitResult
from blelock.vendors.base import KeptClients, Mode, OperationRequest, OptionValue, VendorPlugin

if TYPE_CHECKING:
    from blelock.config import Settings
    from blelock.protocol.dfu_package import DfuPackage
    from blelock.store import Store

ALIASES = {"unlock": "unlock", "unshackle": "unshackle", "firmware-update": "firmware-update"}
"""Commands that name their operation (kept so that earlier scripts go on working)."""


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    package = None
    if args.command == "firmware-update":
        from blelock.protocol.dfu_package import read_package

        package = read_package(args.package)  # a bad package is refused before any radio work
    result = asyncio.run(visit(args, settings, package))
    show(args, result)
    return 0


async def visit(
    args: argparse.Namespace,
    settings: Settings,
    package: DfuPackage | None = None,
    *,
    store: Store | None = None,
    clients: KeptClients | None = None,
) -> VisitResult:
    """The command's operation on its lock (``store`` and ``clients``: kept open by a caller
    that outlives one command, ``blelock agent``). The results table's modules are imported
    in a thread while the visit waits (see :mod:`blelock.preload`); the agent imported them at
    start-up, so it starts no thread."""
    operation = ALIASES.get(args.command) or args.op or ""
    mode: Mode = (
        "offline" if getattr(args, "offline", False) else
        "online" if getattr(args, "online", False) else "auto"
    )  # fmt: skip
    resolved = await resolve(args.lock, settings, vendor=args.vendor, operation=operation or None)
    request = OperationRequest(operation, mode, _options(args, resolved.plugin, operation), package)
    if package is None:
        return await run_operation(
            settings, resolved.lock_id, request, vendor=resolved.plugin.name,
            found=resolved.found, store=store, clients=clients,
            preload=() if args.json else DRAW_MODULES,
        )  # fmt: skip
    with transfer_progress(package.size, enabled=not args.json) as advance:
        return await run_operation(
            settings, resolved.lock_id, request, vendor=resolved.plugin.name,
            found=resolved.found, progress=lambda done, total: advance(done), store=store,
            clients=clients,
        )  # fmt: skip


def show(args: argparse.Namespace, result: VisitResult) -> None:
    if args.command == "firmware-update":
        show_firmware_update(result, as_json=args.json)
    else:
        show_results([result], [], as_json=args.json)


def _options(
    args: argparse.Namespace, plugin: VendorPlugin, operation: str
) -> dict[str, OptionValue]:
    """The vendor options given on the command line, each parsed by its spec; one the vendor's
    operation does not take is refused by name."""
    name = operation or plugin.default_operation or ""
    spec = plugin.operations.get(name)
    taken = {option.name: option for option in (spec.options if spec else ())}
    given: dict[str, OptionValue] = {}
    # The options the parser offered: every vendor's, for this command's operation.
    for key in {o.name for o in operation_options(ALIASES.get(args.command))}:
        value = getattr(args, key, None)
        if value in (None, False, []):
            continue
        if key not in taken:
            raise UsageError(
                f"--{key.replace('_', '-')} is not an option of {plugin.title} {name}",
                hint=f"it takes: {', '.join('--' + o.replace('_', '-') for o in taken) or 'none'}",
            )
        try:
            given[key] = value if isinstance(value, bool) else taken[key].parse(value)
        except ValueError as exc:
            raise UsageError(f"--{key.replace('_', '-')} {value!r}: {exc}") from None
    return given
