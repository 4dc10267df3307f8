"""A job outside the kiosk listens for its lock while it opens the store: the scan is asked
first, its sighting reaches the plugin through ``VendorContext.sighting``, its failure is
raised there naming the scan, and a job that fails first leaves no scan running. A vendor's
own checks before the radio (a pairing, an activation) still come before any wait for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from blelock import jobs
from blelock.config import Settings
from blelock.errors import ConfigError, DeviceNotFound, UsageError
from blelock.model import VisitResult
from blelock.store import Store
from blelock.transport import scan
from blelock.transport.scan import Found
from blelock.vendors.base import OperationRequest, OperationSpec, VendorContext, VendorPlugin
from tests.conftest import store_settings

LOCK = "LOCK-1"
FOUND = cast(Found, object())
SETTINGS = cast(Settings, object())


class _Plugin(VendorPlugin):
    name = "listening"
    title = "Listening"
    operations: Mapping[str, OperationSpec] = {
        "open": OperationSpec("open", "open"),
        "update": OperationSpec("update", "update", finds_lock_first=False),
    }


class _World:
    """Fakes for what a job touches, writing down the order it touched them in."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, *, scan_fails: bool = False, heard: bool = True
    ) -> None:
        self.events: list[str] = []
        self.store_opened = asyncio.Event()
        self.lock_heard = self.store_opened if heard else asyncio.Event()
        self.scan_fails = scan_fails
        plugin = _Plugin()
        monkeypatch.setattr(jobs, "find_lock", self.find_lock)
        monkeypatch.setattr(jobs, "open_store", self.open_store)
        monkeypatch.setattr(jobs, "resolve", lambda text, *_, **__: self._resolved(plugin, text))

    @staticmethod
    async def _resolved(plugin: VendorPlugin, text: str) -> jobs.Resolved:
        return jobs.Resolved(plugin, text, None)

    async def find_lock(self, lock_id: str, settings: Any, recognisers: Sequence[Any]) -> Found:
        self.events.append(f"scan {lock_id}")
        try:
            await self.lock_heard.wait()
        except asyncio.CancelledError:
            self.events.append("scan cancelled")
            raise
        if self.scan_fails:
            raise DeviceNotFound("not seen within 1 s of scanning")
        return FOUND

    @contextlib.asynccontextmanager
    async def open_store(self, settings: Any) -> AsyncIterator[Store]:
        self.events.append("store")
        self.store_opened.set()
        yield cast(Store, object())


async def _sighting_of(ctx: VendorContext, lock_id: str, request: OperationRequest) -> VisitResult:
    found = await ctx.sighting()
    return VisitResult(
        lock_id, "listening", request.operation, False, 0, None, {"found": found is FOUND}
    )


@pytest.mark.parametrize(
    ("operation", "events", "sighted"),
    [
        # The scan is asked before the store opens, and its sighting reaches the plugin.
        ("open", [f"scan {LOCK}", "store"], True),
        # An operation that listens for something else first (the lock or its bootloader).
        ("update", ["store"], False),
    ],
)
async def test_a_job_asks_the_radio_for_its_lock_before_it_opens_the_store(
    monkeypatch: pytest.MonkeyPatch, operation: str, events: list[str], sighted: bool
) -> None:
    world = _World(monkeypatch)
    monkeypatch.setattr(jobs, "execute", _sighting_of)
    result = await jobs.run_operation(SETTINGS, LOCK, OperationRequest(operation))
    assert world.events == events
    assert result.details == {"found": sighted}


async def test_the_scans_failure_is_raised_where_the_plugin_asks_for_the_sighting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _World(monkeypatch, scan_fails=True)
    monkeypatch.setattr(jobs, "execute", _sighting_of)
    with pytest.raises(DeviceNotFound) as caught:
        await jobs.run_operation(SETTINGS, LOCK, OperationRequest("open"))
    assert (caught.value.lock_id, caught.value.step) == (LOCK, "scan")


async def test_a_job_that_fails_before_it_needs_the_lock_leaves_no_scan_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = _World(monkeypatch, heard=False)

    async def refuses(ctx: VendorContext, lock_id: str, request: OperationRequest) -> VisitResult:
        raise UsageError("no key for this lock")

    monkeypatch.setattr(jobs, "execute", refuses)
    with pytest.raises(UsageError):
        await jobs.run_operation(SETTINGS, LOCK, OperationRequest("open"))
    assert world.events == [f"scan {LOCK}", "store", "scan cancelled"]
    running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert running == []


@pytest.mark.parametrize(
    ("vendor", "lock", "request_", "refusal"),
    [
        # An unpaired Nuki lock: "pair first", not "not found" after the scan's timeout.
        ("nuki", "54:D2:72:00:00:01", OperationRequest("unlock"), "not paired"),
        ("nuki", "54:D2:72:00:00:01", OperationRequest("set-time"), "not paired"),
        # A Keyless open on a companion never activated: "activate first", before the radio.
        (
            "keyless",
            "7d44b1a8-3f0e-4c5e-9a51-2f4f6b1c0d9e",
            OperationRequest("open", "offline"),
            "not a Keyless operating device",
        ),
    ],
)
async def test_a_vendor_refuses_what_it_checks_before_the_radio_without_waiting_for_the_scan(
    monkeypatch: pytest.MonkeyPatch,
    private_store: Path,
    vendor: str,
    lock: str,
    request_: OperationRequest,
    refusal: str,
) -> None:
    settings = store_settings(private_store / "store")
    scans: list[str] = []

    async def never_heard(lock_id: str, settings: Any, recognisers: Sequence[Any]) -> Found:
        # The scan's timeout, passed: a plugin that waited for the sighting before its own
        # checks would raise this instead of its refusal.
        scans.append(lock_id)
        raise DeviceNotFound("not seen within 10 s of scanning")

    monkeypatch.setattr(jobs, "find_lock", never_heard)
    monkeypatch.setattr(scan, "find_lock", never_heard)
    with pytest.raises(ConfigError, match=refusal) as caught:
        await jobs.run_operation(settings, lock, request_, vendor=vendor)
    assert caught.value.step != "scan"
    assert len(scans) == 1  # the job did listen; the scan's failure went with it
