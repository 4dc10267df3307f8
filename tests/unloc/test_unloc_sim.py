"""The simulated Unloc over real HTTP, asked directly (raw httpx) where blelock's client would
refuse to send: it refuses what the live API refuses and keeps its quirks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from simulators.unloc_cloud import JobOutcome
from tests.unloc.conftest import JOB_DELAY, Unloc

WEEKDAYS_9_TO_5 = {
    "timeSpans": [
        {"weekday": d, "startHour": 9, "startMinute": 0, "endHour": 17, "endMinute": 0}
        for d in ("mon", "tue", "wed", "thu", "fri")
    ]
}


async def _token(unloc: Unloc, client: httpx.AsyncClient) -> str:
    answer = await client.post(
        unloc.url + "v2/auth/token/",
        json={
            "grant_type": "client_credentials",
            "client_id": unloc.state.client_id,
            "client_secret": unloc.state.client_secret,
            "scope": "project.admin",
            "project_id": unloc.state.project_id,
        },
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["expires_in"] == 3600 and body["token_type"] == "bearer"
    return str(body["access_token"])


async def _create(unloc: Unloc, keys: list[dict[str, Any]]) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        token = await _token(unloc, client)
        return await client.post(
            unloc.path("keys"), json={"keys": keys}, headers=unloc.headers(token)
        )


def _key(unloc: Unloc, **fields: Any) -> dict[str, Any]:
    return {"lockId": unloc.oslo.id, "appUserId": "+4799887766"} | fields


async def test_a_batch_with_one_invalid_key_is_refused_whole(unloc: Unloc) -> None:
    answer = await _create(unloc, [_key(unloc), _key(unloc, appUserId="99887766"), _key(unloc)])
    assert answer.status_code == 400
    params = answer.json()["invalidParams"]
    assert params == [
        {"name": "keys[1].appUserId", "reason": "must be a phone number in E.164 format"}
    ]
    assert unloc.state.keys == {} and unloc.state.jobs == {}


@pytest.mark.parametrize("field", ["start", "end"])
async def test_null_start_or_end_is_refused(unloc: Unloc, field: str) -> None:
    answer = await _create(unloc, [_key(unloc, **{field: None})])
    assert answer.status_code == 400
    assert answer.json()["invalidParams"][0] == {
        "name": f"keys[0].{field}",
        "reason": "must be of type string",
    }


@pytest.mark.parametrize(
    ("recurrence", "name"),
    [
        (
            {
                "timeSpans": [
                    {
                        "weekday": "mon",
                        "startHour": 9,
                        "startMinute": 0,
                        "endHour": 25,
                        "endMinute": 0,
                    }
                ]
            },
            "keys[0].recurrence.timeSpans[0].endHour",
        ),
        (
            {
                "timeSpans": [
                    {
                        "weekday": "mon",
                        "startHour": 9,
                        "startMinute": 60,
                        "endHour": 17,
                        "endMinute": 0,
                    }
                ]
            },
            "keys[0].recurrence.timeSpans[0].startMinute",
        ),
        (
            {
                "timeSpans": [
                    {
                        "weekday": "monday",
                        "startHour": 9,
                        "startMinute": 0,
                        "endHour": 17,
                        "endMinute": 0,
                    }
                ]
            },
            "keys[0].recurrence.timeSpans[0].weekday",
        ),
        (
            {
                "timeSpans": [
                    {
                        "weekday": "mon",
                        "startHour": 17,
                        "startMinute": 0,
                        "endHour": 9,
                        "endMinute": 0,
                    }
                ]
            },
            "keys[0].recurrence.timeSpans[0]",
        ),
        (
            {
                "timeSpans": [
                    *WEEKDAYS_9_TO_5["timeSpans"],
                    {
                        "weekday": "mon",
                        "startHour": 18,
                        "startMinute": 0,
                        "endHour": 19,
                        "endMinute": 0,
                    },
                ]
            },
            "keys[0].recurrence.timeSpans[5].weekday",
        ),
    ],
)
async def test_time_spans_out_of_the_rules_are_refused(
    unloc: Unloc, recurrence: dict[str, Any], name: str
) -> None:
    answer = await _create(unloc, [_key(unloc, recurrence=recurrence)])
    assert answer.status_code == 400
    assert [p["name"] for p in answer.json()["invalidParams"]] == [name]


def _span(**fields: Any) -> dict[str, Any]:
    return {"weekday": "mon", "startHour": 9, "startMinute": 0, "endHour": 17, "endMinute": 0} | (
        fields
    )


@pytest.mark.parametrize(
    ("fields", "name", "reason"),
    [
        (
            {"recurrence": {"timeSpans": [_span(startHour=24, startMinute=30, endMinute=45)]}},
            "keys[0].recurrence.timeSpans[0]",
            "must lie within the day (24 only as 24:00)",
        ),
        (
            {"recurrence": {"timeSpans": [_span(startHour=9.5)]}},
            "keys[0].recurrence.timeSpans[0].startHour",
            "must be an integer 0-24",
        ),
        (
            {"recurrence": {"timeSpans": []}},
            "keys[0].recurrence.timeSpans",
            "must be a non-empty array",
        ),
        (
            {"start": "2026-04-01T09:00:00"},
            "keys[0].start",
            "must be an ISO 8601 date-time with a time zone",
        ),
        ({"start": "next tuesday"}, "keys[0].start", "must be an ISO 8601 date-time"),
        (
            {"start": "2026-04-02T00:00:00.000Z", "end": "2026-04-01T00:00:00.000Z"},
            "keys[0].end",
            "must be after start",
        ),
        (
            {"end": "2026-03-01T00:00:00.000Z"},
            "keys[0].end",
            "must be after start (now, when start is left out)",
        ),
        ({"durationMinutes": 0}, "keys[0].durationMinutes", "must be a positive integer"),
        ({"durationMinutes": "60"}, "keys[0].durationMinutes", "must be a positive integer"),
    ],
)
async def test_the_simulator_checks_each_rule_itself(
    unloc: Unloc, fields: dict[str, Any], name: str, reason: str
) -> None:
    """What blelock's client refuses before sending, the simulated Unloc refuses on its own."""
    answer = await _create(unloc, [_key(unloc, **fields)])
    assert answer.status_code == 400
    assert answer.json()["invalidParams"] == [{"name": name, "reason": reason}]
    assert unloc.state.jobs == {}


async def test_listing_limits_bulk_revoke_filters_and_other_projects_are_refused(
    unloc: Unloc,
) -> None:
    async with httpx.AsyncClient() as client:
        headers = unloc.headers(await _token(unloc, client))
        for limit in ("0", "-1", "many"):
            answer = await client.get(unloc.path("keys"), params={"limit": limit}, headers=headers)
            assert answer.status_code == 400, limit
        bulk = await client.delete(unloc.path("shared-keys"), headers=headers)
        assert bulk.status_code == 400 and bulk.json()["invalidParams"][0]["name"] == "appUserId"
        other = unloc.path("keys").replace(unloc.state.project_id, "another-project")
        assert (await client.get(other, headers=headers)).status_code == 403


async def test_end_and_duration_together_are_refused(unloc: Unloc) -> None:
    answer = await _create(unloc, [_key(unloc, end="2026-04-01T00:00:00.000Z", durationMinutes=60)])
    assert answer.status_code == 400
    assert answer.json()["invalidParams"][0]["name"] == "keys[0].durationMinutes"


async def test_both_spellings_of_time_spans_are_taken_and_the_answer_is_202_with_a_job(
    unloc: Unloc,
) -> None:
    lower = {"timespans": WEEKDAYS_9_TO_5["timeSpans"]}
    answer = await _create(
        unloc, [_key(unloc, recurrence=WEEKDAYS_9_TO_5), _key(unloc, recurrence=lower)]
    )
    assert answer.status_code == 202
    job = unloc.state.jobs[answer.json()["jobRef"]["id"]]
    assert [len(unloc.state.keys[k].spans or ()) for k in job.key_ids] == [5, 5]


async def test_key_states_follow_the_clock(unloc: Unloc) -> None:
    start = unloc.clock.at + dt.timedelta(hours=1)
    job = unloc.state.create_keys({"keys": [_key(
        unloc, start=start.isoformat(), durationMinutes=120)]})  # fmt: skip
    key = unloc.state.keys[job.key_ids[0]]
    seen = [unloc.state.key_state(key)]
    unloc.clock.advance(JOB_DELAY.total_seconds())
    seen.append(unloc.state.key_state(key))
    unloc.clock.set(start)
    seen.append(unloc.state.key_state(key))
    unloc.clock.set(start + dt.timedelta(minutes=120))
    seen.append(unloc.state.key_state(key))
    assert seen == ["creating", "scheduled", "active", "expired"]


async def test_job_statuses_and_fault_switches(unloc: Unloc) -> None:
    state = unloc.state
    state.pending_for = dt.timedelta(seconds=1)
    for outcome, status, states in [
        (JobOutcome.SUCCEED, "succeeded", ["active", "active"]),
        (JobOutcome.FAILED_JOB, "failedJob", ["error", "error"]),
        (JobOutcome.FAILED_VALIDATION, "failedValidation", ["error", "error"]),
        (JobOutcome.TIMEOUT, "timeout", ["error", "error"]),
        (JobOutcome.ONE_KEY_ERROR, "succeeded", ["error", "active"]),
    ]:
        state.faults.outcome, state.faults.count = outcome, 1
        job = state.create_keys({"keys": [_key(unloc), _key(unloc)]})
        assert state.job_view(job)["status"] == "pending"
        unloc.clock.advance(1)
        assert state.job_view(job)["status"] == "inProgress"
        assert len(state.job_view(job)["resultData"]["creatingKeys"]) == 2
        unloc.clock.advance(JOB_DELAY.total_seconds())
        view = state.job_view(job)
        assert view["status"] == status
        assert [state.key_state(state.keys[k]) for k in job.key_ids] == states
        failed = view["resultData"]["failedKeys"]
        assert len(failed) == states.count("error")
        assert ("failureReason" in view) == (status != "succeeded")


async def test_revoking_an_expired_key_is_409_and_a_revoked_one_disappears(
    unloc: Unloc,
) -> None:
    state = unloc.state
    job = state.create_keys({"keys": [_key(unloc, durationMinutes=30), _key(unloc)]})
    expiring, kept = job.key_ids
    unloc.clock.advance(3600)
    async with httpx.AsyncClient() as client:
        headers = unloc.headers(await _token(unloc, client))
        refused = await client.delete(unloc.path("keys", expiring), headers=headers)
        assert refused.status_code == 409
        assert refused.json()["detail"] == "May not revoke expired keys"
        assert (await client.delete(unloc.path("keys", kept), headers=headers)).status_code == 204
        again = await client.delete(unloc.path("keys", kept), headers=headers)
        assert again.status_code == 404
        listed = (await client.get(unloc.path("keys"), headers=headers)).json()["keys"]
        assert [k["id"] for k in listed] == [expiring]
        one = (await client.get(unloc.path("keys", kept), headers=headers)).json()["key"]
        assert one["state"] == "revoked"


async def test_listing_refuses_a_limit_above_2500_and_a_bad_token(unloc: Unloc) -> None:
    async with httpx.AsyncClient() as client:
        headers = unloc.headers(await _token(unloc, client))
        answer = await client.get(unloc.path("keys"), params={"limit": 2501}, headers=headers)
        assert answer.status_code == 400
        assert answer.json()["invalidParams"][0]["name"] == "limit"
        ok = await client.get(unloc.path("keys"), params={"limit": 2500}, headers=headers)
        assert ok.status_code == 200
        stale = await client.get(unloc.path("keys"), headers=unloc.headers("not-a-token"))
        assert stale.status_code == 401
        unloc.clock.advance(3600)  # the token's hour is over
        expired = await client.get(unloc.path("keys"), headers=headers)
        assert expired.status_code == 401


async def test_the_token_endpoint_refuses_wrong_credentials_and_grants(unloc: Unloc) -> None:
    base = {
        "grant_type": "client_credentials",
        "client_id": unloc.state.client_id,
        "client_secret": unloc.state.client_secret,
        "scope": "project.admin",
    }
    async with httpx.AsyncClient() as client:
        url = unloc.url + "v2/auth/token/"
        wrong = await client.post(url, json=base | {"client_secret": "nope"})
        assert wrong.status_code == 401
        grant = await client.post(url, json=base | {"grant_type": "password"})
        assert grant.status_code == 400
        scope = await client.post(url, json=base | {"scope": "everything"})
        assert scope.status_code == 400


async def test_the_fault_and_clock_switches_over_http(unloc: Unloc) -> None:
    from simulators.unloc_cloud import UnlocState, WallClock, unloc_app
    from simulators.world import _serve_http

    clock = WallClock()
    state = UnlocState(now=clock, project_id="p", client_id="c", client_secret="s")
    async with _serve_http(unloc_app(state, clock)) as url, httpx.AsyncClient() as client:
        moved = await client.post(url + "_sim/clock", json={"at": "2030-01-07T08:00:00+00:00"})
        assert moved.json()["now"].startswith("2030-01-07T08:00")
        ahead = await client.post(url + "_sim/clock", json={"advance_s": 3600})
        assert ahead.json()["now"].startswith("2030-01-07T09:00")
        faults = await client.post(url + "_sim/faults", json={"outcome": "timeout", "count": 2})
        assert faults.json() == {"outcome": "timeout", "count": 2}
    assert state.faults.take() is JobOutcome.TIMEOUT
    # the test's own cloud has no wall clock to move: its clock is the test's
    async with httpx.AsyncClient() as client:
        assert (await client.get(unloc.url + "_sim/clock")).status_code == 404
