"""The kiosk service in the test's own loop: the runner over a simulated world, its API through
httpx's ASGI transport. Concurrency, refusals, health, background upkeep, firmware jobs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from blelock import jobs, vendors
from blelock.config import Settings
from blelock.errors import CloudUnavailable, UsageError
from blelock.model import KeyInfo, LockState, Sighting, VisitResult
from blelock.service.api import create_app
from blelock.service.runner import LockBusy, Runner
from blelock.store.outbox import Outbox
from blelock.transport.scan import Found
from blelock.vendors.base import OperationRequest
from blelock.vendors.keyless.jobs import activate
from simulators.faults import LinkFaults
from simulators.world import RunningWorld, WorldSpec, build_world, serve_world
from tests.conftest import FAST, settings_for
from tests.service.fake_vendor import FakePlugin, register
from tests.service.heard import listed_once_heard as heard_listing

TOKEN = "kiosk-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCAN_WINDOW = 0.2
"""Short windows so the view fills quickly; tests wait for a window, never for a time."""
FIRMWARE = Path(__file__).resolve().parents[2] / "firmware_images"
HANG_GUARD_S = 60
"""A bound only a deadlock would reach: not a timing target."""


class Kiosk:
    def __init__(self, running: RunningWorld, runner: Runner, client: httpx.AsyncClient) -> None:
        self.running, self.runner, self.client = running, runner, client

    @property
    def macs(self) -> list[str]:
        return [lock.mac for lock in self.running.world.locks]

    def unlocks(self) -> dict[str, int]:
        return {lock.mac: lock.unlocks for lock in self.running.world.locks}


def service_settings(running: RunningWorld, **overrides: str) -> Settings:
    defaults = {
        "BLELOCK_SERVE_TOKEN": TOKEN,
        "BLELOCK_MAX_CONNECTIONS": "3",
        "BLELOCK_SYNC_INTERVAL": "3600",  # rounds run when woken; tests never wait an interval
    }
    return settings_for(running, **(defaults | overrides))


@contextlib.asynccontextmanager
async def kiosk(
    spec: WorldSpec,
    monkeypatch: pytest.MonkeyPatch,
    fakes: Sequence[str] = (),
    setup: Callable[[], object] | None = None,
    **overrides: str,
) -> AsyncIterator[Kiosk]:
    """The kiosk over a simulated world; ``fakes``: the test-only vendors registered too, and
    ``setup`` run once they are, before the runner starts."""
    register(monkeypatch, fakes)
    if setup is not None:
        setup()
    async with serve_world(build_world(spec)) as running:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", running.radio_address)
        settings = service_settings(running, **overrides)
        async with Runner(settings, scan_window=SCAN_WINDOW) as runner:
            secret = settings.serve_token
            assert secret is not None
            transport = httpx.ASGITransport(app=create_app(runner, secret))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://kiosk", timeout=HANG_GUARD_S
            ) as client:
                yield Kiosk(running, runner, client)


def spec(locks: int = 10, **faults: LinkFaults) -> WorldSpec:
    return WorldSpec(
        locks=locks,
        seed=5,
        latency=FAST,
        link_faults={int(index): fault for index, fault in faults.items()},
    )


def assert_per_lock_order(jobs: list[dict[str, Any]]) -> None:
    """Per lock, jobs ran one at a time in the order they were queued."""
    by_lock: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_lock.setdefault(job["lock_id"], []).append(job)
    for lock_jobs in by_lock.values():
        lock_jobs.sort(key=lambda job: job["queued_seq"])
        for before, after in itertools.pairwise(lock_jobs):
            assert before["finished_seq"] < after["started_seq"], (before, after)


async def listed_once_heard(k: Kiosk, lock_ids: Collection[str]) -> list[Any]:
    """``/v1/locks`` once the kiosk's scan has heard every one of ``lock_ids``."""
    return await heard_listing(k.runner, k.client, lock_ids, headers=AUTH)


async def test_fifty_concurrent_unlocks_over_ten_locks_all_succeed_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(spec(), monkeypatch) as k:
        requests = [k.macs[i // 5] for i in range(50)]  # neighbours contend for a lock
        async with asyncio.timeout(HANG_GUARD_S):
            answers = await asyncio.gather(
                *(
                    k.client.post(f"/v1/locks/{mac}/unlock", json={}, headers=AUTH)
                    for mac in requests
                )
            )
        assert [a.status_code for a in answers] == [200] * 50, answers[0].text
        jobs = [a.json() for a in answers]
        assert {job["state"] for job in jobs} == {"done"}
        assert_per_lock_order(jobs)
        assert k.unlocks() == {mac: 5 for mac in k.macs}
        health = (await k.client.get("/v1/health", headers=AUTH)).json()
        assert 1 <= health["peak_connections"] <= 3
        assert health["jobs_running"] == health["jobs_queued"] == 0


async def test_a_lock_that_drops_its_link_fails_clearly_and_the_rest_are_unaffected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dropping = LinkFaults(drop_link_after_writes=1, drop_link_times=-1)
    async with kiosk(spec(locks=4, **{"0": dropping}), monkeypatch) as k:
        bad, *good = k.macs
        async with asyncio.timeout(HANG_GUARD_S):
            answers = await asyncio.gather(
                *(
                    k.client.post(f"/v1/locks/{mac}/unlock", json={}, headers=AUTH)
                    for mac in [bad, *good, *good]
                )
            )
        failed, *fine = answers
        assert failed.status_code == 502
        error = failed.json()["error"]
        assert error["kind"] == "LinkLost"
        assert error["lock_id"] == bad and error["step"] and error["hint"]
        assert [a.status_code for a in fine] == [200] * len(fine)
        assert k.unlocks() == {bad: 0} | {mac: 2 for mac in good}


async def test_unauthorized_and_malformed_requests_are_refused_and_change_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(spec(locks=2), monkeypatch) as k:
        mac = k.macs[0]
        url = f"/v1/locks/{mac}/unlock"
        unauthorized = [
            await k.client.post(url, json={}),
            await k.client.post(url, json={}, headers={"Authorization": "Bearer wrong-token-xx"}),
            await k.client.post(url, json={}, headers={"Authorization": f"Basic {TOKEN}"}),
            await k.client.post(url, json={}, headers={"Authorization": f"Bearer {TOKEN}x"}),
            await k.client.post(url, content=b"{nope", headers={"Content-Type": "text/json"}),
            await k.client.get("/v1/health"),
            await k.client.get("/v1/locks"),
        ]
        assert [a.status_code for a in unauthorized] == [401] * len(unauthorized)
        assert all(a.headers["WWW-Authenticate"] == "Bearer" for a in unauthorized)
        assert all(TOKEN not in a.text for a in unauthorized)
        malformed = [
            await k.client.post(
                url, content=b"{nope", headers=AUTH | {"Content-Type": "application/json"}
            ),
            await k.client.post(url, json={"mode": "sideways"}, headers=AUTH),
            await k.client.post(url, json={"tracking_key": "has space"}, headers=AUTH),
            await k.client.post(url, json={"surprise": 1}, headers=AUTH),
            await k.client.post(url, json=[1, 2], headers=AUTH),
            await k.client.post("/v1/locks/not-a-mac/unlock", json={}, headers=AUTH),
            await k.client.post(
                f"/v1/locks/{mac}/firmware-update", json={"package": "../x.zip"}, headers=AUTH
            ),
            await k.client.get("/v1/jobs/NOT-A-JOB", headers=AUTH),
        ]
        assert [a.status_code for a in malformed] == [422] * len(malformed), [
            a.text for a in malformed
        ]
        assert k.unlocks() == {m: 0 for m in k.macs}
        assert k.runner.jobs() == []
        assert await k.runner.pending_logs() == 0


async def test_openapi_is_published_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    async with kiosk(spec(locks=1), monkeypatch) as k:
        answer = await k.client.get("/openapi.json")
        assert answer.status_code == 200
        paths = answer.json()["paths"]
        assert {
            "/v1/locks",
            "/v1/locks/{lock_id}/unlock",
            "/v1/locks/{lock_id}/unshackle",
            "/v1/locks/{lock_id}/firmware-update",
            "/v1/jobs/{job_id}",
            "/v1/logs/pending",
            "/v1/health",
        } <= set(paths)
        assert "bearer" in str(answer.json()["components"]["securitySchemes"]).lower()


async def test_locks_in_range_come_from_advertisements_and_visits_add_the_battery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(spec(locks=3), monkeypatch) as k:
        listed = await listed_once_heard(k, k.macs)
        assert sorted(lock["lock_id"] for lock in listed) == sorted(k.macs)
        assert {lock["vendor"] for lock in listed} == {"noke"}
        assert all(lock["battery_mv"] is None and lock["last_seen"] for lock in listed)

        mac = k.macs[1]
        done = await k.client.post(f"/v1/locks/{mac}/unlock", json={}, headers=AUTH)
        assert done.status_code == 200
        battery = {
            lock["lock_id"]: lock["battery_mv"]
            for lock in (await k.client.get("/v1/locks", headers=AUTH)).json()
        }
        assert battery[mac] == k.running.world.locks[1].battery_mv
        health = (await k.client.get("/v1/health", headers=AUTH)).json()
        assert health["adapter_up"] is True and health["locks_in_range"] == 3
        assert health["cloud_reachable"] is True


FAKE_LOCK, OTHER_FAKE_LOCK = "fake-0001", "fake-0002"
"""Locks of the test-only vendor: no radio hears them, and no built-in vendor's id is like
theirs."""


def fake(name: str = "fake") -> FakePlugin:
    found = vendors.plugin(name)
    assert isinstance(found, FakePlugin)
    return found


def block_until(
    release: asyncio.Event,
    started: list[str],
    plugin: FakePlugin,
    *,
    began: asyncio.Event | None = None,
) -> None:
    """The fake's operations wait for ``release`` (noting which lock started first, and
    setting ``began`` when one has)."""

    async def hold(plugin: FakePlugin, lock_id: str, request: OperationRequest) -> VisitResult:
        started.append(lock_id)
        if began is not None:
            began.set()
        await release.wait()
        return plugin.result(lock_id, request)

    plugin.behaviour = hold


async def test_a_full_queue_answers_busy_at_once_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, started = asyncio.Event(), list[str]()
    async with kiosk(spec(locks=1), monkeypatch, ["fake"], BLELOCK_LOCK_QUEUE_LIMIT="2") as k:
        block_until(release, started, fake())
        lock = FAKE_LOCK
        first = k.runner.submit("unlock", lock)
        second = k.runner.submit("unlock", lock)
        busy = await k.client.post(f"/v1/locks/{lock}/unlock", json={}, headers=AUTH)
        assert busy.status_code == 429 and busy.headers["Retry-After"]
        assert busy.json()["error"]["kind"] == "LockBusy"
        assert busy.json()["error"]["lock_id"] == lock
        assert len(k.runner.jobs()) == 2
        other = k.runner.submit("unlock", OTHER_FAKE_LOCK)  # other locks are not held up
        release.set()
        for job in (first, second, other):
            assert (await k.runner.wait(job)).state.value == "done"
        assert sorted(started) == sorted([lock, lock, OTHER_FAKE_LOCK])


async def test_a_job_that_waits_too_long_for_its_lock_fails_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, started, began = asyncio.Event(), list[str](), asyncio.Event()
    async with kiosk(spec(locks=1), monkeypatch, ["fake"], BLELOCK_LOCK_WAIT_TIMEOUT="0.05") as k:
        block_until(release, started, fake(), began=began)
        holder = k.runner.submit("unlock", FAKE_LOCK)
        # The holder first makes room in the store (behind the upkeep's first round, on a
        # slow disk longer than the waiter's 50 ms): the waiter comes once it holds the lock.
        async with asyncio.timeout(30):
            await began.wait()
        waiter = await k.runner.wait(k.runner.submit("unlock", FAKE_LOCK))
        assert isinstance(waiter.error, LockBusy) and waiter.error.lock_id == FAKE_LOCK
        assert started == [FAKE_LOCK]  # the waiter never ran
        release.set()
        assert (await k.runner.wait(holder)).error is None


async def test_connection_slots_bound_concurrent_operations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, two_running = asyncio.Event(), asyncio.Event()
    active, most = [0], [0]

    async def hold(plugin: FakePlugin, lock_id: str, request: OperationRequest) -> VisitResult:
        active[0] += 1
        most[0] = max(most[0], active[0])
        if active[0] == 2:
            two_running.set()
        await release.wait()
        active[0] -= 1
        return plugin.result(lock_id, request)

    async with kiosk(spec(locks=1), monkeypatch, ["fake"], BLELOCK_MAX_CONNECTIONS="2") as k:
        fake().behaviour = hold
        submitted = [k.runner.submit("unlock", f"fake-{i:04}") for i in range(5)]
        await two_running.wait()
        health = (await k.client.get("/v1/health", headers=AUTH)).json()
        assert health["connections_in_use"] == 2 and health["jobs_queued"] == 3
        release.set()
        for job in submitted:
            assert (await k.runner.wait(job)).error is None
        assert most[0] == 2


async def test_an_operation_that_asks_the_cloud_first_takes_its_slot_when_it_needs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the adapter's one slot held, an operation whose spec says ``slot_when_needed``
    still does its cloud work; it waits for the slot only at ``ctx.radio_needed()``."""
    release, asked_cloud, opened = asyncio.Event(), asyncio.Event(), list[str]()

    async def open_after_release(
        plugin: FakePlugin, lock_id: str, request: OperationRequest
    ) -> VisitResult:
        opened.append(lock_id)
        if request.operation == "unlock":
            await release.wait()
        return plugin.result(lock_id, request)

    async def cloud() -> None:
        asked_cloud.set()

    async with kiosk(spec(locks=1), monkeypatch, ["fake"], BLELOCK_MAX_CONNECTIONS="1") as k:
        fake().behaviour, fake().cloud_first = open_after_release, cloud
        holder = k.runner.submit("unlock", "fake-0001")
        later = k.runner.submit("sync-then-open", "fake-0002")
        async with asyncio.timeout(HANG_GUARD_S):
            await asked_cloud.wait()  # while the one slot is the holder's
        health = (await k.client.get("/v1/health", headers=AUTH)).json()
        assert health["connections_in_use"] == 1 and opened == ["fake-0001"]
        release.set()
        for job in (holder, later):
            assert (await k.runner.wait(job)).error is None
        assert opened == ["fake-0001", "fake-0002"]
        health = (await k.client.get("/v1/health", headers=AUTH)).json()
        assert health["peak_connections"] == 1 and health["connections_in_use"] == 0


async def test_room_is_made_again_once_an_operation_has_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lock is opened only when its records can be kept: an operation that takes its slot
    late (after its cloud work and a wait for the slot) has the room checked again then."""
    steps: list[str] = []
    reserve = Outbox.reserve

    async def noted(outbox: Outbox, records: int, *, lock_id: str | None = None) -> None:
        steps.append("room")
        await reserve(outbox, records, lock_id=lock_id)

    async def opened(plugin: FakePlugin, lock_id: str, request: OperationRequest) -> VisitResult:
        steps.append("open")
        return plugin.result(lock_id, request)

    async def cloud() -> None:
        steps.append("cloud")

    monkeypatch.setattr(Outbox, "reserve", noted)
    async with kiosk(spec(locks=1), monkeypatch, ["fake"], BLELOCK_MAX_CONNECTIONS="1") as k:
        fake().behaviour, fake().cloud_first = opened, cloud
        assert (await k.runner.wait(k.runner.submit("unlock", "fake-0001"))).error is None
        assert steps == ["room", "open"]
        steps.clear()
        assert (await k.runner.wait(k.runner.submit("sync-then-open", "fake-0002"))).error is None
        assert steps == ["room", "cloud", "room", "open"]


def hold_noting(release: asyncio.Event, started: list[str], count: int) -> asyncio.Event:
    """The fake's operations wait for ``release``; the event returned is set once ``count``
    of them have started."""
    enough = asyncio.Event()

    async def hold(plugin: FakePlugin, lock_id: str, request: OperationRequest) -> VisitResult:
        started.append(lock_id)
        if len(started) >= count:
            enough.set()
        await release.wait()
        return plugin.result(lock_id, request)

    fake().behaviour = hold
    return enough


async def test_a_job_done_with_the_radio_frees_its_connection_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A visit's upload after its link closed holds no connection slot: with one slot, the
    next lock's job runs while the first still waits on its cloud call."""
    release, started = asyncio.Event(), list[str]()
    async with kiosk(spec(locks=1), monkeypatch, ["fake"], BLELOCK_MAX_CONNECTIONS="1") as k:
        both = hold_noting(release, started, 2)
        fake().radio_done_first = True
        first = k.runner.submit("unlock", FAKE_LOCK)
        second = k.runner.submit("unlock", OTHER_FAKE_LOCK)
        async with asyncio.timeout(HANG_GUARD_S):
            await both.wait()
        health = (await k.client.get("/v1/health", headers=AUTH)).json()
        assert health["connections_in_use"] == 0 and health["jobs_queued"] == 0
        release.set()
        for job in (first, second):
            assert (await k.runner.wait(job)).error is None
        assert k.runner.peak_connections == 1


async def test_a_job_holds_its_connection_slot_until_the_radio_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, started = asyncio.Event(), list[str]()
    async with kiosk(spec(locks=1), monkeypatch, ["fake"], BLELOCK_MAX_CONNECTIONS="1") as k:
        one = hold_noting(release, started, 1)
        first = k.runner.submit("unlock", FAKE_LOCK)
        second = k.runner.submit("unlock", OTHER_FAKE_LOCK)
        async with asyncio.timeout(HANG_GUARD_S):
            await one.wait()
        health = (await k.client.get("/v1/health", headers=AUTH)).json()
        assert health["connections_in_use"] == 1 and health["jobs_queued"] == 1
        assert started == [FAKE_LOCK]
        release.set()
        for job in (first, second):
            assert (await k.runner.wait(job)).error is None
        assert started == [FAKE_LOCK, OTHER_FAKE_LOCK]


async def test_a_visit_that_uploaded_its_records_wakes_no_upkeep_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An online Nokē unlock sends its records right after the visit: a background round for
    it would only repeat the upload. One that could not send them wakes the upkeep."""
    async with kiosk(spec(locks=1), monkeypatch) as k:
        job = await k.runner.wait(k.runner.submit("unlock", k.macs[0], vendor="noke"))
        assert job.error is None and job.result is not None and job.result["uploaded"]
        assert job.upkeep_due is False
    async with kiosk(spec(locks=1), monkeypatch, BLELOCK_NOKE_MOBILE_KEY="") as k:
        job = await k.runner.wait(k.runner.submit("unlock", k.macs[0], vendor="noke"))
        assert job.error is None and job.result is not None and job.result["logs_kept"]
        assert job.upkeep_due is True


async def test_logs_wait_in_the_outbox_without_a_mobile_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(spec(locks=2), monkeypatch, BLELOCK_NOKE_MOBILE_KEY="") as k:
        for mac in k.macs:
            assert (
                await k.client.post(f"/v1/locks/{mac}/unlock", json={}, headers=AUTH)
            ).status_code == 200
        await k.runner.wait_for_sync_rounds(2)
        pending = (await k.client.get("/v1/logs/pending", headers=AUTH)).json()["pending"]
        given = sum(len(lock.server_records) for lock in k.running.world.locks)
        assert pending == given > 0
        health = (await k.client.get("/v1/health", headers=AUTH)).json()
        assert health["uploads_configured"] is False and health["outbox_depth"] == pending
        assert health["set_aside"] == 0  # waiting for a mobile key is not a refusal


async def test_kept_logs_are_uploaded_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    async with kiosk(spec(locks=2), monkeypatch) as k:
        for mac in k.macs:
            assert (
                await k.client.post(f"/v1/locks/{mac}/unlock", json={}, headers=AUTH)
            ).status_code == 200
        async with asyncio.timeout(HANG_GUARD_S):
            while await k.runner.pending_logs():
                await k.runner.wait_for_sync_rounds(k.runner.sync_rounds + 1)
        given = {
            (m, s, p)
            for lock in k.running.world.locks
            for m, s, p in [(lock.mac, s, p) for s, p in lock.server_records]
        }
        assert {tuple(key) for key in k.running.world.cloud.uploaded} == given


async def test_offline_keys_due_within_the_horizon_are_refreshed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world_spec = WorldSpec(locks=2, seed=5, latency=FAST, offline_tracking_keys=("tech-1",))
    async with serve_world(build_world(world_spec)) as running:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", running.radio_address)
        # Keys trusted for one day and refreshed three days ahead: due at once.
        settings = service_settings(running, BLELOCK_OFFLINE_KEY_LIFETIME_DAYS="1")
        noke = vendors.plugin("noke")
        async with jobs.open_store(settings) as store:
            await noke.sync_keys(jobs.context(noke, settings, store), None, {})
        withdrawn = running.world.locks[0].mac
        running.world.cloud.locks[withdrawn].revoke_offline_key("tech-1")
        async with Runner(settings, scan_window=SCAN_WINDOW) as runner:
            await runner.wait_for_sync_rounds(1)
            health = await runner.health()
        async with jobs.open_store(settings) as store:
            listed = await noke.list_keys(jobs.context(noke, settings, store))
            revoked = {k.lock_id for k in listed if k.revoked_at}
        # Only a refresh could have learnt that the cloud withdrew this key.
        assert revoked == {withdrawn}
        assert health.keys is not None
        assert (health.keys.cached, health.keys.revoked, health.keys.expiring_soon) == (2, 1, 1)
        assert health.vendors["noke"].keys == health.keys  # the only vendor with keys here
        assert health.vendors["noke"].cloud_reachable is True
        assert health.last_sync_error is None and health.cloud_reachable is True


async def test_firmware_update_is_a_job_with_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    async with kiosk(spec(locks=1), monkeypatch, BLELOCK_SERVE_FIRMWARE_DIR=str(FIRMWARE)) as k:
        mac = k.macs[0]  # hardware 4I
        answer = await k.client.post(
            f"/v1/locks/{mac}/firmware-update", json={"package": "noke-4i-3.15.zip"}, headers=AUTH
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        assert answer.headers["Location"] == f"/v1/jobs/{job_id}"
        job = k.runner.job(job_id)
        assert job is not None
        await k.runner.wait(job)
        view = (await k.client.get(f"/v1/jobs/{job_id}", headers=AUTH)).json()
        assert view["state"] == "done", view
        assert view["progress"]["done"] == view["progress"]["total"] > 0
        assert view["progress"]["fraction"] == 1.0
        assert view["result"]["version"] == "3.15"
        assert k.running.world.bootloaders[0].updates == 1


async def test_stopping_refuses_new_work_and_finishes_what_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, started = asyncio.Event(), list[str]()
    async with kiosk(spec(locks=1), monkeypatch, ["fake"]) as k:
        block_until(release, started, fake())
        running = k.runner.submit("unlock", FAKE_LOCK)
        k.runner.stop_accepting()
        refused = await k.client.post(f"/v1/locks/{FAKE_LOCK}/unlock", json={}, headers=AUTH)
        assert refused.status_code == 503 and refused.json()["error"]["kind"] == "ServiceStopping"
        drained = asyncio.create_task(k.runner.drain())
        release.set()
        assert await drained is True
        assert running.state.value == "done"


async def test_a_keyless_lock_is_in_view_and_opens_through_the_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world_spec = WorldSpec(locks=1, seed=5, latency=FAST, keyless_locks=1)
    async with kiosk(world_spec, monkeypatch) as k:
        keyless = k.running.world.keyless
        assert keyless is not None
        (lock,) = keyless.locks
        async with jobs.open_store(k.runner.settings) as store:
            await activate(k.runner.settings, store, keyless.invitation_code)
        heard = await listed_once_heard(k, [lock.locking_device_id, k.macs[0]])
        listed = {row["lock_id"]: row["vendor"] for row in heard}
        assert listed[lock.locking_device_id] == "keyless" and listed[k.macs[0]] == "noke"
        done = await k.client.post(
            f"/v1/locks/{lock.locking_device_id}/open", json={}, headers=AUTH
        )
        assert done.status_code == 200, done.text
        assert done.json()["result"]["online"] is True and lock.opens == 1
        # Opening is Keyless's, unlocking Nokē's: the wrong one for the vendor is refused.
        wrong = await k.client.post(
            f"/v1/locks/{lock.locking_device_id}/unlock", json={}, headers=AUTH
        )
        assert wrong.status_code in (404, 422) and lock.opens == 1
        # Round 1 ran at start; the open's end woke round 2, which uploads its audit entry.
        await k.runner.wait_for_sync_rounds(2)
        received = keyless.platform.audit_entries(lock.locking_device_id)
        assert [entry.sequence_number for entry in received] == [1]
        assert (await k.client.get("/v1/logs/pending", headers=AUTH)).json()["pending"] == 0


def heard(vendor: str, lock_id: str) -> Found:
    """A sighting as a scan window would give it (the device is opaque above transport)."""
    sighting = Sighting(
        vendor, lock_id, "00:00:00:00:00:00", "fake", "F1", None, LockState.LOCKED, -50
    )
    return Found(sighting, cast(Any, None))


async def test_an_id_two_vendors_could_own_is_refused_naming_both_unless_heard_or_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(spec(locks=1), monkeypatch, ["fake", "twin"]) as k:
        lock = "fake-0042"
        with pytest.raises(UsageError) as refused:
            k.runner.submit("unlock", lock)
        assert "fake" in refused.value.message and "twin" in refused.value.message
        assert refused.value.hint is not None and "vendor" in refused.value.hint
        answer = await k.client.post(f"/v1/locks/{lock}/unlock", json={}, headers=AUTH)
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert error["kind"] == "UsageError"
        assert "fake" in error["message"] and "twin" in error["message"]
        assert k.runner.jobs() == []

        named = await k.client.post(
            f"/v1/locks/{lock}/unlock", json={"vendor": "twin"}, headers=AUTH
        )
        assert named.status_code == 200, named.text
        assert named.json()["vendor"] == "twin" and named.json()["result"]["ran_by"] == "twin"
        unknown = await k.client.post(
            f"/v1/locks/{lock}/unlock", json={"vendor": "acme"}, headers=AUTH
        )
        assert unknown.status_code == 422

        # A lock the scan heard is its sighting's vendor's, without being named.
        k.runner.view.record([heard("twin", lock)])
        job = await k.runner.wait(k.runner.submit("unlock", lock))
        assert job.vendor == "twin" and job.error is None and job.result is not None
        assert job.result["ran_by"] == "twin"


async def test_a_lock_id_is_never_given_to_the_first_parser_that_accepts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(spec(locks=1), monkeypatch, ["fake", "twin"]) as k:
        monkeypatch.setattr(
            jobs,
            "candidates",
            lambda text, operation=None: [(fake("fake"), text), (fake("twin"), text)],
        )
        with pytest.raises(UsageError, match="fake, twin"):
            k.runner.submit("unlock", "fake-0007")


async def test_results_are_the_visit_in_one_shape_and_options_reach_the_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(spec(locks=1), monkeypatch, ["fake"]) as k:
        url = f"/v1/locks/{FAKE_LOCK}/unlock"
        done = await k.client.post(url, json={"count": "3"}, headers=AUTH)
        assert done.status_code == 200, done.text
        view = done.json()
        assert view["vendor"] == "fake" and view["lock_id"] == FAKE_LOCK
        assert view["result"] == {
            "online": True,
            "logs_kept": 0,
            "battery_mv": 2900,
            "ran_by": "fake",
            "count": 3,
        }
        as_number = await k.client.post(url, json={"count": 4}, headers=AUTH)
        assert as_number.json()["result"]["count"] == 4
        assert (await k.runner.health()).vendors["fake"].cloud_reachable is True
        # Out of the option's range; an option of another vendor's operation; a mode the
        # operation has not: each refused in the error shape, and nothing ran.
        jobs_before = len(k.runner.jobs())
        for body in ({"count": "12"}, {"rekey": True}, {"tracking_key": "tech-1"}):
            refused = await k.client.post(url, json=body, headers=AUTH)
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["error"]["kind"] == "UsageError", body
        assert len(k.runner.jobs()) == jobs_before


async def test_health_reports_every_vendor_and_sums_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = dt.datetime.now(dt.UTC)

    def setup() -> None:
        plugin, broken = fake("fake"), fake("broken")
        plugin.is_active = broken.is_active = True
        plugin.keys = [
            KeyInfo("fake", FAKE_LOCK, "tech-1", "offline key", now + dt.timedelta(days=30)),
            KeyInfo("fake", OTHER_FAKE_LOCK, "tech-1", "offline key", now - dt.timedelta(days=1)),
        ]
        broken.refresh_error = CloudUnavailable("the fake cloud is down")

    async with kiosk(spec(locks=1), monkeypatch, ["fake", "broken"], setup) as k:
        plugin, broken = fake("fake"), fake("broken")
        await k.runner.wait_for_sync_rounds(1)
        health = (await k.client.get("/v1/health", headers=AUTH)).json()
        per_vendor = health["vendors"]
        assert set(per_vendor) == set(vendors.names())
        fields = {
            "active",
            "cloud_reachable",
            "cloud_checked_at",
            "last_sync_error",
            "outbox_depth",
            "set_aside",
            "keys",
            "uploads_configured",
        }
        assert all(fields <= set(vendor) for vendor in per_vendor.values())
        # One vendor's cloud failing did not stop the other's turn.
        assert broken.refreshed >= 1 and plugin.refreshed >= 1
        assert per_vendor["broken"]["cloud_reachable"] is False
        assert "the fake cloud is down" in per_vendor["broken"]["last_sync_error"]
        assert per_vendor["fake"]["cloud_reachable"] is True
        assert per_vendor["fake"]["last_sync_error"] is None
        assert (
            per_vendor["fake"]["keys"]["cached"] == 2 and per_vendor["fake"]["keys"]["expired"] == 1
        )
        assert health["cloud_reachable"] is False and health["status"] == "degraded"
        assert "the fake cloud is down" in health["last_sync_error"]
        total = sum(v["keys"]["cached"] for v in per_vendor.values() if v["keys"] is not None)
        assert health["keys"]["cached"] == total >= 2 and health["keys"]["expired"] >= 1
        assert health["outbox_depth"] == sum(v["outbox_depth"] for v in per_vendor.values())
