"""Shared fixtures: a simulated world served on 127.0.0.1 in the test's own event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from blelock.config import Settings, load_settings
from blelock.model import LogRecord
from simulators.radio import LatencyModel
from simulators.world import RunningWorld, WorldSpec, build_world, serve_world

FAST = LatencyModel(
    advertising_interval_s=0.005,
    connect_s=0.002,
    connection_interval_s=0.001,
    write_round_trip_s=0.001,
    phy_byte_s=0.0,  # a 1 ms interval is shorter than real airtime allows: buffers bind
    ifs_s=0.0,
)
"""Tests check behaviour, not timing: a quick world keeps the suite fast."""


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test whose event loop makes a blocking call."""
    with blockbuster_ctx(["blelock", "simulators"]) as bb:
        yield bb


@pytest.fixture(autouse=True)
def private_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own store and data key: never a developer's real ones."""
    monkeypatch.setenv("BLELOCK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BLELOCK_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("BLELOCK_DATA_KEY", raising=False)
    return tmp_path


@pytest.fixture
def world_spec() -> WorldSpec:
    return WorldSpec(locks=3, seed=11, latency=FAST)


@pytest.fixture
async def running_world(
    world_spec: WorldSpec, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningWorld]:
    async with serve_world(build_world(world_spec)) as running:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", running.radio_address)
        yield running


def closed_port_url() -> str:
    """A loopback URL nobody listens on: bound, then released (never a guessed port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def fresh_python(probe: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """``probe`` run by a fresh interpreter (nothing imported yet), with this environment less
    any BLELOCK_* of the developer's, plus ``environment``; raises if it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLELOCK_")} | environment
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )


def settings_environment(running: RunningWorld) -> dict[str, str]:
    """The environment :func:`settings_for` reads: the world's, the test's store, short
    timeouts."""
    return running.environment | {
        "BLELOCK_DATA_DIR": os.environ["BLELOCK_DATA_DIR"],
        "BLELOCK_KEY_DIR": os.environ["BLELOCK_KEY_DIR"],
        "BLELOCK_SCAN_TIMEOUT": "2",
        "BLELOCK_COMMAND_TIMEOUT": "2",
        "BLELOCK_CONNECT_TIMEOUT": "5",
        "BLELOCK_CLOUD_TIMEOUT": "5",
    }


def settings_for(running: RunningWorld, **overrides: str) -> Settings:
    return load_settings(environ=settings_environment(running) | overrides, read_file=False)


def store_settings(directory: Path) -> Settings:
    """Settings whose store (and its key) live in ``directory``, nothing else configured."""
    return load_settings(
        environ={"BLELOCK_DATA_DIR": str(directory), "BLELOCK_KEY_DIR": str(directory)},
        read_file=False,
    )


class RecordingCloud:
    """An uploader that takes every batch, keeping each call's key and the records; each upload
    lets the loop run once, as a real one does while its request is on its way."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.records: list[LogRecord] = []

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        assert idempotency_key is not None
        self.keys.append(idempotency_key)
        self.records.extend(records)
        await asyncio.sleep(0)
