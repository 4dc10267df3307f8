"""The vendor seam: what a vendor plugin gives, and what it is given.

Its settings section is not here: the plugin package keeps it in ``settings.py`` (a
``blelock.config.Section`` as ``SETTINGS``, pydantic only), which the settings loader imports
without the plugin; every field of it also answers to the flat ``name_field`` and
``BLELOCK_NAME_FIELD`` of earlier releases.

Everything above ``blelock.vendors`` loops over the registry and speaks only these types; a
plugin translates them into its vendor's protocol, cloud and records. A plugin module is
imported when a command needs vendors, so it must stay light at import time: it imports its
protocol, cloud client and store adapter inside the methods that use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from blelock import preload
from blelock.clock import Clock, SystemClock
from blelock.errors import UsageError
from blelock.model import (
    Advert,
    KeptLog,
    KeyInfo,
    LogRecord,
    PhoneKeyRequest,
    Sighting,
    VisitResult,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from blelock.config import Settings
    from blelock.grants import AccessConstraints, Grant, Item, Target
    from blelock.protocol.dfu_package import DfuPackage
    from blelock.store import Store
    from blelock.store.outbox import Outbox
    from blelock.transport.scan import Found

__all__ = [
    "AccessSession",
    "AccessTranslation",
    "Applied",
    "DemoHooks",
    "DemoLocks",
    "Facts",
    "KeptClients",
    "Mode",
    "OperationRequest",
    "OperationSpec",
    "OptionSpec",
    "Uploader",
    "VendorContext",
    "VendorPlugin",
]

Mode = Literal["auto", "online", "offline"]
"""auto: the vendor's cloud, or what was synced earlier when it cannot be reached."""
ALL_MODES: frozenset[Mode] = frozenset({"auto", "online", "offline"})
S = TypeVar("S", bound="BaseModel")
C = TypeVar("C")

OptionValue = str | int | bool
Facts = Mapping[str, str | int | float | bool | None]
"""Flat, JSON-ready facts about what a call did (a job's result)."""


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One vendor-specific option of an operation or of a sync: ``--name`` on the command line
    (underscores as dashes), ``name`` in the kiosk API's body."""

    name: str
    help: str
    flag: bool = False
    """A switch (True when given); otherwise it takes a value."""
    metavar: str = "VALUE"
    repeatable: bool = False
    """Given several times, it is a list of values (sync options only)."""
    parse: Callable[[str], OptionValue] = str
    """Turns the text given into the value (raising ValueError with the reason)."""


@dataclass(frozen=True, slots=True)
class DemoLocks:
    """How many of a vendor's locks ``blelock demo`` asks the simulator for: its option
    ``--NAME-locks``, passed on to ``blelock-sim`` under the same name."""

    default: int
    help: str


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """What a lock of this vendor can be asked to do."""

    name: str
    summary: str
    budget_s: float | None = None
    """The whole operation's time budget; None: a scan and one visit (see :func:`visit_budget`)."""
    long_running: bool = False
    """The kiosk answers at once with a job to poll, rather than when done."""
    modes: frozenset[Mode] = ALL_MODES
    options: tuple[OptionSpec, ...] = ()
    takes_package: bool = False
    """A firmware package goes with it (``OperationRequest.package``)."""
    slot_when_needed: bool = False
    """The kiosk gives it a connection slot when it asks (``VendorContext.radio_needed``), not
    before it starts: cloud work before its radio work (a sync) leaves the adapter to others."""
    finds_lock_first: bool = True
    """Its radio work starts by finding the lock by its own advert (``find_lock`` with the
    plugin): a job outside the kiosk starts that scan with the job, so the store opens while
    the radio listens, and the plugin takes it with ``transport.scan.sighted(…, ctx.sighting)``
    where it would have scanned, after its own checks. False for one that listens for
    something else first (a firmware update, for the lock or its bootloader)."""

    def budget(self, settings: Settings) -> float:
        return visit_budget(settings) if self.budget_s is None else self.budget_s


def visit_budget(settings: Settings) -> float:
    t = settings.timeouts
    # A scan (when no fresh sighting was at hand), a whole visit, and the upload of its records
    # right after it (bounded by the cloud timeout), so the lock having opened is never
    # followed by the job timing out.
    return t.scan + t.visit + 2 * t.gatt + t.cloud


@dataclass(frozen=True, slots=True)
class OperationRequest:
    operation: str
    mode: Mode = "auto"
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    package: DfuPackage | None = None


class Uploader(Protocol):
    """What a plugin's outbox stream is uploaded through, one batch per call. A batch keeps its
    idempotency key until it was acknowledged, so a resent batch changes nothing at the cloud."""

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None: ...


def _no_radio_left() -> None:
    pass


async def _radio_at_hand() -> None:
    pass


def _no_progress(done: int, total: int | None) -> None:
    pass


class KeptClients:
    """Cloud clients kept as long as their owner lives (the kiosk's runner, a benchmark), each
    made on first use under its name and closed with the owner: a visit then pays for neither a
    new HTTP client nor a new connection to its cloud. Use as ``async with KeptClients():``."""

    def __init__(self) -> None:
        self._kept: dict[str, Any] = {}
        self._exit = contextlib.AsyncExitStack()

    async def get(self, name: str, make: Callable[[], AbstractAsyncContextManager[C]]) -> C:
        if name not in self._kept:
            made = await self._exit.enter_async_context(make())
            # Two visits may have raced here: the first one made is kept (both are closed).
            self._kept.setdefault(name, made)
        kept: C = self._kept[name]
        return kept

    async def aclose(self) -> None:
        self._kept.clear()
        await self._exit.aclose()

    async def __aenter__(self) -> KeptClients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass
class VendorContext:
    """What one plugin call is given: the settings (its own section among them), the store
    scoped to the plugin's outbox stream, the clock, and a fresh sighting when one is at hand
    (:meth:`sighting`)."""

    plugin: VendorPlugin
    settings: Settings
    store: Store
    clock: Clock = field(default_factory=SystemClock)
    found: Found | None = None
    """A sighting in hand (the scan that decided the lock's vendor, the kiosk's fresh one)."""
    listening: asyncio.Future[Found] | None = None
    """A scan for the lock the job started before the plugin was called (see
    :attr:`OperationSpec.finds_lock_first`); its owner cancels it if it is never awaited."""
    progress: Callable[[int, int | None], None] = _no_progress
    """``progress(done, total)`` for long operations (bytes of a firmware image)."""
    clients: KeptClients | None = None
    """Where cloud clients outlive the call (see :meth:`client`); None: made per call."""
    radio_done: Callable[[], None] = _no_radio_left
    """Called by the plugin once its links are closed and only cloud calls remain (the
    upload after a visit): the kiosk frees the job's connection slot then, not after the
    upload, so the next lock's connection need not wait out a cloud round trip."""
    radio_needed: Callable[[], Awaitable[None]] = _radio_at_hand
    """Awaited by an operation with ``slot_when_needed`` before its first scan or connection:
    the kiosk gives it a connection slot then (waiting for one, or failing OutOfSlots). Others
    hold theirs from the start, and outside the kiosk there is no slot to wait for."""
    preload: Sequence[str] = ()
    """Modules the caller needs once the visit is over (the CLI's table), imported in the
    background from when the plugin asks for the sighting: the radio's waits follow."""
    _preloading: bool = field(default=False, init=False, repr=False)

    @property
    def outbox(self) -> Outbox:
        return self.store.outbox(self.plugin.name)

    def section(self, model: type[S]) -> S:
        """This plugin's settings section, as its model."""
        return self.settings.section(self.plugin.name, model)

    async def sighting(self) -> Found | None:
        """The lock's fresh sighting: the one in hand, else the job's own scan's (awaited here,
        so its failure is raised here, naming the scan); None: the plugin scans itself."""
        if self.preload and not self._preloading:
            self._preloading = True
            preload.in_background(self.preload)
        if self.found is None and self.listening is not None:
            return await self.listening
        return self.found

    @contextlib.asynccontextmanager
    async def client(
        self, name: str, make: Callable[[], AbstractAsyncContextManager[C]]
    ) -> AsyncIterator[C]:
        """The plugin's cloud client ``name``: the kept one when the context has
        :attr:`clients` (left open on exit), else one made by ``make`` and closed on exit."""
        if self.clients is None:
            async with make() as fresh:
                yield fresh
        else:
            yield await self.clients.get(name, make)


@dataclass(frozen=True, slots=True)
class DemoHooks:
    """What ``blelock demo`` hands a plugin's own steps: what the simulator announced for it
    (``setup``), a way to move the simulated cloud's clock (where the simulator gave one), and
    where to say what happens."""

    setup: Mapping[str, object]
    set_cloud_time: Callable[[dt.datetime], Awaitable[None]]
    say: Callable[[str], None]


class VendorPlugin:
    """A vendor, as everything above the seam sees it. Subclass it and override what the vendor
    has; the defaults are those of a vendor without it (a cloud-only vendor has no adverts and
    no operations, one without offline keys lists none)."""

    name: str = ""
    """The registry key, the settings section, the outbox stream and ``--vendor``'s value."""
    title: str = ""
    """As people write it (with its diacritics)."""
    migrations: Sequence[str] = ()
    """SQL scripts for its own tables; version N is reached by running ``migrations[N-1]``."""
    service_uuids: Sequence[str] = ()
    """Scanned for; none for a cloud-only vendor."""
    operations: Mapping[str, OperationSpec] = {}
    default_operation: str | None = None
    """What ``blelock open LOCK`` does without ``--op``."""
    sync_options: Sequence[OptionSpec] = ()

    cli_module: str | None = None
    """A module with ``add_arguments(parser)`` and ``run(args) -> int``: the ``blelock NAME …``
    subtree, imported only when that command runs."""
    cli_summary: str = ""
    api_module: str | None = None
    """A module with ``router(settings) -> fastapi.APIRouter``: the kiosk API's routes of this
    vendor, mounted at ``/v1/NAME`` under the service's bearer token."""
    cloud_modules: Sequence[str] = ()
    """Modules a one-shot command imports only at its first cloud call (an offline open needs
    none); a resident process (the agent, the kiosk) imports them up front, off its loop."""
    demo_locks: DemoLocks | None = None
    """Its locks in ``blelock demo``'s simulated world beside the padlocks of ``--locks``;
    None: the demo has no option for it."""

    def records_per_visit(self) -> int:
        """The most records one visit can give: room for them is made before the lock is
        touched (the default is ``blelock.store.outbox.VISIT_RECORDS``, a command visit's)."""
        return 64

    def parse_advert(self, advert: Advert) -> Sighting | None:
        """A lock of this vendor, or None for anything else (never raises)."""
        return None

    def parse_lock_id(self, text: str) -> str:
        """The lock id in canonical form; UsageError for what is not this vendor's."""
        raise UsageError(f"{self.title} locks are not opened by blelock")

    async def active(self, ctx: VendorContext) -> bool:
        """Set up here (its cloud's credentials, or this companion enrolled with it), so sync
        and the kiosk's upkeep have work to do for it."""
        return False

    def uploads_configured(self, settings: Settings) -> bool:
        """Its uploader has the credentials it needs."""
        return False

    async def run(self, ctx: VendorContext, lock_id: str, request: OperationRequest) -> VisitResult:
        raise UsageError(f"{self.title} locks cannot {request.operation}")

    @contextlib.asynccontextmanager
    async def uploader(self, ctx: VendorContext) -> AsyncIterator[Uploader]:
        """Its cloud's side of the outbox drain (:func:`blelock.vendors.outbox.drain_outbox`)."""
        raise UsageError(f"{self.title} has no records to upload")
        yield  # pragma: no cover - an async generator needs one

    def check_sync(
        self, locks: Sequence[str] | None, options: Mapping[str, OptionValue | Sequence[str]]
    ) -> None:
        """A UsageError for a key sync that cannot be asked for so (before anything is opened;
        :meth:`sync_keys` checks again)."""

    async def sync_keys(
        self,
        ctx: VendorContext,
        locks: Sequence[str] | None,
        options: Mapping[str, OptionValue | Sequence[str]],
    ) -> Mapping[str, int]:
        """Fetch what opens its locks offline; counts by name (what was added, dropped, …)."""
        return {}

    async def refresh_keys(self, ctx: VendorContext, due_within: dt.timedelta) -> bool:
        """Refresh cached keys that stop working within ``due_within``; whether its cloud was
        called (the kiosk's upkeep)."""
        return False

    async def list_keys(self, ctx: VendorContext) -> Sequence[KeyInfo]:
        return ()

    def access(self) -> AccessTranslation | None:
        """Its access translation (grants in the vendor's own form), imported when asked for;
        None: the vendor takes no grants."""
        return None

    async def demo_before_opening(
        self, ctx: VendorContext, locks: Sequence[Found], hooks: DemoHooks
    ) -> Sequence[VisitResult]:
        """``blelock demo``: what a technician does with this vendor's locks (those heard)
        before opening them; what it did, to show. A failure is raised."""
        return ()

    async def demo_after_opening(
        self, ctx: VendorContext, locks: Sequence[Found], hooks: DemoHooks
    ) -> Sequence[VisitResult]:
        """``blelock demo``: what is done once the locks were opened (a cloud-only vendor,
        which has no locks to hear, does its key management here)."""
        return ()

    async def kept_logs(self, ctx: VendorContext, limit: int) -> tuple[int, Sequence[KeptLog]]:
        """Log entries kept here that go to no cloud from here (how many, and the newest
        ``limit``): a vendor whose cloud gets its locks' logs another way keeps them for
        ``blelock logs`` to show."""
        return 0, ()

    async def enroll(self, ctx: VendorContext, invitation: str) -> str:
        """Make this companion one of the vendor's devices with the invitation code its
        administrator handed out; returns the id the vendor gave it."""
        raise UsageError(f"{self.title} has no enrolment of devices")

    phone_keys: bool = False
    """Its cloud gives phones keys that the vendor's own app opens locks with (the kiosk's
    ``/v1/phone-keys``): :meth:`issue_phone_key` and :meth:`revoke_phone_keys`."""

    def check_phone_key(self, request: PhoneKeyRequest) -> None:
        """Refuse (UsageError naming what is wrong) what this vendor would refuse, before any
        job is queued or anything sent; :meth:`issue_phone_key` checks again."""

    async def issue_phone_key(self, ctx: VendorContext, request: PhoneKeyRequest) -> Facts:
        """Give ``request.phone`` a key for the lock and wait until the vendor made it;
        ``ctx.progress(done, total)`` as keys are made. Facts: the key's id and state, …"""
        raise UsageError(f"{self.title} gives no keys to phones")

    async def revoke_phone_keys(
        self, ctx: VendorContext, phone: str, lock_id: str | None = None
    ) -> Facts:
        """Take away every key of ``phone`` (on ``lock_id`` only, when given)."""
        raise UsageError(f"{self.title} gives no keys to phones")


# --- access: grants in a vendor's own form ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    """What a vendor answered to an item applied."""

    ref: str
    """The vendor's id for it (what revoking and matching use)."""
    confirmed: bool = True
    """False: the vendor took the request and has not carried it out yet (a job, a sync to the
    lock); the reconciler asks :meth:`AccessSession.confirm` later."""


class AccessSession(Protocol):
    """One reconcile run's connection to a vendor (its cloud client, kept for the run).

    The vendors have no idempotency keys for grants, so an item whose apply may have been
    interrupted is first looked for by listing and matching (:meth:`find`)."""

    async def find(self, target: Target, item: Item, taken: frozenset[str]) -> str | None:
        """The vendor's id of an object matching ``item`` exactly, other than those in
        ``taken`` (ids other items already own); None when there is none."""
        ...

    async def apply(self, target: Target, item: Item) -> Applied: ...

    async def confirm(self, target: Target, item: Item, ref: str) -> str | None:
        """An item applied (or found) unconfirmed: its vendor id once carried out (a job's
        key, or ``ref`` itself), None while it is not; a refusal raises
        :class:`blelock.errors.CloudRejected`."""
        ...

    async def revoke(self, target: Target, item: Item, ref: str | None) -> None:
        """Remove it; one already gone is no error. ``ref`` None: look for it first."""
        ...


class AccessTranslation:
    """A vendor's part of access grants: the rules (as data), the translation into its own
    form, and a session that applies, finds and revokes. Pure except :meth:`constraints`
    (which may ask the cloud how much room a lock has) and :meth:`session`."""

    identities: Sequence[OptionSpec] = ()
    """The holder identities it needs (``--tracking-key``, …); stored on the holder by name."""
    codes: Sequence[OptionSpec] = ()
    """The secret codes it opens with (a keypad PIN, …): read from stdin or the API's body,
    never argv; sealed at rest; given to :class:`AccessSession` in the target's holder."""
    lead: dt.timedelta = dt.timedelta(days=2)
    """How far ahead of its start an item the vendor enforces itself is applied."""
    confirm_after: dt.timedelta = dt.timedelta(seconds=5)
    """How soon an unconfirmed item is asked about again (a job: seconds; a store-and-forward
    lock that learns at its next online unlock: longer)."""

    def lock_id(self, text: str, *, named: bool) -> str | None:
        """A lock id as grants name it, canonical; a UsageError for one that is not this
        vendor's; None: the plugin's own :meth:`VendorPlugin.parse_lock_id` decides. ``named``:
        written ``VENDOR:ID`` (a vendor whose ids look like others' takes only that form)."""
        return None

    def refusals(self, grant: Grant, rules: AccessConstraints) -> list[str]:
        """What the rules as data cannot say is refused, in words (default: nothing)."""
        return []

    async def constraints(self, ctx: VendorContext, lock_id: str) -> AccessConstraints:
        raise NotImplementedError

    def items(self, target: Target, span_from: dt.datetime, span_to: dt.datetime) -> Sequence[Item]:
        """The vendor-side objects ``target`` needs that are in force at some time in
        [span_from, span_to), in the vendor's own form (deterministic: same input, same keys)."""
        raise NotImplementedError

    def session(self, ctx: VendorContext) -> contextlib.AbstractAsyncContextManager[AccessSession]:
        raise NotImplementedError
