"""``blelock demo``: a technician's day against the simulators, with nothing to set up.

It starts ``blelock-sim`` as a child process (blelock never imports the simulators: it runs
them) and takes the settings the child prints. Then, through exactly the code a real lock gets
(bleak, the Core API over HTTP, the protocol, the store): scan; unlock every lock online; sync
offline keys before leaving coverage; unlock every lock again with no signal; back in coverage,
upload every log record the locks gave. The same for the Keyless padlocks: activate this
companion with the administrator's invitation, open each online, then again with no network,
then upload their audit entries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from blelock.cli.render import show_outcomes
from blelock.cloud.noke import NokeCloud
from blelock.config import Settings, load_settings
from blelock.errors import BlelockError, lock_context
from blelock.jobs import open_store, visit
from blelock.jobs.keyless import KeylessUploader, activate, open_lock
from blelock.model import Action, MacAddress, Outcome, Vendor
from blelock.sync import drain_outbox, refresh_offline_keys
from blelock.transport.scan import Found, scan
from blelock.vendors.keyless import KeylessOutcome

SIMULATOR_START_TIMEOUT = 30.0
"""A cold Raspberry Pi needs a few seconds to import the simulator's web stack."""
SCAN_SECONDS = 5.0
"""Simulated locks advertise every 0.1 s; 5 s leaves room for a loaded machine."""


TRACKING_KEY = "demo-technician"


@dataclass
class DemoReport:
    outcomes: list[Outcome] = field(default_factory=list)
    failures: list[BlelockError] = field(default_factory=list)
    uploaded: int = 0
    pending: int = 0
    keyless: list[tuple[KeylessOutcome, bool]] = field(default_factory=list)
    keyless_uploaded: int = 0
    keyless_pending: int = 0


def run(args: argparse.Namespace) -> int:

    report = asyncio.run(_demo(args.locks, args.keyless_locks, args.seed))
    uploads = {"uploaded": report.uploaded, "pending": report.pending}
    if args.keyless_locks:
        uploads |= {
            "keyless_uploaded": report.keyless_uploaded,
            "keyless_pending": report.keyless_pending,
        }
    show_outcomes(
        report.outcomes, report.failures, as_json=args.json, uploads=uploads, keyless=report.keyless
    )
    complete = len(report.outcomes) == 2 * args.locks
    complete &= len(report.keyless) == 2 * args.keyless_locks
    return 0 if complete and not report.failures else 1


@contextlib.asynccontextmanager
async def simulator(locks: int, seed: int, keyless_locks: int = 0) -> AsyncIterator[dict[str, Any]]:
    """A ``blelock-sim`` child; yields what it announced (``env`` points blelock at it)."""
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
        "--keyless-locks",
        str(keyless_locks),
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
        saved = {name: os.environ.get(name) for name in environment}
        os.environ.update(environment)
        try:
            yield announced
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    finally:
        child.stdin.close()  # the child exits when its stdin closes
        try:
            async with asyncio.timeout(10):
                await child.wait()
        except TimeoutError:
            child.kill()
            await child.wait()


async def _demo(locks: int, keyless_locks: int, seed: int) -> DemoReport:
    async with simulator(locks, seed, keyless_locks) as announced:
        environment = announced["env"]
        # A throwaway store: the demo must not touch a technician's real keys or logs.
        with tempfile.TemporaryDirectory(prefix="blelock-demo-") as scratch:
            settings: Settings = load_settings(
                environ=environment | {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch},
                read_file=False,
            )
            report = await _day(settings, locks)
            if keyless_locks:
                await _keyless_day(settings, announced, report)
            return report


async def _day(settings: Settings, locks: int) -> DemoReport:

    report = DemoReport()
    found = sorted(
        await scan(settings, duration=SCAN_SECONDS, expect=locks, vendor=Vendor.NOKE),
        key=lambda f: f.sighting.lock_id,
    )
    if len(found) < locks:
        report.failures.append(
            BlelockError(
                f"only {len(found)} of {locks} simulated locks were heard",
                hint="the machine may be overloaded; try again",
            )
        )
    await _visit_each(found, settings, report)
    async with open_store(settings) as store, NokeCloud.from_settings(settings) as cloud:
        macs = [MacAddress(lock.sighting.lock_id) for lock in found]
        await refresh_offline_keys(cloud, store.keys, macs=macs, issue_for=[TRACKING_KEY])
        no_signal = settings.model_copy(update={"noke_url": _unreachable_url()})
        await _visit_each(found, no_signal, report)
        report.uploaded = await drain_outbox(cloud, store.outbox)
        report.pending = await store.outbox.pending_count()
    return report


async def _keyless_day(settings: Settings, announced: dict[str, Any], report: DemoReport) -> None:
    no_signal = settings.model_copy(update={"keyless_url": _unreachable_url()})
    async with open_store(settings) as store:
        try:
            await activate(settings, store, announced["keyless_invitation"])
        except BlelockError as exc:
            report.failures.append(exc)
            return
        for mode_settings in (settings, no_signal):
            for device in announced["keyless_locks"]:
                try:
                    report.keyless.append(await open_lock(device, mode_settings, store))
                except BlelockError as exc:
                    report.failures.append(exc)
        async with KeylessUploader.open(settings, store) as uploader:
            report.keyless_uploaded = await drain_outbox(uploader, store.keyless_outbox)
        report.keyless_pending = await store.keyless_outbox.pending_count()


async def _visit_each(found: list[Found], settings: Settings, report: DemoReport) -> None:

    for lock in found:
        mac = MacAddress(lock.sighting.lock_id)  # a Nokē sighting: its id is the MAC
        try:
            with lock_context(mac, "unlock"):
                report.outcomes.append(
                    await visit(mac, Action.UNLOCK, settings, found=lock, tracking_key=TRACKING_KEY)
                )
        except BlelockError as exc:
            report.failures.append(exc)


def _unreachable_url() -> str:
    """Out of coverage: a loopback port that was free a moment ago, so nothing answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/"
