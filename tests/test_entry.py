"""The thin front (blelock.entry) and the agent's gate: where the socket is, which commands go to
an agent, and whom an agent greets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from blelock.cli.agent import Agent, listen, load_visit_modules
from blelock.cli.render import DRAW_MODULES
from blelock.config import load_settings
from blelock.entry import _command, _through_agent, agent_socket_path, environment_digests
from blelock.errors import ConfigError
from blelock.vendors.base import KeptClients
from tests.conftest import fresh_python


def test_the_socket_path_without_pydantic() -> None:
    assert agent_socket_path({"BLELOCK_AGENT_SOCKET": "/run/x.sock"}) == "/run/x.sock"
    assert agent_socket_path({"BLELOCK_AGENT_SOCKET": "off"}) is None
    assert agent_socket_path({"BLELOCK_AGENT_SOCKET": ""}) is None
    assert agent_socket_path({"XDG_RUNTIME_DIR": "/run/user/7"}) == "/run/user/7/blelock/agent.sock"
    assert agent_socket_path({"TMPDIR": "/t"}) == f"/t/blelock-{os.getuid()}/agent.sock"
    assert agent_socket_path({}) == f"/tmp/blelock-{os.getuid()}/agent.sock"


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["unlock", "X"], "unlock"),
        (["--json", "--config", "c.toml", "open", "X"], "open"),
        (["--data-dir=/d", "unshackle", "X"], "unshackle"),
        (["--version"], None),
        (["-h", "open"], None),
        (["--unknown", "open"], None),
        ([], None),
    ],
)
def test_the_command_is_found_past_the_common_options(argv: list[str], command: str) -> None:
    assert _command(argv) == command


def test_digests_say_equal_without_the_values() -> None:
    env = {
        "BLELOCK_NOKE_API_KEY": "s3cret",
        "HOME": "/h",
        "PATH": "/bin",
        "BLELOCK_AGENT_SOCKET": "p",
    }
    digests = environment_digests(env, b"n" * 16)
    assert set(digests) == {"BLELOCK_NOKE_API_KEY", "HOME"}  # the socket's own name is not compared
    assert "s3cret" not in repr(digests)
    assert digests != environment_digests(env, b"m" * 16)  # a nonce per connection
    other = env | {"BLELOCK_NOKE_API_KEY": "other"}
    assert (
        digests["BLELOCK_NOKE_API_KEY"]
        != environment_digests(other, b"n" * 16)["BLELOCK_NOKE_API_KEY"]
    )


@pytest.fixture
def private_dir() -> Iterator[Path]:
    # AF_UNIX paths are short: pytest's tmp_path can be too long.
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"blelock-entry-test-{os.getpid()}"
    folder.mkdir(mode=0o700)
    yield folder
    folder.chmod(0o700)
    for left in folder.iterdir():
        left.unlink()
    folder.rmdir()


def test_a_socket_in_a_directory_others_may_enter_is_not_used(private_dir: Path) -> None:
    path = private_dir / "agent.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(1)
        try:
            private_dir.chmod(0o755)
            # Not even connected to: the command runs here (None), the listener gets no one.
            assert _through_agent(str(path), ["open", "X"]) is None
            listener.setblocking(False)
            with pytest.raises(BlockingIOError):
                listener.accept()
            with pytest.raises(ConfigError, match="open to other users"):
                listen(private_dir / "other.sock")
        finally:
            private_dir.chmod(0o700)


async def _first_line(path: Path) -> bytes:
    def read() -> bytes:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            return client.makefile("rb").readline()

    return await asyncio.to_thread(read)


async def test_the_agent_greets_only_its_own_user(private_dir: Path) -> None:
    settings = load_settings(environ={}, read_file=False)
    store = cast(Any, None)  # never reached: the gate is before any command
    path = private_dir / "agent.sock"
    for uid, greeted in ((os.getuid(), True), (os.getuid() + 1, False)):
        agent = Agent(settings, store, KeptClients(), uid=uid)
        # An agent of another user than the client's, as far as the check can tell.
        server = await asyncio.start_unix_server(agent.serve_client, path=str(path))
        async with server:
            line = await _first_line(path)
        assert line.startswith(b'{"hello": "blelock-agent"') is greeted, line
        assert greeted or line == b""


def test_an_agent_that_does_not_greet_is_passed_over(
    private_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped or stuck agent (its socket there, nobody answering) must not hang the CLI:
    the command runs here (None) once the greeting's time is up."""
    monkeypatch.setattr("blelock.entry.GREETING_TIMEOUT_S", 0.05)
    path = private_dir / "agent.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(1)  # connections queue in the backlog; nobody accepts or greets
        assert _through_agent(str(path), ["open", "X"]) is None


def test_a_resident_process_loads_every_plugins_cloud_modules_and_the_table() -> None:
    """What the agent and the kiosk's agent socket import up front, in a thread, so no visit
    stalls their loop on a lazy import: each plugin's ``cloud_modules`` and the modules the
    results table is drawn with (in the agent's loop). In a fresh interpreter, none of them
    loaded before."""
    probe = (
        "import json, sys\n"
        "from blelock import vendors\n"
        "from blelock.cli.agent import load_visit_modules\n"
        "from blelock.cli.render import DRAW_MODULES\n"
        "named = [m for p in vendors.plugins().values() for m in p.cloud_modules]\n"
        "named += DRAW_MODULES\n"
        "before = [m for m in named if m in sys.modules]\n"
        "load_visit_modules()\n"
        "after = [m for m in named if m not in sys.modules]\n"
        "print(json.dumps([len(named), before, after]))\n"
    )
    result = fresh_python(probe)
    count, before, after = json.loads(result.stdout)
    assert count > len(DRAW_MODULES)  # the plugins name cloud modules too
    assert (before, after) == ([], []), result.stdout


def test_a_resident_process_starts_when_a_table_module_it_preloads_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table's modules include rich's internals, which a later rich may not have: the
    agent imports the others and starts; only a plugin's own cloud module is required."""
    (tmp_path / "agent_probe_table.py").write_text("DRAWN = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "agent_probe_table", raising=False)
    monkeypatch.setattr(
        "blelock.cli.agent.DRAW_MODULES", ("rich._not_a_module", "agent_probe_table")
    )
    load_visit_modules()
    assert sys.modules["agent_probe_table"].DRAWN
