"""``blelock demo``: the whole flow against the simulators, with nothing to set up.

It starts ``blelock-sim`` as a child process (blelock never imports the simulators: it runs
them), takes the settings the child prints, then scans, and unlocks every lock it found through
exactly the code a real lock gets: bleak, the Core API client over HTTP, the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator

from blelock.config import Settings, load_settings
from blelock.errors import BlelockError, lock_context
from blelock.model import Action, Outcome

SIMULATOR_START_TIMEOUT = 30.0
"""A cold Raspberry Pi needs a few seconds to import the simulator's web stack."""
SCAN_SECONDS = 5.0
"""Simulated locks advertise every 0.1 s; 5 s leaves room for a loaded machine."""


def run(args: argparse.Namespace) -> int:
    from blelock.cli.render import show_outcomes

    outcomes, failures = asyncio.run(_demo(args.locks, args.seed))
    show_outcomes(outcomes, failures, as_json=args.json)
    return 0 if outcomes and not failures else 1


@contextlib.asynccontextmanager
async def simulator(locks: int, seed: int) -> AsyncIterator[dict[str, str]]:
    """A ``blelock-sim`` child; yields the environment that points blelock at it."""
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
            yield environment
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


async def _demo(locks: int, seed: int) -> tuple[list[Outcome], list[BlelockError]]:
    async with simulator(locks, seed) as environment:
        # A throwaway store: the demo must not touch a technician's real keys or logs.
        with tempfile.TemporaryDirectory(prefix="blelock-demo-") as scratch:
            settings: Settings = load_settings(
                environ=environment | {"BLELOCK_DATA_DIR": scratch, "BLELOCK_KEY_DIR": scratch},
                read_file=False,
            )
            return await _visit_all(settings, locks)


async def _visit_all(settings: Settings, locks: int) -> tuple[list[Outcome], list[BlelockError]]:
    from blelock.cli.unlock import visit
    from blelock.transport.scan import scan

    found = await scan(settings, duration=SCAN_SECONDS, expect=locks)
    outcomes: list[Outcome] = []
    failures: list[BlelockError] = []
    for lock in sorted(found, key=lambda f: f.sighting.lock_id):
        mac = lock.sighting.lock_id
        try:
            with lock_context(mac, "unlock"):
                outcomes.append(await visit(mac, Action.UNLOCK, settings, found=lock))
        except BlelockError as exc:
            failures.append(exc)
    if len(found) < locks:
        failures.append(
            BlelockError(
                f"only {len(found)} of {locks} simulated locks were heard",
                hint="the machine may be overloaded; try again",
            )
        )
    return outcomes, failures
