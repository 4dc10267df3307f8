"""The ``bluez`` tier: blelock through bleak's real BlueZ backend, against the emulated
``org.bluez`` on a private bus. Needs dbus-daemon: skipped without it, except in CI (CI=true),
where a skipped tier is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from blelock.cli import main
from simulators.bluez import INSTALL_HINT, BluezFaults, BluezWorld, dbus_daemon, serve_bluez_world
from simulators.radio import LatencyModel
from simulators.world import World, WorldSpec, build_world

T = TypeVar("T")

BLUEZ_LATENCY = LatencyModel(
    advertising_interval_s=0.01,
    connect_s=0.005,
    connection_interval_s=0.002,
    write_round_trip_s=0.002,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.bluez)


def need_dbus() -> None:
    """Skip without dbus-daemon (one line saying how to get it); in CI, fail instead."""
    if dbus_daemon() is not None:
        return
    message = f"bluez tier: no dbus-daemon on this machine; {INSTALL_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)  # CI must run this tier, never skip it
    pytest.skip(message)


@dataclass
class Served:
    world: World
    bluez: BluezWorld
    loop: asyncio.AbstractEventLoop

    def on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the world's loop (the emulator's state lives there)."""

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(30)

    def faults(self, **switches: Any) -> None:
        self.on_loop(lambda: setattr(self.bluez.bluez, "faults", BluezFaults(**switches)))


def serve_in_thread(spec: WorldSpec) -> Iterator[Served]:
    """The world and the emulated BlueZ on their own loop and thread, so that a test may run
    `blelock` (which runs its own loop) as a user would."""
    need_dbus()
    world = build_world(spec)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        holder["stop"] = loop.create_future()
        try:
            async with serve_bluez_world(world) as bluez:
                holder["bluez"] = bluez
                ready.set()
                await holder["stop"]
        finally:
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30) and "bluez" in holder, "the emulated BlueZ did not start"
    try:
        yield Served(world, holder["bluez"], loop)
    finally:
        loop.call_soon_threadsafe(holder["stop"].set_result, None)
        thread.join(30)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """Lock 1: HD padlock (4I), lock 2: standard padlock (3P, firmware 2.10), lock 3: 4I;
    one Keyless padlock."""
    yield from serve_in_thread(WorldSpec(locks=3, seed=5, latency=BLUEZ_LATENCY, keyless_locks=1))


@pytest.fixture
def sim(served: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """``served`` with no faults, and this process's settings pointing `blelock` at it with no
    bleak backend named: bleak takes BlueZ, found at DBUS_SYSTEM_BUS_ADDRESS."""
    served.faults()
    served.on_loop(lambda: served.bluez.bluez.set_powered(True))
    for name in list(os.environ):
        if name.startswith("BLELOCK_") and name not in ("BLELOCK_DATA_DIR", "BLELOCK_KEY_DIR"):
            monkeypatch.delenv(name)
    for name, value in served.bluez.environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BLELOCK_CONFIG", os.devnull)
    monkeypatch.setenv("BLELOCK_SCAN_TIMEOUT", "3")
    monkeypatch.setenv("BLELOCK_CONNECT_TIMEOUT", "8")
    return served


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """`blelock --json ARGV` in this process: (exit code, parsed stdout or None, stderr)."""
    capsys.readouterr()
    code = main(["--json", *argv])
    captured = capsys.readouterr()
    out = json.loads(captured.out) if captured.out.strip() else None
    return code, out, captured.err.strip()
