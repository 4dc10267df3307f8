"""``blelock`` as a user runs it against a world with a Nuki lock (served from its own thread:
the CLI runs its own event loop): scan, pair with the PIN on stdin, the generic open, a
time-limited keypad code, the log through `blelock nuki logs` and `blelock logs`, and the
same code commands through the Web API (``--via web``)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from blelock.cli import main
from simulators.in_thread import served_in_thread
from simulators.nuki_lock import SimNukiLock
from simulators.world import World, WorldSpec, build_world, serve_world
from tests.conftest import FAST


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, private_store: Path) -> Iterator[World]:
    built = build_world(WorldSpec(locks=1, seed=8, latency=FAST, nuki_locks=1))
    assert built.nuki is not None
    built.nuki.web.delay_s = 0.0
    with served_in_thread(lambda: serve_world(built)) as running:
        for name, value in running.environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("BLELOCK_SCAN_TIMEOUT", "3")
        yield built


def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    stdin: str = "",
    code: int = 0,
) -> object:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    assert main(["--json", *argv]) == code
    captured = capsys.readouterr()
    return json.loads(captured.out) if code == 0 else captured.err


def test_nuki_from_the_command_line(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert world.nuki is not None
    lock: SimNukiLock = world.nuki.locks[0]
    mac = lock.mac
    seen = run(capsys, monkeypatch, "scan", "--seconds", "1")
    assert isinstance(seen, list)
    (nuki,) = [s for s in seen if s["vendor"] == "nuki"]
    assert nuki["lock_id"] == mac and nuki["flags"] == ["pairing mode"]

    paired = run(
        capsys, monkeypatch, "nuki", "pair", mac, "--with-pin", stdin=f"{lock.security_pin}\n"
    )
    assert isinstance(paired, dict) and paired["auth_id"] == 1
    opened = run(capsys, monkeypatch, "open", mac)
    assert isinstance(opened, dict)
    (result,) = opened["results"]
    assert result["vendor"] == "nuki" and result["lock_state"] == "unlocked"

    added = run(
        capsys, monkeypatch, "nuki", "codes", "add", mac, "--name", "cleaner",
        "--daily", "09:00-17:00", "--days", "mon-fri", stdin="345678\n",
    )  # fmt: skip
    assert isinstance(added, dict) and added["code_id"] == 1
    listed = run(capsys, monkeypatch, "nuki", "codes", "list", mac)
    assert listed == [
        {
            "id": 1,
            "name": "cleaner",
            "enabled": True,
            "window": "Mon,Tue,Wed,Thu,Fri; 09:00-17:00 lock time",
            "uses": 0,
        }
    ]
    assert "345678" not in json.dumps(listed)  # the code itself is never shown
    refused = run(
        capsys, monkeypatch, "nuki", "codes", "add", mac, "--name", "x", stdin="123456\n", code=2
    )
    assert 'may not start with "12"' in str(refused)

    info = run(capsys, monkeypatch, "nuki", "info", mac)
    assert isinstance(info, dict)
    assert (info["lock_state"], info["name"], info["keypad"]) == ("unlocked", "Door 1", True)
    assert info["utc_offset_min"] in (60, 120)  # Europe/Berlin, winter or summer

    logs = run(capsys, monkeypatch, "nuki", "logs", mac)
    assert isinstance(logs, dict) and logs["read"] == 1 and logs["kept"] == 1
    assert logs["entries"][0]["entry"].startswith("unlock")
    assert run(capsys, monkeypatch, "nuki", "logging", mac, "off") == {
        "ok": True, "lock_id": mac, "logging": False
    }  # fmt: skip
    assert not lock.logging_enabled
    logs = run(capsys, monkeypatch, "nuki", "logs", mac)
    assert isinstance(logs, dict) and logs["read"] == 1  # the switch itself is logged
    assert logs["entries"][0]["entry"] == "logging disabled"
    kept = run(capsys, monkeypatch, "logs")
    assert isinstance(kept, dict) and kept["kept"] == 2
    assert kept["kept_records"][0]["vendor"] == "nuki"

    # The same commands through the Web API (its own simulated copy of the lock).
    web_added = run(
        capsys, monkeypatch, "nuki", "codes", "add", "Door 1", "--via", "web", "--name", "guest",
        "--daily", "09:00-17:00", stdin="456789\n",
    )  # fmt: skip
    assert isinstance(web_added, dict) and web_added["name"] == "guest"
    web_listed = run(capsys, monkeypatch, "nuki", "codes", "list", "Door 1", "--via", "web")
    assert isinstance(web_listed, list) and [c["name"] for c in web_listed] == ["guest"]
    assert "09:00" in web_listed[0]["window"]
    web_logs = run(capsys, monkeypatch, "nuki", "logs", "Door 1", "--via", "web")
    assert isinstance(web_logs, dict) and web_logs["smartlock_id"] == 1001
