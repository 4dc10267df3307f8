"""`blelock serve` with BLELOCK_AGENT_SOCKET: a CLI `open` of the same user and settings runs in
the kiosk's runner, within its connection slots, on its open store."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from blelock.cli.agent import kiosk_agent
from blelock.config import load_settings
from blelock.entry import _through_agent
from blelock.service.runner import Runner
from simulators.world import WorldSpec, build_world, serve_world
from tests.conftest import FAST


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # AF_UNIX paths are short: pytest's tmp_path can be too long.
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"blelock-kiosk-agent-{os.getpid()}"
    folder.mkdir(mode=0o700)
    yield folder / "agent.sock"
    for left in folder.iterdir():
        left.unlink()
    folder.rmdir()


async def test_a_cli_open_takes_a_connection_slot_of_the_kiosk(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve_world(build_world(WorldSpec(locks=1, seed=5, latency=FAST))) as running:
        environment = running.environment | {
            "BLELOCK_CONFIG": os.devnull,
            "BLELOCK_SERVE_TOKEN": "kiosk-test-token-0123456789",
            "BLELOCK_SYNC_INTERVAL": "3600",
            "BLELOCK_AGENT_SOCKET": str(socket_path),
            "BLELOCK_SIM_RADIO": running.radio_address,
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        settings = await asyncio.to_thread(
            load_settings
        )  # as `blelock serve` and the CLI both read them
        mac = running.world.locks[0].mac
        async with Runner(settings, scan_window=0.2) as runner, kiosk_agent(runner):
            assert runner.peak_connections == 0
            code = await asyncio.to_thread(
                _through_agent, str(socket_path), ["open", mac, "--online", "--vendor", "noke"]
            )
            assert code == 0
            assert runner.peak_connections == 1  # the CLI's visit held one of the kiosk's slots
            assert running.world.locks[0].unlocks == 1
        assert not await asyncio.to_thread(socket_path.exists)  # removed when the service stops


async def test_without_the_variable_the_kiosk_serves_no_cli(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BLELOCK_AGENT_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(socket_path.parent))
    settings = load_settings(
        environ={"BLELOCK_DATA_DIR": os.environ["BLELOCK_DATA_DIR"]}, read_file=False
    )
    async with serve_world(build_world(WorldSpec(locks=1, seed=5, latency=FAST))) as running:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", running.radio_address)
        async with Runner(settings, scan_window=0.2) as runner, kiosk_agent(runner):
            taken = await asyncio.to_thread((socket_path.parent / "blelock").exists)
            assert not taken  # the default path is left to the technician's own agent
