"""A vendor with grants for the reconciler's tests: an in-memory cloud with no idempotency keys
(a create twice is two objects), which can fail a call after doing it (a lost answer, as a
kill -9 between the vendor's answer and the store's write would leave it)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from blelock.errors import CloudRejected, CloudUnavailable, UsageError
from blelock.grants import AccessConstraints, CodeRules, Item, Target
from blelock.vendors.base import (
    AccessSession,
    AccessTranslation,
    Applied,
    OptionSpec,
    VendorContext,
    VendorPlugin,
)


@dataclass
class Stall:
    nth: int
    """Which create (1-based) is held."""
    landed: bool
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    creates: int = 0


@dataclass
class FakeCloud:
    objects: dict[str, dict[str, object]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    calls: dict[str, int] = field(default_factory=dict)
    lose_answer_after: set[str] = field(default_factory=set)
    """Call names whose next call is done and then answered with a lost connection."""
    down: bool = False
    refuse: set[str] = field(default_factory=set)
    pins: dict[str, str] = field(default_factory=dict)
    """Holders whose objects the cloud refuses for good."""
    stall: Stall | None = None
    """One create held until the test lets it go: a vendor slower than a lease."""

    async def _stalled(self, landed: bool) -> None:
        """Hold this create if it is the stalled one, made before (``landed``: only its answer
        is slow) or after the hold (the vendor had not acted on it yet)."""
        stall = self.stall
        if stall is None or stall.landed is not landed:
            return
        stall.creates += 1
        if stall.creates == stall.nth:
            stall.entered.set()
            await stall.released.wait()

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.down:
            raise CloudUnavailable("the fake cloud is down")

    def _lost(self, name: str) -> None:
        if name in self.lose_answer_after:
            self.lose_answer_after.discard(name)
            raise CloudUnavailable(f"the answer to {name} was lost")

    def holding(self, holder: str) -> list[dict[str, object]]:
        return [o for o in self.objects.values() if o["holder"] == holder]


class FakeAccess(AccessTranslation):
    identities = (OptionSpec("fake_user", "the holder's fake user"),)
    lead = dt.timedelta(hours=1)

    def __init__(self, cloud: FakeCloud, *, windows: bool = True, codes: bool = False) -> None:
        self.cloud = cloud
        self.windows = windows
        self.takes_codes = codes
        if codes:
            self.codes = (OptionSpec("fake_pin", "the holder's fake PIN"),)

    async def constraints(self, ctx: VendorContext, lock_id: str) -> AccessConstraints:
        return AccessConstraints(
            vendor="fake",
            lock_id=lock_id,
            credential="pass",
            identity="fake_user",
            enforces_period=True,
            weekly_windows=self.windows,
            needs_end=False,
            code=CodeRules("123456789", (6,), ("12",)) if self.takes_codes else None,
            code_name="fake_pin" if self.takes_codes else None,
        )

    def items(self, target: Target, span_from: dt.datetime, span_to: dt.datetime) -> list[Item]:
        items = []
        for start, end in target.schedule.openings(span_from, span_to):
            open_end = end.year == dt.MAXYEAR
            native = {
                "holder": target.holder.identities["fake_user"],
                "lock": target.lock.lock_id,
                "start": start.isoformat(),
                "end": None if open_end else end.isoformat(),
            }
            items.append(
                Item(f"pass {start.isoformat()}", start, None if open_end else end, "vendor",
                     native)
            )  # fmt: skip
        return items

    @contextlib.asynccontextmanager
    async def session(self, ctx: VendorContext) -> AsyncIterator[AccessSession]:
        yield _Session(self.cloud)


class _Session:
    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud

    async def find(self, target: Target, item: Item, taken: frozenset[str]) -> str | None:
        self.cloud._call("list")
        for ref, obj in self.cloud.objects.items():
            if ref not in taken and obj == dict(item.native):
                return ref
        return None

    async def apply(self, target: Target, item: Item) -> Applied:
        self.cloud._call("create")
        if item.native["holder"] in self.cloud.refuse:
            raise CloudRejected("the fake cloud refuses this holder", status=400)
        await self.cloud._stalled(landed=False)
        ref = f"obj-{next(self.cloud.ids)}"
        self.cloud.objects[ref] = dict(item.native)
        if "fake_pin" in target.holder.codes:  # the vendor is given the code, nothing else is
            self.cloud.pins[ref] = target.holder.codes["fake_pin"].reveal()
        await self.cloud._stalled(landed=True)
        self.cloud._lost("create")
        return Applied(ref)

    async def confirm(self, target: Target, item: Item, ref: str) -> str | None:
        self.cloud._call("get")
        return ref if ref in self.cloud.objects else None

    async def revoke(self, target: Target, item: Item, ref: str | None) -> None:
        self.cloud._call("delete")
        if ref is not None:
            self.cloud.objects.pop(ref, None)
        self.cloud._lost("delete")


class FakePlugin(VendorPlugin):
    name = "fake"
    title = "Fake"

    def __init__(self, access: FakeAccess) -> None:
        self._access = access

    def parse_lock_id(self, text: str) -> str:
        if not text.startswith("F-"):
            raise UsageError(f"{text!r} is not a fake lock")
        return text

    def access(self) -> AccessTranslation:
        return self._access


@dataclass
class SteppedClock:
    """A clock tests move by hand; sleeping moves it."""

    now: dt.datetime

    def now_utc(self) -> dt.datetime:
        return self.now

    def monotonic(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class DeadlineClock(SteppedClock):
    """A stepped clock whose deadlines (:meth:`timeout`) run out when the test moves it past
    them, as a real one's would while a call waited."""

    _deadlines: list[tuple[dt.datetime, asyncio.Timeout]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def timeout(self, seconds: float) -> AsyncIterator[None]:
        async with asyncio.timeout(None) as deadline:
            entry = (self.now + dt.timedelta(seconds=seconds), deadline)
            self._deadlines.append(entry)
            try:
                yield
            finally:
                self._deadlines.remove(entry)

    def advance(self, **delta: float) -> None:
        super().advance(**delta)
        for moment, deadline in self._deadlines:
            if moment <= self.now:
                deadline.reschedule(asyncio.get_running_loop().time())
