"""`blelock serve` as a process against `blelock-sim`: SIGKILL mid-operation loses nothing from
the outbox across a restart; SIGTERM lets the operation in flight finish and exits 0.

The tests follow the service through its JSON log lines (read on a thread into a queue), so
they wait for events ("listening", "operation started", "uploaded lock logs"), not for time.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.process import simulator_process
from tests.e2e.conftest import cli_environment

TOKEN = "kiosk-process-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVENT_TIMEOUT_S = 30
"""A bound only a hung service would reach."""
Record = tuple[str, str, str]


class Service:
    """One `blelock serve` child and the events it logged."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "blelock", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lines: list[str] = []
        # Drained continuously: a child blocked on a full stderr pipe would stall its loop.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        listening = self.wait_for("listening")
        if "socket" in listening:
            self.client = httpx.Client(
                transport=httpx.HTTPTransport(uds=listening["socket"]),
                base_url="http://blelock",
                headers=AUTH,
                timeout=30,
            )
        else:
            self.client = httpx.Client(
                base_url=f"http://127.0.0.1:{listening['port']}", headers=AUTH, timeout=30
            )

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            with contextlib.suppress(json.JSONDecodeError):
                self.events.put(json.loads(line))
        self.events.put({"event": "<exited>"})

    def wait_for(self, event: str, **fields: str) -> dict[str, Any]:
        while True:
            try:
                got = self.events.get(timeout=EVENT_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"no {event!r} logged; log:\n{''.join(self.lines)}") from None
            if got["event"] == event and all(got.get(k) == v for k, v in fields.items()):
                return got
            if got["event"] == "<exited>":
                raise AssertionError(f"exited before {event!r}; log:\n{''.join(self.lines)}")

    def close(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=EVENT_TIMEOUT_S)
        self._reader.join(timeout=EVENT_TIMEOUT_S)


@contextlib.contextmanager
def service(sim: dict[str, str], **settings: str) -> Iterator[Service]:
    env = cli_environment(
        **(
            sim
            | {
                "BLELOCK_SERVE_TOKEN": TOKEN,
                "BLELOCK_SERVE_PORT": "0",
                "BLELOCK_LOG_FORMAT": "json",
                "BLELOCK_SCAN_TIMEOUT": "5",
            }
            | settings
        )
    )
    running = Service(env)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def sim() -> Iterator[dict[str, Any]]:
    # Latencies of a few ms, so that an unlock lasts long enough to be caught in flight.
    with simulator_process(
        *("--locks", "3", "--seed", "4", "--adv-ms", "5", "--connect-ms", "40"),
        *("--interval-ms", "10", "--write-rtt-ms", "30", "--cloud-ms", "20"),
    ) as announced:
        yield announced


def outbox(db: Path) -> set[Record]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return set(conn.execute("SELECT lock_id, session, payload FROM outbox"))


def cloud_state(env: dict[str, str]) -> dict[str, Any]:
    answer = httpx.get(env["BLELOCK_NOKE_URL"] + "_sim/state", timeout=10)
    answer.raise_for_status()
    state: dict[str, Any] = answer.json()
    return state


def test_sigkill_mid_operation_then_restart_loses_nothing_from_the_outbox(
    sim: dict[str, Any],
) -> None:
    env: dict[str, str] = sim["env"]
    macs = [lock["mac"] for lock in sim["locks"]]
    db = Path(os.environ["BLELOCK_DATA_DIR"]) / "blelock.db"
    # Without the mobile key nothing is uploaded: every record stays in the outbox.
    with service(env, BLELOCK_NOKE_MOBILE_KEY="") as first:
        done = first.client.post(f"/v1/locks/{macs[0]}/unlock", json={})
        assert done.status_code == 200, done.text
        for mac in macs:
            queued = first.client.post(f"/v1/locks/{mac}/unlock", json={"wait": False})
            assert queued.status_code == 202
        first.wait_for("operation started", lock=macs[1])
        first.process.send_signal(signal.SIGKILL)
        assert first.process.wait(timeout=EVENT_TIMEOUT_S) == -signal.SIGKILL
    persisted = outbox(db)
    assert persisted, "the finished unlock's records must be in the outbox"

    with service(env) as second:
        second.wait_for("uploaded lock logs")
        assert second.client.get("/v1/logs/pending").json() == {"pending": 0}
    assert outbox(db) == set()
    state = cloud_state(env)
    uploaded = {tuple(row) for row in state["uploaded"]}
    assert persisted <= uploaded  # nothing that reached the outbox was lost
    assert uploaded <= {tuple(row) for row in state["given"]}
    assert state["records_duplicate"] == 0


def test_sigterm_finishes_the_operation_in_flight_and_exits_cleanly(
    sim: dict[str, Any],
) -> None:
    env: dict[str, str] = sim["env"]
    mac = sim["locks"][0]["mac"]
    with service(env) as running:
        queued = running.client.post(f"/v1/locks/{mac}/unlock", json={"wait": False})
        assert queued.status_code == 202
        job = queued.json()["id"]
        running.wait_for("operation started", job=job)
        running.process.send_signal(signal.SIGTERM)
        running.wait_for("operation done", job=job)
        running.wait_for("service stopped")
        assert running.process.wait(timeout=EVENT_TIMEOUT_S) == 0
    assert cloud_state(env)["unlocks"][mac] == 1
    log = "".join(running.lines)
    for secret in (TOKEN, env["BLELOCK_NOKE_API_KEY"], env["BLELOCK_NOKE_MOBILE_KEY"]):
        assert secret not in log


def test_serve_refuses_to_start_without_a_token() -> None:
    env = cli_environment(BLELOCK_NOKE_API_KEY="server-key-that-must-not-leak")
    result = subprocess.run(
        [sys.executable, "-m", "blelock", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=EVENT_TIMEOUT_S,
    )
    assert result.returncode == 2
    assert "serve_token" in result.stderr and "BLELOCK_SERVE_TOKEN" in result.stderr
    assert "server-key-that-must-not-leak" not in result.stderr + result.stdout


def test_serve_on_a_unix_socket_is_0600_and_removed_on_stop(
    sim: dict[str, Any], tmp_path: Path
) -> None:
    private = tmp_path / "run"
    private.mkdir(mode=0o700)
    path = private / "blelock.sock"
    with service(sim["env"], BLELOCK_SERVE_SOCKET=str(path)) as running:
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert running.client.get("/v1/health").status_code == 200
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=EVENT_TIMEOUT_S) == 0
    assert not path.exists()
