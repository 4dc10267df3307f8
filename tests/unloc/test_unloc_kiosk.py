"""The kiosk's phone-key routes over a simulated world with an Unloc project: a renter's phone
gets a key for their unit's lock (a job, visible through /v1/jobs/{id}) and loses it again."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from blelock.service.api import create_app
from blelock.service.runner import Runner
from simulators.unloc_cloud import JobOutcome
from simulators.world import RunningWorld, WorldSpec, build_world, serve_world
from tests.conftest import FAST
from tests.service.test_api import AUTH, SCAN_WINDOW, service_settings

PHONE = "+4799887766"


@contextlib.asynccontextmanager
async def kiosk(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[RunningWorld, Runner, httpx.AsyncClient]]:
    world = build_world(WorldSpec(locks=1, seed=3, latency=FAST, unloc_locks=2))
    assert world.unloc is not None
    world.unloc.state.job_delay = dt.timedelta(0)  # made as soon as asked: nothing to wait for
    async with serve_world(world) as running:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", running.radio_address)
        settings = service_settings(running)
        async with Runner(settings, scan_window=SCAN_WINDOW) as runner:
            assert settings.serve_token is not None
            transport = httpx.ASGITransport(app=create_app(runner, settings.serve_token))
            async with httpx.AsyncClient(transport=transport, base_url="http://kiosk") as client:
                yield running, runner, client


async def _finished(runner: Runner, client: httpx.AsyncClient, answer: httpx.Response) -> Any:
    assert answer.status_code == 202, answer.text
    location = answer.headers["Location"]
    job = runner.job(answer.json()["id"])
    assert job is not None
    await runner.wait(job)
    return (await client.get(location, headers=AUTH)).json()


async def test_a_phone_gets_a_key_for_office_hours_and_loses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(monkeypatch) as (running, runner, client):
        assert running.world.unloc is not None
        state = running.world.unloc.state
        lock = next(iter(state.locks.values()))
        weekly = [{"weekday": d, "start": "00:00"} for d in ("mon", "tue", "wed", "thu", "fri",
                                                               "sat", "sun")]  # fmt: skip
        end = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
        answer = await client.post(
            "/v1/phone-keys",
            json={"lock_id": lock.id, "phone": PHONE, "end": end, "weekly": weekly},
            headers=AUTH,
        )
        job = await _finished(runner, client, answer)
        assert job["state"] == "done", job
        assert job["vendor"] == "unloc" and job["operation"] == "issue-phone-key"
        assert job["result"]["key_state"] == "active"
        assert job["progress"] == {"done": 1, "total": 1, "fraction": 1.0}
        made = state.keys[job["result"]["key_id"]]
        assert made.app_user_id == PHONE and made.lock_id == lock.id
        assert made.spans is not None and len(made.spans) == 7
        revoke = await client.post(
            "/v1/phone-keys/revoke", json={"phone": PHONE, "lock_id": lock.id}, headers=AUTH
        )
        gone = await _finished(runner, client, revoke)
        assert gone["state"] == "done" and gone["result"] == {"revoked": 1}
        assert made.revoked_at is not None
        health = (await client.get("/v1/health", headers=AUTH)).json()
        assert health["vendors"]["unloc"]["cloud_reachable"] is True
        assert health["peak_connections"] == 0  # no radio slot was taken for the cloud


async def test_a_failed_vendor_job_fails_the_kiosk_job_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(monkeypatch) as (running, runner, client):
        assert running.world.unloc is not None
        state = running.world.unloc.state
        state.faults.outcome, state.faults.count = JobOutcome.FAILED_JOB, 1
        lock = next(iter(state.locks.values()))
        answer = await client.post(
            "/v1/phone-keys", json={"lock_id": lock.id, "phone": PHONE}, headers=AUTH
        )
        job = await _finished(runner, client, answer)
        assert job["state"] == "failed"
        assert "ended failedJob" in job["error"]["message"]
        assert job["error"]["kind"] == "CloudRejected"


async def test_bad_phone_keys_requests_are_refused_before_a_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(monkeypatch) as (_, runner, client):
        bad_phone = await client.post(
            "/v1/phone-keys", json={"lock_id": "x", "phone": "99887766"}, headers=AUTH
        )
        assert bad_phone.status_code == 422 and "phone" in bad_phone.json()["error"]["message"]
        naive = await client.post(
            "/v1/phone-keys",
            json={"lock_id": "x", "phone": PHONE, "start": "2026-04-01T09:00:00"},
            headers=AUTH,
        )
        assert naive.status_code == 422 and "start" in naive.json()["error"]["message"]
        not_a_phone_vendor = await client.post(
            "/v1/phone-keys", json={"lock_id": "x", "phone": PHONE, "vendor": "noke"},
            headers=AUTH,
        )  # fmt: skip
        assert not_a_phone_vendor.status_code == 422
        assert "gives no keys to phones" in not_a_phone_vendor.json()["error"]["message"]
        assert runner.jobs() == []


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        (
            {"start": "2026-04-02T09:00:00+00:00", "end": "2026-04-01T09:00:00+00:00"},
            "end must be after start",
        ),
        ({"weekly": [{"weekday": "mon", "start": "17:00", "end": "09:00"}]}, "start before it"),
        (
            {"weekly": [{"weekday": "mon", "start": "09:00", "end": "12:00"},
                        {"weekday": "mon", "start": "13:00", "end": "17:00"}]},
            "one time span per weekday",
        ),
    ],
)  # fmt: skip
async def test_what_the_vendor_would_refuse_is_refused_before_a_job(
    monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], names: str
) -> None:
    async with kiosk(monkeypatch) as (running, runner, client):
        assert running.world.unloc is not None
        lock = next(iter(running.world.unloc.state.locks))
        answer = await client.post(
            "/v1/phone-keys", json={"lock_id": lock, "phone": PHONE} | fields, headers=AUTH
        )
        assert answer.status_code == 422, answer.text
        assert names in answer.json()["error"]["message"]
        assert runner.jobs() == [] and running.world.unloc.state.token_requests == 0


async def test_a_vendor_job_still_running_does_not_mark_its_cloud_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unloc answered every poll; only its job outlived the wait. Health must say reachable."""
    from blelock.errors import CloudJobRunning

    async with kiosk(monkeypatch) as (_, runner, client):
        plugin = runner.phone_key_vendor("unloc")

        async def outlived(ctx: object) -> dict[str, object]:
            raise CloudJobRunning("Unloc's job j is still inProgress after 300 s")

        job = runner.submit_cloud(plugin, "L", "issue-phone-key", outlived)  # type: ignore[arg-type]
        await runner.wait(job)
        assert job.error is not None and "still inProgress" in job.error.one_line()
        health = (await client.get("/v1/health", headers=AUTH)).json()
        assert health["vendors"]["unloc"]["cloud_reachable"] is True
