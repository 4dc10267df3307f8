"""A vendor plugin that exists only in these tests, registered through ``BLELOCK_PLUGINS``:
its locks are ``fake-…`` ids no radio hears, its operation does what the test says, its
upkeep reports what the test gave it. Two of them accept the same ids, as two real vendors
accept a MAC."""

from __future__ import annotations

import datetime as dt
import sys
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import pytest

from blelock import registry, vendors
from blelock.errors import UsageError
from blelock.model import KeyInfo, VisitResult
from blelock.vendors.base import (
    OperationRequest,
    OperationSpec,
    OptionSpec,
    VendorContext,
    VendorPlugin,
)

Behaviour = Callable[["FakePlugin", str, OperationRequest], Awaitable[VisitResult]]


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 9:
        raise ValueError("must be between 1 and 9")
    return value


COUNT = OptionSpec("count", "how many times (1-9)", metavar="N", parse=_count)


async def _nothing() -> None:
    pass


async def _done(plugin: FakePlugin, lock_id: str, request: OperationRequest) -> VisitResult:
    return plugin.result(lock_id, request)


class FakePlugin(VendorPlugin):
    operations: Mapping[str, OperationSpec] = {
        "unlock": OperationSpec("unlock", "pretend to unlock", options=(COUNT,)),
        "sync-then-open": OperationSpec(
            "sync-then-open", "pretend to ask the cloud, then to open", slot_when_needed=True
        ),
    }
    default_operation = "unlock"

    def __init__(self, name: str) -> None:
        self.name = name
        self.title = name.title()
        self.reset()

    def reset(self) -> None:
        self.behaviour: Behaviour = _done
        self.is_active = False
        self.keys: list[KeyInfo] = []
        self.refresh_error: Exception | None = None
        self.refreshed = 0
        self.radio_done_first = False
        """Say the radio is done (``ctx.radio_done()``) before the behaviour runs, as a visit
        does before its upload."""
        self.cloud_first: Callable[[], Awaitable[None]] = _nothing
        """What ``sync-then-open`` does before it asks for the radio (``ctx.radio_needed``)."""

    def result(self, lock_id: str, request: OperationRequest) -> VisitResult:
        return VisitResult(
            lock_id,
            self.name,
            request.operation,
            online=True,
            logs_kept=0,
            battery_mv=2900,
            details={"ran_by": self.name, **request.options},
        )

    def parse_lock_id(self, text: str) -> str:
        if not text.lower().startswith("fake-"):
            raise UsageError(f"{text!r} is not a fake lock's id")
        return text.lower()

    async def active(self, ctx: VendorContext) -> bool:
        return self.is_active

    async def run(self, ctx: VendorContext, lock_id: str, request: OperationRequest) -> VisitResult:
        if self.radio_done_first:
            ctx.radio_done()
        if request.operation == "sync-then-open":
            await self.cloud_first()
            await ctx.radio_needed()
        return await self.behaviour(self, lock_id, request)

    async def refresh_keys(self, ctx: VendorContext, due_within: dt.timedelta) -> bool:
        self.refreshed += 1
        if self.refresh_error is not None:
            raise self.refresh_error
        return True

    async def list_keys(self, ctx: VendorContext) -> Sequence[KeyInfo]:
        return list(self.keys)


PLUGINS = {name: FakePlugin(name) for name in ("fake", "twin", "broken")}


def register(monkeypatch: pytest.MonkeyPatch, names: Iterable[str]) -> list[FakePlugin]:
    """Put the fakes named into the registry (as a site's own plugins would be), fresh."""
    chosen = [PLUGINS[name] for name in names]
    table = []
    for plugin in chosen:
        plugin.reset()
        package = f"blelock_test_vendor_{plugin.name}"
        parent = types.ModuleType(package)
        parent.__path__ = []
        module = types.ModuleType(f"{package}.plugin")
        module.PLUGIN = plugin  # type: ignore[attr-defined]
        settings = types.ModuleType(f"{package}.settings")
        settings.SETTINGS = None  # type: ignore[attr-defined]
        for made in (parent, module, settings):
            monkeypatch.setitem(sys.modules, made.__name__, made)
        table.append(f"{plugin.name}={package}")
    monkeypatch.setenv(registry.PLUGINS_ENV, ",".join(table))
    assert [name for name in vendors.plugins() if name in PLUGINS] == [p.name for p in chosen]
    return chosen
