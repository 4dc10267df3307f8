"""The companion's jobs, composed from Settings and the vendor registry: open the store, find
which plugin owns a lock, run one of its operations. The CLI and the kiosk service both run
these; neither re-assembles a visit from its parts, and nothing here names a vendor.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from blelock import vendors
from blelock.clock import Clock, SystemClock
from blelock.config import Settings
from blelock.errors import DeviceNotFound, UsageError, lock_context
from blelock.model import VisitResult
from blelock.transport.scan import Found, find_lock
from blelock.vendors.base import KeptClients, OperationRequest, VendorContext, VendorPlugin

if TYPE_CHECKING:
    from blelock.store import Store

__all__ = ["Resolved", "context", "execute", "open_store", "resolve", "run_operation"]


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The store, migrated for every registered plugin's tables."""
    # Imported here, not above: a job's scan is already listening when its store opens.
    from blelock.store import open_store as _open_store

    migrations = {name: plugin.migrations for name, plugin in vendors.plugins().items()}
    async with _open_store(settings, migrations) as store:
        yield store


def context(
    plugin: VendorPlugin,
    settings: Settings,
    store: Store,
    *,
    found: Found | None = None,
    clock: Clock | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    clients: KeptClients | None = None,
    radio_done: Callable[[], None] | None = None,
    radio_needed: Callable[[], Awaitable[None]] | None = None,
    listening: asyncio.Future[Found] | None = None,
    preload: Sequence[str] = (),
) -> VendorContext:
    ctx = VendorContext(
        plugin,
        settings,
        store,
        clock or SystemClock(),
        found,
        listening=listening,
        clients=clients,
        preload=preload,
    )
    if progress is not None:
        ctx.progress = progress
    if radio_done is not None:
        ctx.radio_done = radio_done
    if radio_needed is not None:
        ctx.radio_needed = radio_needed
    return ctx


@dataclass(frozen=True, slots=True)
class Resolved:
    """Which plugin owns a lock, its id in that plugin's form, and the sighting that decided
    it (when a scan did)."""

    plugin: VendorPlugin
    lock_id: str
    found: Found | None


def candidates(text: str, operation: str | None = None) -> list[tuple[VendorPlugin, str]]:
    """Each plugin whose lock-id format accepts ``text`` (and that has ``operation``)."""
    matches: list[tuple[VendorPlugin, str]] = []
    accepted = False
    first_error: UsageError | None = None
    for plugin in vendors.plugins().values():
        # A vendor without operations (cloud-only) opens nothing: never a candidate, and its
        # refusal is not the one to report.
        able = bool(plugin.operations) and (operation is None or operation in plugin.operations)
        try:
            canonical = plugin.parse_lock_id(text)
        except UsageError as exc:
            if able:
                first_error = first_error or exc
            continue
        accepted = True
        if able:
            matches.append((plugin, canonical))
    # No vendor's format accepts it: say what is wrong with it (a malformed MAC, …).
    if not accepted and first_error is not None:
        raise first_error
    return matches


async def resolve(
    text: str,
    settings: Settings,
    *,
    vendor: str | None = None,
    operation: str | None = None,
) -> Resolved:
    """The plugin that owns ``text``: the one named, else the only one whose format accepts
    it, else the one whose lock a scan hears with that id; an id several vendors could own on a
    lock not heard is refused, naming them (``--vendor`` says which)."""
    if vendor is not None:
        plugin = vendors.plugin(vendor)
        return Resolved(plugin, plugin.parse_lock_id(text), None)
    matches = candidates(text, operation)
    if not matches:
        what = f"{operation} " if operation else ""
        raise UsageError(
            f"no vendor can {what}a lock named {text!r}",
            hint="check the lock's id with `blelock scan`; name the vendor with --vendor",
        )
    if len(matches) == 1:
        plugin, canonical = matches[0]
        return Resolved(plugin, canonical, None)
    ids = {canonical for _, canonical in matches}
    try:
        with lock_context(text, "scan"):
            found = await _first_heard(ids, settings, [plugin for plugin, _ in matches])
    except DeviceNotFound:
        names = ", ".join(plugin.name for plugin, _ in matches)
        raise UsageError(
            f"{text!r} could be a lock of {names}, and no such lock was heard",
            hint=f"name the vendor with --vendor ({names.replace(', ', ' or ')})",
        ) from None
    owner = next(plugin for plugin, _ in matches if plugin.name == found.sighting.vendor)
    return Resolved(owner, found.sighting.lock_id, found)


async def _first_heard(ids: set[str], settings: Settings, plugins: Sequence[VendorPlugin]) -> Found:
    if len(ids) == 1:
        return await find_lock(next(iter(ids)), settings, plugins)
    # Each plugin wrote the id its own way: listen for each plugin's own form of it.
    for plugin in plugins:
        for lock_id in ids:
            try:
                return await find_lock(lock_id, settings, [plugin])
            except DeviceNotFound:
                continue
    raise DeviceNotFound("not heard")


async def run_operation(
    settings: Settings,
    lock: str,
    request: OperationRequest,
    *,
    vendor: str | None = None,
    store: Store | None = None,
    found: Found | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    clients: KeptClients | None = None,
    preload: Sequence[str] = (),
) -> VisitResult:
    """Resolve the lock's plugin and run the operation (``request.operation``, or the plugin's
    default when it is empty) with the store open (``store``: one the caller keeps open;
    ``clients``: cloud clients it keeps, see :class:`KeptClients`; ``preload``: modules the
    caller needs afterwards, see :attr:`VendorContext.preload`)."""
    operation = request.operation or None
    resolved = await resolve(lock, settings, vendor=vendor, operation=operation)
    plugin = resolved.plugin
    request = check_request(plugin, request)
    found = found or resolved.found
    async with contextlib.AsyncExitStack() as stack:
        listening = None
        if found is None and plugin.operations[request.operation].finds_lock_first:
            # The radio listens while the store opens and the plugin imports what it needs:
            # the first advert takes a while to come (a Nokē padlock's is slow), time no work
            # of ours need wait for.
            listening = await stack.enter_async_context(
                _listening(resolved.lock_id, settings, plugin)
            )
        if store is None:
            store = await stack.enter_async_context(open_store(settings))
        ctx = context(
            plugin,
            settings,
            store,
            found=found,
            progress=progress,
            clients=clients,
            listening=listening,
            preload=preload,
        )
        return await execute(ctx, resolved.lock_id, request)


@contextlib.asynccontextmanager
async def _listening(
    lock_id: str, settings: Settings, plugin: VendorPlugin
) -> AsyncIterator[asyncio.Task[Found]]:
    """A scan for ``lock_id`` running while the job does other work; cancelled on the way out
    if nobody awaited it (the job failed first), its failure then dropped with it."""

    async def listen() -> Found:
        with lock_context(lock_id, "scan"):
            return await find_lock(lock_id, settings, [plugin])

    task = asyncio.create_task(listen())
    try:
        await asyncio.sleep(0)  # the scan asks the radio now, before the caller's own work
        yield task
    finally:
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody awaited is the job's to report


async def execute(ctx: VendorContext, lock_id: str, request: OperationRequest) -> VisitResult:
    """Run a checked request: room for the records the visit can produce is made first, so a
    lock is opened only when its records can be kept (refused before the lock is touched).
    An operation that takes its connection slot when it needs it (after cloud work, maybe a
    wait for the slot) has the room made again once it has the slot, before the lock."""

    async def make_room() -> None:
        await ctx.outbox.reserve(ctx.plugin.records_per_visit(), lock_id=lock_id)

    with lock_context(lock_id, request.operation):
        await make_room()
        if ctx.plugin.operations[request.operation].slot_when_needed:
            take_slot = ctx.radio_needed

            async def radio_needed() -> None:
                await take_slot()
                await make_room()

            ctx = dataclasses.replace(ctx, radio_needed=radio_needed)
        return await ctx.plugin.run(ctx, lock_id, request)


def check_request(plugin: VendorPlugin, request: OperationRequest) -> OperationRequest:
    """The request as the plugin's operation takes it: its default operation filled in, the
    mode and options checked against what the operation allows."""
    operation = request.operation or plugin.default_operation
    if operation is None or operation not in plugin.operations:
        offered = ", ".join(plugin.operations) or "nothing"
        raise UsageError(
            f"{plugin.title} locks cannot {operation or 'be opened'}",
            hint=f"they can: {offered}",
        )
    spec = plugin.operations[operation]
    if request.mode not in spec.modes:
        raise UsageError(
            f"{plugin.title} {operation} cannot run {request.mode}",
            hint=f"it runs: {', '.join(sorted(spec.modes))}",
        )
    known = {option.name for option in spec.options}
    unknown = sorted(set(request.options) - known)
    if unknown:
        raise UsageError(
            f"{plugin.title} {operation} takes no {', '.join(unknown)}",
            hint=f"it takes: {', '.join(sorted(known)) or 'no options'}",
        )
    if spec.takes_package and request.package is None:
        raise UsageError(f"{plugin.title} {operation} needs a firmware package")
    return OperationRequest(operation, request.mode, request.options, request.package)
