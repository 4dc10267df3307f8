"""A third vendor defined in tests/ only (tests/acme): registered through BLELOCK_PLUGINS, it
shows up in scan, open, logs, keys and sync with no edit to shared code."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from blelock.cli import main
from simulators.world import WorldSpec, build_world, serve_world
from tests.acme import plugin as acme
from tests.acme.sim_lock import AcmeLock
from tests.conftest import FAST
from tests.service.heard import listed_once_heard

ACME_ID = "ACME-0042"


@pytest.fixture
def world_env(monkeypatch: pytest.MonkeyPatch, private_store: Path) -> Iterator[AcmeLock]:
    """A simulated world with one Nokē lock and one Acme lock, served from its own thread
    (the CLI runs its own event loop, as it does for a user)."""
    world = build_world(WorldSpec(locks=1, seed=5, latency=FAST))
    lock = AcmeLock(ACME_ID, "AC:3E:00:00:00:42")
    world.radio.add(lock)
    ready = threading.Event()
    stop: asyncio.Future[None] | None = None
    loop = asyncio.new_event_loop()
    environment: dict[str, str] = {}

    async def serve() -> None:
        nonlocal stop
        stop = loop.create_future()
        async with serve_world(world) as running:
            environment.update(running.environment)
            ready.set()
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the simulated world did not start"
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BLELOCK_PLUGINS", "acme=tests.acme")
    monkeypatch.setenv("BLELOCK_SCAN_TIMEOUT", "3")
    acme.UPLOADED.clear()
    try:
        yield lock
    finally:
        loop.call_soon_threadsafe(lambda: stop is not None and stop.set_result(None))
        thread.join(30)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    capsys.readouterr()
    code = main(["--json", *argv])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_a_third_vendor_is_scanned_opened_kept_listed_and_uploaded(
    world_env: AcmeLock, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = run_json(capsys, "scan", "--seconds", "1")
    assert isinstance(seen, list)
    assert {(s["vendor"], s["lock_id"]) for s in seen} >= {("acme", ACME_ID)}
    assert any(s["vendor"] == "noke" for s in seen)  # the built-in vendors are still there

    opened = run_json(capsys, "open", ACME_ID.lower())
    assert isinstance(opened, dict)
    assert [(r["vendor"], r["lock_id"], r["operation"]) for r in opened["results"]] == [
        ("acme", ACME_ID, "open")
    ]
    assert world_env.opens == 1  # the simulated lock's own count

    logs = run_json(capsys, "logs", "--vendor", "acme")
    assert isinstance(logs, dict)
    assert logs["pending"] == 1 and logs["records"][0]["lock_id"] == ACME_ID

    run_json(capsys, "sync", "--vendor", "acme", "--locks", ACME_ID)
    keys = run_json(capsys, "keys", "--vendor", "acme")
    assert isinstance(keys, list)
    assert [(k["vendor"], k["lock_id"]) for k in keys] == [("acme", ACME_ID)]
    assert [r.lock_id for r in acme.UPLOADED] == [ACME_ID]
    assert run_json(capsys, "logs", "--vendor", "acme") == {
        "pending": 0,
        "records": [],
        "set_aside": [],
        "kept": 0,
        "kept_records": [],
    }


def test_an_id_no_vendor_owns_is_refused_naming_it(
    world_env: AcmeLock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["open", "ACME-12"]) == 2
    assert "ACME-12" in capsys.readouterr().err


def test_an_id_two_vendors_could_own_is_resolved_by_the_scan_or_refused_naming_both(
    world_env: AcmeLock, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLELOCK_PLUGINS", "acme=tests.acme,twin=tests.acme_twin")
    opened = run_json(capsys, "open", ACME_ID)
    assert isinstance(opened, dict) and opened["results"][0]["vendor"] == "acme"
    assert world_env.opens == 1

    assert main(["open", "ACME-0777"]) == 2  # neither heard it
    err = capsys.readouterr().err
    assert "acme" in err and "twin" in err and "--vendor" in err
    assert world_env.opens == 1


async def test_the_kiosk_lists_opens_and_keeps_up_a_third_vendor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx

    from blelock.service.api import create_app
    from blelock.service.runner import Runner
    from tests.conftest import settings_for

    monkeypatch.setenv("BLELOCK_PLUGINS", "acme=tests.acme")
    acme.UPLOADED.clear()
    world = build_world(WorldSpec(locks=1, seed=6, latency=FAST))
    lock = AcmeLock(ACME_ID, "AC:3E:00:00:00:42")
    world.radio.add(lock)
    token = "kiosk-test-token-0123456789"
    async with serve_world(world) as running:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", running.radio_address)
        settings = settings_for(running, BLELOCK_SERVE_TOKEN=token, BLELOCK_SYNC_INTERVAL="3600")
        async with Runner(settings, scan_window=0.2) as runner:
            assert settings.serve_token is not None
            app = create_app(runner, settings.serve_token)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://kiosk", headers=headers
            ) as client:
                listed = await listed_once_heard(runner, client, [ACME_ID])
                assert ("acme", ACME_ID) in {(x["vendor"], x["lock_id"]) for x in listed}

                # The first round is over (the upkeep then waits to be woken), so the round
                # after the open is one that started after it.
                await runner.wait_for_sync_rounds(1)
                rounds = runner.sync_rounds
                opened = await client.post(f"/v1/locks/{ACME_ID}/open", json={})
                assert opened.status_code == 200, opened.text
                assert opened.json()["vendor"] == "acme" and lock.opens == 1
                await runner.wait_for_sync_rounds(rounds + 1)  # the open woke the upkeep
                assert [r.lock_id for r in acme.UPLOADED] == [ACME_ID]  # uploaded by upkeep
                health = (await client.get("/v1/health")).json()
                mine = health["vendors"]["acme"]
                assert mine["outbox_depth"] == 0
                assert mine["keys"]["cached"] == 1  # the upkeep's key refresh made one
                assert set(health["vendors"]) >= {"noke", "keyless", "acme"}


def test_an_option_of_another_vendor_is_refused_by_name_before_the_lock_is_touched(
    world_env: AcmeLock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["open", ACME_ID, "--rekey"]) == 2  # Keyless's option, not Acme's
    err = capsys.readouterr().err
    assert "--rekey is not an option of Acme open" in err
    assert world_env.opens == 0
