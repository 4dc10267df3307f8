"""``blelock demo``: a technician's day against the simulators, with nothing to set up.

It starts ``blelock-sim`` as a child process (blelock never imports the simulators: it runs
them) and takes the settings the child prints. Then, through exactly the code a real lock gets
(bleak, the vendors' clouds over HTTP, the protocols, the store), for every vendor's locks:
enrol this companion where the vendor wants it; scan; open every lock online; sync keys before
leaving coverage; open every lock again with no signal; back in coverage, upload every record
the locks gave.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blelock import vendors
from blelock.cli.environ import variables_set
from blelock.cli.render import show_results
from blelock.cloud._http import make_client, map_http_errors, raise_for_status
from blelock.config import Settings, load_settings
from blelock.errors import BlelockError, lock_context
from blelock.jobs import context, open_store, run_operation
from blelock.model import VisitResult
from blelock.store import Store
from blelock.sync import sync_keys, sync_vendor
from blelock.transport.scan import Found, scan
from blelock.vendors.base import DemoHooks, OperationRequest, VendorPlugin

SIMULATOR_START_TIMEOUT = 30.0
"""A cold Raspberry Pi needs a few seconds to import the simulator's web stack."""
RENTER = "Renter 214"
LEASE = dt.timedelta(days=30)
LEASE_HOURS = "Mon-Sat 06:00-22:00"
FACILITY_ZONE = "Europe/Oslo"
"""The simulated facility's: its Unloc lock keeps this zone, its Nuki lock Berlin's (the same
clock)."""
LEASE_ROUNDS = 5
LEASE_CONFIRM_S = 1.0
"""What the kiosk's upkeep would do over a few minutes, in a few seconds."""
SCAN_SECONDS = 5.0
"""Simulated locks advertise every 0.1 s; 5 s leaves room for a loaded machine."""


@dataclass
class DemoReport:
    results: list[VisitResult] = field(default_factory=list)
    failures: list[BlelockError] = field(default_factory=list)
    uploaded: int = 0
    pending: int = 0
    heard: int = 0
    lease: dict[str, str] = field(default_factory=dict)
    """The renter's grant: each unit (vendor:lock) and its status after a reconcile."""
    notes: list[str] = field(default_factory=list)
    """What the cloud-only vendors' steps did, in order."""
    opened: int = 0


def caption(report: DemoReport) -> str:
    """The day's last line: what reached the vendors' clouds."""
    lease = ", ".join(f"{unit} {status}" for unit, status in report.lease.items())
    return (
        f"{report.uploaded} log record(s) from the locks reached their vendor's cloud, "
        f"{report.pending} still waiting" + (f"; {RENTER}'s lease: {lease}" if lease else "")
    )


def run(args: argparse.Namespace) -> int:
    vendor_locks = {
        name: getattr(args, f"{name}_locks")
        for name, plugin in vendors.plugins().items()
        if plugin.demo_locks is not None
    }
    report = asyncio.run(_demo(args.locks, args.seed, vendor_locks))
    show_results(
        report.results,
        report.failures,
        as_json=args.json,
        caption=caption(report),
        extra={
            "logs": {"uploaded": report.uploaded, "pending": report.pending},
            "notes": report.notes,
            "lease": {"holder": RENTER, "units": report.lease},
        },
    )
    if not args.json:
        for note in report.notes:
            print(note)
    complete = report.opened == 2 * report.heard and report.heard > 0
    leased = all(status == "active" for status in report.lease.values())
    return 0 if complete and leased and not report.failures and not report.pending else 1


@contextlib.asynccontextmanager
async def simulator(
    locks: int, seed: int, vendor_locks: Mapping[str, int]
) -> AsyncIterator[dict[str, Any]]:
    """A ``blelock-sim`` child with ``locks`` padlocks and ``vendor_locks[NAME]`` of each
    vendor's (``--NAME-locks``); yields what it announced (``env`` points blelock at it)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators",
        "--json",
        "--until-stdin-closes",
        "--locks",
        str(locks),
        "--seed",
        str(seed),
        *(part for name, count in vendor_locks.items() for part in (f"--{name}-locks", str(count))),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        try:
            async with asyncio.timeout(SIMULATOR_START_TIMEOUT):
                line = await child.stdout.readline()
            announced = json.loads(line)
            environment: dict[str, str] = announced["env"]
        except (TimeoutError, ValueError, KeyError, TypeError):
            raise BlelockError(
                "the simulator did not start (is the package installed with its simulators?)",
                hint="reinstall with `pip install -e .` and try again",
            ) from None
        # Point this process at the child the way a user would, by `export`ing what it printed:
        # the simulated bleak backend reads its radio address from the environment.
        with variables_set(environment):
            yield announced
    finally:
        child.stdin.close()  # the child exits when its stdin closes
        try:
            async with asyncio.timeout(10):
                await child.wait()
        except TimeoutError:
            child.kill()
            await child.wait()


async def _demo(locks: int, seed: int, vendor_locks: Mapping[str, int]) -> DemoReport:
    async with simulator(locks, seed, vendor_locks) as announced:
        environment = announced["env"]
        # A throwaway store: the demo must not touch a technician's real keys or logs.
        with tempfile.TemporaryDirectory(prefix="blelock-demo-") as scratch:
            settings: Settings = load_settings(
                environ=environment | {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch},
                read_file=False,
            )
            return await _day(settings, announced)


async def _day(settings: Settings, announced: Mapping[str, Any]) -> DemoReport:
    report = DemoReport()
    plugins = vendors.plugins()
    async with open_store(settings) as store:
        for name, code in announced.get("enroll", {}).items():
            try:
                await plugins[name].enroll(context(plugins[name], settings, store), code)
            except BlelockError as exc:
                report.failures.append(exc)
        expect = int(announced.get("expect_locks", 0))
        radio = [plugin for plugin in plugins.values() if plugin.service_uuids]
        found = await scan(settings, radio, duration=SCAN_SECONDS, expect=expect)
        found.sort(key=lambda f: (f.sighting.vendor, f.sighting.lock_id))
        report.heard = len(found)
        if len(found) < expect:
            report.failures.append(
                BlelockError(
                    f"only {len(found)} of {expect} simulated locks were heard",
                    hint="the machine may be overloaded; try again",
                )
            )
        owners = {f.sighting.vendor for f in found}
        await _vendors_part(plugins, "before", found, settings, store, announced, report)
        await _open_each(found, settings, store, report)
        await _vendors_part(plugins, "after", found, settings, store, announced, report)
        await _sync_keys(settings, store, [plugins[v] for v in owners], found, announced, report)
        await _open_each(found, _no_signal(settings), store, report)
        await _lease(settings, store, found, announced, report)
        for vendor in sorted(owners):
            done = await sync_vendor(context(plugins[vendor], settings, store))
            report.uploaded += done.uploaded
            report.pending += done.pending
    return report


async def _lease(
    settings: Settings,
    store: Store,
    found: Sequence[Found],
    announced: Mapping[str, Any],
    report: DemoReport,
) -> None:
    """A storage kiosk's real job: one renter, one unit per vendor that takes grants, one
    lease (Mon-Sat 06:00-22:00 facility time for 30 days, rounded where a vendor has no
    schedules), made so by the reconciler."""
    from blelock import access
    from blelock.clock import SystemClock
    from blelock.grants import Code

    takers = access.access_plugins()
    units: dict[str, str] = {}
    for lock in found:
        units.setdefault(lock.sighting.vendor, f"{lock.sighting.vendor}:{lock.sighting.lock_id}")
    # A vendor whose grants go through its cloud names the unit its own way (the simulator says).
    units |= announced.get("access_units", {})
    chosen = [unit for vendor, unit in sorted(units.items()) if vendor in takers]
    if not chosen:
        return
    codes = {name: Code(value) for name, value in announced.get("access_codes", {}).items()}
    clock = SystemClock()
    try:
        async with access.open_grants(settings, store) as grants:
            record = await access.create_grant(
                access.GrantRequest(
                    holder=RENTER,
                    locks=chosen,
                    ends_at=clock.now_utc() + LEASE,
                    windows=[LEASE_HOURS],
                    timezone=FACILITY_ZONE,
                    identities=announced.get("access_identities", {}),
                    codes=codes,
                    round=True,
                ),
                grants,
                takers,
                lambda plugin: context(plugin, settings, store),
                settings,
                clock,
            )
            for _ in range(LEASE_ROUNDS):  # a job or a read-back may want a second look
                await access.reconcile(
                    grants, lambda p: context(p, settings, store), settings, clock
                )
                done = await grants.get(record.grant.id)
                assert done is not None
                if done.status().value != "applying":
                    break
                await asyncio.sleep(LEASE_CONFIRM_S)
    except BlelockError as exc:
        report.failures.append(exc)
        return
    assert done is not None
    report.lease = {t.lock.text(): t.status.value for t in done.targets}


async def _vendors_part(
    plugins: Mapping[str, VendorPlugin],
    when: str,
    found: Sequence[Found],
    settings: Settings,
    store: Store,
    announced: Mapping[str, Any],
    report: DemoReport,
) -> None:
    """Each vendor's own steps of the day (pairing, keypad codes, reading a log, a cloud-only
    vendor's key management), for the vendors heard and those the simulator set a step up for."""
    given = announced.get("demo", {})
    for name in sorted({f.sighting.vendor for f in found} | set(given)):
        plugin = plugins[name]
        ctx = context(plugin, settings, store)
        mine = [f for f in found if f.sighting.vendor == name]
        setup = given.get(name, {})
        clock = _cloud_clock(settings, setup.get("clock_url"))
        hooks = DemoHooks(setup, clock, report.notes.append)
        step = plugin.demo_before_opening if when == "before" else plugin.demo_after_opening
        try:
            report.results += await step(ctx, mine, hooks)
        except BlelockError as exc:
            report.failures.append(exc)


def _cloud_clock(settings: Settings, clock_url: object) -> Callable[[dt.datetime], Awaitable[None]]:
    """Moves the simulated cloud's clock through blelock-sim's switch, reached as any client
    would; a vendor the simulator gave no clock for is refused."""

    async def set_cloud_time(at: dt.datetime) -> None:
        if not isinstance(clock_url, str):
            raise BlelockError("the simulator gave this vendor no clock to move")
        async with make_client(clock_url, settings.timeouts) as client:
            with map_http_errors():
                answer = await client.post(clock_url, json={"at": at.isoformat()})
            raise_for_status(answer)

    return set_cloud_time


async def _sync_keys(
    settings: Settings,
    store: Store,
    plugins: Sequence[VendorPlugin],
    found: Sequence[Found],
    announced: Mapping[str, Any],
    report: DemoReport,
) -> None:
    """Before leaving coverage: each vendor's keys for the locks of the day."""
    options = announced.get("sync_options", {})
    for plugin in plugins:
        locks = [f.sighting.lock_id for f in found if f.sighting.vendor == plugin.name]
        try:
            await sync_keys(context(plugin, settings, store), locks, options.get(plugin.name))
        except BlelockError as exc:
            report.failures.append(exc)


async def _open_each(
    found: Sequence[Found], settings: Settings, store: Store, report: DemoReport
) -> None:
    for lock in found:
        sighting = lock.sighting
        try:
            with lock_context(sighting.lock_id, "open"):
                report.results.append(
                    await run_operation(
                        settings,
                        sighting.lock_id,
                        OperationRequest(""),
                        vendor=sighting.vendor,
                        store=store,
                        found=lock,
                    )
                )
                report.opened += 1
        except BlelockError as exc:
            report.failures.append(exc)


def _no_signal(settings: Settings) -> Settings:
    """Out of coverage: every vendor cloud's URL points where nothing answers."""
    for name in vendors.names():
        section = getattr(settings, name, None)
        if section is not None and "url" in type(section).model_fields:
            settings = settings.with_section(name, url=_unreachable_url())
    return settings


def _unreachable_url() -> str:
    """Out of coverage: a loopback port that was free a moment ago, so nothing answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/"
