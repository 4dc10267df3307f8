"""`blelock agent` and the thin front (blelock.entry): a command handed to the agent prints what
it prints in-process and exits alike; a client of other settings, or no agent, runs it itself;
an agent that dies mid-command gets one line and exit 1, never a second unlock in-process."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blelock import __version__
from blelock.entry import AGENT_STOPPED, CANCELLED
from tests.e2e.conftest import cli_environment

CLI_TIMEOUT = 60


@pytest.fixture(scope="module")
def sim_world() -> tuple[str, ...]:
    return ("--locks", "2", "--seed", "9")


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    # AF_UNIX paths are short (108 bytes): pytest's tmp_path can be longer.
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"blelock-agent-test-{os.getpid()}"
    folder.mkdir(mode=0o700)
    return folder / "agent.sock"


def environment(sim: dict[str, Any], path: Path | None, **extra: str) -> dict[str, str]:
    return cli_environment(
        **(sim["env"] | {"BLELOCK_SCAN_TIMEOUT": "3"}),
        BLELOCK_AGENT_SOCKET=str(path) if path is not None else "off",
        **extra,
    )


class RunningAgent:
    def __init__(self, sim: dict[str, Any], path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "blelock", "agent"],
            env=environment(sim, path),
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "listening on" in self.line()

    def line(self) -> str:
        """The agent's next line on stderr (each command it runs or declines says so)."""
        assert self.process.stderr is not None
        ready, _, _ = select.select([self.process.stderr], [], [], CLI_TIMEOUT)
        assert ready, "the agent said nothing"
        return self.process.stderr.readline()

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=CLI_TIMEOUT)


@pytest.fixture
def agent(sim: dict[str, Any], socket_path: Path) -> Iterator[RunningAgent]:
    running = RunningAgent(sim, socket_path)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            assert running.stop() == 0
        socket_path.parent.rmdir()


def blelock(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blelock", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT,
    )


def test_open_through_the_agent_prints_what_it_prints_here(
    sim: dict[str, Any], agent: RunningAgent, socket_path: Path
) -> None:
    mac = sim["locks"][0]["mac"]
    here, there = environment(sim, None), environment(sim, socket_path)
    assert blelock(here, "sync", "--macs", mac, "--tracking-key", "tech-7").returncode == 0
    # A lock's first visit also hands over what it kept before: then each gives one record.
    assert blelock(here, "open", mac, "--online", "--vendor", "noke").returncode == 0
    commands = [
        ("open", mac, "--online", "--vendor", "noke"),
        ("unlock", mac, "--online", "--vendor", "noke", "--json"),
        # Offline last: the records they keep wait for upload, which the next online one does.
        ("open", mac, "--offline", "--vendor", "noke", "--tracking-key", "tech-7"),
        ("--json", "unlock", mac, "--offline", "--vendor", "noke", "--tracking-key", "tech-7"),
        ("open", mac, "--vendor", "nobody"),  # refused: exit 2
        ("open", sim["locks"][1]["mac"], "--offline", "--vendor", "noke"),  # no keys: exit 1
    ]
    codes = []
    for command in commands:
        in_process = blelock(here, *command)
        forwarded = blelock(there, *command)
        assert agent.line().startswith(f"blelock agent: ran {' '.join(command)}: exit")
        assert (forwarded.stdout, forwarded.stderr, forwarded.returncode) == (
            in_process.stdout,
            in_process.stderr,
            in_process.returncode,
        )
        codes.append(in_process.returncode)
    assert codes == [0, 0, 0, 0, 2, 1]
    assert "blelock visits" in blelock(there, *commands[2]).stdout


def test_other_settings_run_in_the_client(
    sim: dict[str, Any], agent: RunningAgent, socket_path: Path
) -> None:
    mac = sim["locks"][0]["mac"]
    other = environment(sim, socket_path, BLELOCK_COMMAND_TIMEOUT="7")
    opened = blelock(other, "open", mac, "--online", "--vendor", "noke", "--json")
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["ok"] is True
    line = agent.line()
    assert line.startswith(f"blelock agent: declined open {mac}") and "variables differ" in line


def test_a_client_gone_mid_visit_leaves_the_visit_to_finish(
    sim: dict[str, Any], agent: RunningAgent, socket_path: Path
) -> None:
    """Ctrl-C of the client: the agent finishes the unlock it began and keeps its records."""
    mac = sim["locks"][0]["mac"]
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(socket_path))
        stream = client.makefile("rwb")
        hello = json.loads(stream.readline())
        from blelock.entry import environment_digests

        request = {
            "argv": ["open", mac, "--online", "--vendor", "noke"],
            "cwd": os.getcwd(),
            "environment": environment_digests(
                environment(sim, socket_path), bytes.fromhex(hello["nonce"])
            ),
            "terminal": {"stdout": False, "stderr": False, "variables": {}, "size": None},
        }
        stream.write(json.dumps(request).encode() + b"\n")
        stream.flush()
        assert json.loads(stream.readline()) == {"started": True}
    assert agent.line().startswith(f"blelock agent: ran open {mac} --online --vendor noke: exit 0")


class FakeAgent:
    """A socket that greets as an agent of this version, takes one request, says it started,
    then answers ``answer`` (None: closes, as an agent killed mid-visit would)."""

    def __init__(self, path: Path, answer: dict[str, Any] | None, started: bool = True) -> None:
        self.replied = threading.Event()
        self.release = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        os.chmod(path, 0o600)
        self.listener.listen(1)
        self.requests: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._serve, args=(answer, started), daemon=True)
        self.thread.start()

    def _serve(self, answer: dict[str, Any] | None, started: bool) -> None:
        connection, _ = self.listener.accept()
        with connection, connection.makefile("rwb") as stream:
            hello = {"hello": "blelock-agent", "protocol": 1, "version": __version__,
                     "nonce": "00" * 16}  # fmt: skip
            stream.write(json.dumps(hello).encode() + b"\n")
            stream.flush()
            self.requests.append(json.loads(stream.readline()))
            reply = {"started": True} if started else {"fallback": "not mine"}
            stream.write(json.dumps(reply).encode() + b"\n")
            if answer is not None:
                stream.write(json.dumps(answer).encode() + b"\n")
            stream.flush()
            self.replied.set()
            if answer is None and started:
                self.release.wait(CLI_TIMEOUT)  # a visit that goes on (or an agent hung)

    def close(self) -> dict[str, Any]:
        self.release.set()
        self.thread.join(timeout=CLI_TIMEOUT)
        self.listener.close()
        (request,) = self.requests
        return request


@pytest.fixture
def fake_dir(socket_path: Path) -> Iterator[Path]:
    yield socket_path
    socket_path.unlink(missing_ok=True)
    socket_path.parent.rmdir()


def test_an_agent_dead_mid_visit_is_one_line_and_exit_1(fake_dir: Path) -> None:
    fake = FakeAgent(fake_dir, answer=None)
    env = cli_environment(BLELOCK_AGENT_SOCKET=str(fake_dir), BLELOCK_SCAN_TIMEOUT="1")
    client = subprocess.Popen(
        [sys.executable, "-m", "blelock", "open", "AA:BB:CC:DD:EE:FF", "--offline", "--vendor",
         "noke"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert fake.replied.wait(CLI_TIMEOUT)
    request = fake.close()  # the agent's end of the connection closes: it died
    stdout, stderr = client.communicate(timeout=CLI_TIMEOUT)
    result = subprocess.CompletedProcess(client.args, client.returncode, stdout, stderr)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", AGENT_STOPPED + "\n")
    # Nothing secret crosses: the variables go as digests, never as values.
    assert os.environ["BLELOCK_DATA_DIR"] not in json.dumps(request)
    assert set(request["environment"]) >= {"BLELOCK_DATA_DIR", "BLELOCK_KEY_DIR"}


def test_ctrl_c_of_the_client_leaves_the_visit_to_the_agent(fake_dir: Path) -> None:
    fake = FakeAgent(fake_dir, answer=None)
    client = subprocess.Popen(
        [sys.executable, "-m", "blelock", "unlock", "AA:BB:CC:DD:EE:FF", "--vendor", "noke"],
        env=cli_environment(BLELOCK_AGENT_SOCKET=str(fake_dir)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert fake.replied.wait(CLI_TIMEOUT)  # it asked, and the agent said it started
    client.send_signal(signal.SIGINT)
    stdout, stderr = client.communicate(timeout=CLI_TIMEOUT)
    fake.close()
    assert (client.returncode, stdout, stderr) == (130, "", CANCELLED + "\n")


def test_a_declining_agent_leaves_the_command_to_the_client(fake_dir: Path) -> None:
    fake = FakeAgent(fake_dir, answer=None, started=False)
    env = cli_environment(BLELOCK_AGENT_SOCKET=str(fake_dir))
    result = blelock(env, "open", "not-a-lock", "--vendor", "noke")
    fake.close()
    assert result.returncode == 2 and "not-a-lock" in result.stderr  # refused here, in-process


def test_the_thin_path_imports_no_heavy_library(fake_dir: Path) -> None:
    fake = FakeAgent(fake_dir, answer={"stdout": "shown\n", "stderr": "", "code": 0})
    # typing too: the largest module the front would load otherwise, for annotations only.
    heavy = ("pydantic", "bleak", "httpx", "rich", "blelock.cli", "sqlite3", "asyncio", "typing")
    probe = (
        "import sys\nfrom blelock.entry import main\ncode = main(['unlock', 'AA:BB:CC:DD:EE:FF'])\n"
        f"print(code, [m for m in {heavy!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=cli_environment(BLELOCK_AGENT_SOCKET=str(fake_dir)),
        timeout=CLI_TIMEOUT,
    )
    fake.close()
    assert result.stdout == "shown\n0 []\n", result.stderr
