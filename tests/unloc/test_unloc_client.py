"""blelock's Unloc client against the simulated Unloc over real HTTP: tokens, pre-send checks,
jobs, listing, revoking, errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import SecretStr

from blelock.errors import AuthFailed, CloudJobRunning, CloudRejected, UsageError
from blelock.model import PhoneKeyRequest, WeeklyWindow
from blelock.vendors.unloc.access import issue_keys, key_from_request, raise_unless_made
from blelock.vendors.unloc.cloud import JobWait, Revoked
from blelock.vendors.unloc.models import Key, NewKey, check_phone, new_key
from simulators.unloc_cloud import JobOutcome
from tests.unloc.conftest import Unloc

PHONE = "+4799887766"


def _key(unloc: Unloc, **fields: Any) -> NewKey:
    return new_key(**({"lockId": unloc.oslo.id, "appUserId": PHONE} | fields))


async def test_a_token_is_reused_until_it_expires_and_renewed_once_on_401(unloc: Unloc) -> None:
    cloud, auth = unloc.cloud, unloc.cloud.auth
    await cloud.locks()
    await cloud.locks()
    assert auth.tokens_fetched == 1 and unloc.state.token_requests == 1
    unloc.clock.advance(3600 - 30)  # inside the margin before the hour is up: renewed
    await cloud.locks()
    assert auth.tokens_fetched == 2
    unloc.state.forget_tokens()  # the cloud no longer knows the token: 401, renewed once
    assert len(await cloud.locks()) == 2
    assert auth.tokens_fetched == 3


async def test_wrong_credentials_fail_once_with_a_clear_line_and_no_secret(unloc: Unloc) -> None:
    secret = "wrong-secret-" + "x" * 20
    async with unloc.client(client_secret=SecretStr(secret)) as cloud:
        with pytest.raises(AuthFailed) as caught:
            await cloud.locks()
    text = caught.value.one_line()
    assert "refused the credentials for the token request (HTTP 401" in text
    assert "client_secret" in text  # the hint names the setting, never its value
    assert secret not in text and unloc.state.client_secret not in text
    assert secret not in repr(cloud) + repr(cloud.auth)


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"appUserId": "4799887766"}, "appUserId"),
        ({"appUserId": "+047998877"}, "appUserId"),
        (
            {"end": dt.datetime(2026, 4, 1, tzinfo=dt.UTC), "durationMinutes": 30},
            "end or durationMinutes, not both",
        ),
        (
            {
                "start": dt.datetime(2026, 4, 2, tzinfo=dt.UTC),
                "end": dt.datetime(2026, 4, 1, tzinfo=dt.UTC),
            },
            "end must be after start",
        ),
        ({"start": dt.datetime(2026, 4, 2)}, "start: needs a time zone"),
        (
            {
                "recurrence": {
                    "timeSpans": [
                        {
                            "weekday": "mon",
                            "startHour": 25,
                            "startMinute": 0,
                            "endHour": 26,
                            "endMinute": 0,
                        }
                    ]
                }
            },
            "recurrence.timeSpans.0.startHour",
        ),
        (
            {
                "recurrence": {
                    "timeSpans": [
                        {
                            "weekday": "mon",
                            "startHour": 9,
                            "startMinute": 61,
                            "endHour": 17,
                            "endMinute": 0,
                        }
                    ]
                }
            },
            "startMinute",
        ),
        (
            {
                "recurrence": {
                    "timeSpans": [
                        {
                            "weekday": "mon",
                            "startHour": 17,
                            "startMinute": 0,
                            "endHour": 9,
                            "endMinute": 0,
                        }
                    ]
                }
            },
            "must start before it ends",
        ),
        (
            {
                "recurrence": {
                    "timeSpans": [
                        {
                            "weekday": "mon",
                            "startHour": 24,
                            "startMinute": 0,
                            "endHour": 24,
                            "endMinute": 30,
                        }
                    ]
                }
            },
            "within the day",
        ),
        (
            {
                "recurrence": {
                    "timeSpans": [
                        {
                            "weekday": "monday",
                            "startHour": 9,
                            "startMinute": 0,
                            "endHour": 17,
                            "endMinute": 0,
                        }
                    ]
                }
            },
            "weekday",
        ),
        (
            {
                "recurrence": {
                    "timeSpans": [
                        {
                            "weekday": "mon",
                            "startHour": 9,
                            "startMinute": 0,
                            "endHour": 12,
                            "endMinute": 0,
                        },
                        {
                            "weekday": "mon",
                            "startHour": 13,
                            "startMinute": 0,
                            "endHour": 17,
                            "endMinute": 0,
                        },
                    ]
                }
            },
            "one time span per weekday (mon given twice)",
        ),
    ],
)
def test_every_rule_is_checked_before_sending_naming_the_parameter(
    fields: dict[str, Any], names: str
) -> None:
    with pytest.raises(UsageError) as caught:
        new_key(**({"lockId": "L", "appUserId": PHONE} | fields))
    assert names in caught.value.one_line() and "nothing was sent" in caught.value.one_line()


def test_phone_numbers_are_e164_with_the_spaces_people_write_taken_out() -> None:
    assert check_phone("+47 998 87 766") == PHONE
    with pytest.raises(UsageError, match=r"E\.164"):
        check_phone("0047 998 87 766")


def test_start_and_end_are_left_out_rather_than_null_and_time_spans_written_one_way() -> None:
    body = new_key(lockId="L", appUserId=PHONE, recurrence={"timespans": [
        {"weekday": "sat", "startHour": 0, "startMinute": 0, "endHour": 24, "endMinute": 0}]}
    ).body()  # fmt: skip
    assert "start" not in body and "end" not in body and "durationMinutes" not in body
    assert body["recurrence"] == {
        "timeSpans": [
            {"weekday": "sat", "startHour": 0, "startMinute": 0, "endHour": 24, "endMinute": 0}
        ]
    }
    timed = new_key(
        lockId="L",
        appUserId=PHONE,
        start=dt.datetime(2026, 4, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    )
    assert timed.body()["start"] == "2026-04-01T08:00:00.000Z"


def test_both_spellings_are_read() -> None:
    span = {"weekday": "mon", "startHour": 9, "startMinute": 0, "endHour": 17, "endMinute": 0}
    for spelling in ("timeSpans", "timespans"):
        key = Key.model_validate(
            {"id": "k", "lockId": "L", "state": "active", "recurrence": {spelling: [span]}}
        )
        assert key.recurrence is not None and key.recurrence.time_spans[0].end_hour == 17


async def test_a_key_without_start_is_made_and_its_job_polled_with_growing_pauses(
    unloc: Unloc,
) -> None:
    seen: list[str] = []
    issued = await issue_keys(unloc.cloud, [_key(unloc)], on_poll=lambda j: seen.append(j.status))
    raise_unless_made(issued)
    assert issued.job.status == "succeeded" and seen[-1] == "succeeded"
    assert "inProgress" in seen
    assert unloc.clock.slept == sorted(unloc.clock.slept) and unloc.clock.slept[0] == 0.5
    assert [k.state for k in issued.keys] == ["active"]
    assert unloc.state.keys[issued.keys[0].id].start is None  # omitted, so "now"


async def test_the_server_refusal_of_a_batch_is_one_line_naming_the_parameter(
    unloc: Unloc,
) -> None:
    with pytest.raises(CloudRejected) as caught:
        await unloc.cloud.create_keys([_key(unloc), _key(unloc, lockId="no-such-lock")])
    assert caught.value.one_line() == (
        "Unloc refused creating 2 key(s): keys[1].lockId: no such lock in this project; "
        "correct that parameter and try again"
    )
    assert unloc.state.jobs == {}


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (JobOutcome.FAILED_JOB, "failedJob"),
        (JobOutcome.FAILED_VALIDATION, "failedValidation"),
        (JobOutcome.TIMEOUT, "timeout"),
    ],
)
async def test_a_job_that_ends_badly_is_reported_with_its_reason(
    unloc: Unloc, outcome: JobOutcome, status: str
) -> None:
    unloc.state.faults.outcome, unloc.state.faults.count = outcome, 1
    issued = await issue_keys(unloc.cloud, [_key(unloc)])
    assert issued.job.status == status and [k.state for k in issued.keys] == ["error"]
    with pytest.raises(CloudRejected, match=f"ended {status}: the vendor lock system"):
        raise_unless_made(issued)


async def test_one_key_in_error_is_reported_per_key(unloc: Unloc) -> None:
    unloc.state.faults.outcome, unloc.state.faults.count = JobOutcome.ONE_KEY_ERROR, 1
    issued = await issue_keys(unloc.cloud, [_key(unloc), _key(unloc, appUserId="+4790000001")])
    assert issued.job.status == "succeeded"
    assert sorted(k.state for k in issued.keys) == ["active", "error"]
    assert len(issued.failed) == 1 and issued.failed[0][1] is not None
    with pytest.raises(CloudRejected, match="could not make key"):
        raise_unless_made(issued)


async def test_polling_gives_up_cleanly_when_its_budget_is_spent(unloc: Unloc) -> None:
    unloc.state.job_delay = dt.timedelta(hours=1)
    job_id = await unloc.cloud.create_keys([_key(unloc)])
    with pytest.raises(CloudJobRunning) as caught:
        await unloc.cloud.wait_for_job(job_id, wait=JobWait(budget_s=20))
    assert f"job {job_id} is still inProgress after 20 s" in caught.value.one_line()
    assert f"blelock unloc jobs show {job_id}" in caught.value.one_line()
    assert sum(unloc.clock.slept) == pytest.approx(20)  # it waited its budget, no longer
    assert max(unloc.clock.slept) <= 5


async def test_listing_pages_with_start_after_id(unloc: Unloc) -> None:
    job_id = await unloc.cloud.create_keys(
        [_key(unloc, appUserId=f"+479000000{n}") for n in range(5)]
        + [_key(unloc, lockId=unloc.sydney.id)]
    )
    await unloc.cloud.wait_for_job(job_id)
    paged = [k.id async for k in unloc.cloud.list_keys(lock_id=unloc.oslo.id, limit=2)]
    assert len(paged) == 5 and len(set(paged)) == 5
    assert paged == sorted(paged)
    mine = [k.phone async for k in unloc.cloud.list_keys(app_user_id="+4790000003")]
    assert mine == ["+4790000003"]
    with pytest.raises(UsageError, match="1-2500"):
        [k async for k in unloc.cloud.list_keys(limit=2501)]


async def test_revoking_reports_what_404_and_409_mean(unloc: Unloc) -> None:
    job_id = await unloc.cloud.create_keys([_key(unloc, durationMinutes=10), _key(unloc)])
    job = await unloc.cloud.wait_for_job(job_id)
    assert job.result_data is not None
    short, kept = (r.id for r in job.result_data.created_keys)
    assert short is not None and kept is not None
    unloc.clock.advance(3600)
    assert await unloc.cloud.revoke_key(short) is Revoked.EXPIRED
    assert await unloc.cloud.revoke_key(kept) is Revoked.REVOKED
    assert await unloc.cloud.revoke_key(kept) is Revoked.ALREADY_GONE
    assert (await unloc.cloud.key(kept)).state == "revoked"
    assert [k.id async for k in unloc.cloud.list_keys()] == [short]  # revoked keys are not listed


async def test_bulk_revoke_by_phone_and_by_lock(unloc: Unloc) -> None:
    other = "+4790000009"
    job_id = await unloc.cloud.create_keys([
        _key(unloc), _key(unloc, lockId=unloc.sydney.id), _key(unloc, appUserId=other),
        _key(unloc, appUserId=other, lockId=unloc.sydney.id),
    ])  # fmt: skip
    await unloc.cloud.wait_for_job(job_id)
    assert await unloc.cloud.revoke_keys(app_user_id=PHONE) == 2
    assert [k.phone async for k in unloc.cloud.list_keys()] == [other, other]
    assert await unloc.cloud.revoke_keys(lock_id=unloc.sydney.id) == 1
    assert [k.lock_id async for k in unloc.cloud.list_keys()] == [unloc.oslo.id]
    with pytest.raises(UsageError, match="phone number or a lock"):
        await unloc.cloud.revoke_keys()


async def test_refreshing_a_lock_connection_offboards_locks_gone_at_the_vendor(
    unloc: Unloc,
) -> None:
    job_id = await unloc.cloud.create_keys([_key(unloc), _key(unloc, lockId=unloc.sydney.id)])
    await unloc.cloud.wait_for_job(job_id)
    unloc.sydney.removed_at_vendor = True
    refresh = await unloc.cloud.refresh_connection(unloc.oslo.connection_id)
    assert (await unloc.cloud.wait_for_job(refresh)).status == "succeeded"
    assert [lock.id for lock in await unloc.cloud.locks()] == [unloc.oslo.id]
    assert [k.lock_id async for k in unloc.cloud.list_keys()] == [unloc.oslo.id]
    unloc.state.connections[unloc.oslo.connection_id].state = "onboarding"
    with pytest.raises(CloudRejected, match=r"HTTP 409.*not connected or error"):
        await unloc.cloud.refresh_connection(unloc.oslo.connection_id)


def test_the_neutral_request_becomes_unloc_time_spans() -> None:
    request = PhoneKeyRequest(
        "L", PHONE, weekly=(WeeklyWindow(6, dt.time(10), None), WeeklyWindow(0, dt.time(9),
                                                                             dt.time(17))),
    )  # fmt: skip
    spans = key_from_request(request).body()["recurrence"]["timeSpans"]
    assert [(s["weekday"], s["startHour"], s["endHour"]) for s in spans] == [
        ("sun", 10, 24), ("mon", 9, 17)]  # fmt: skip


async def test_a_token_refused_again_after_renewal_is_not_asked_for_a_third_time(
    unloc: Unloc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unloc.state, "token_valid", lambda token: False)
    with pytest.raises(AuthFailed, match="HTTP 401"):
        await unloc.cloud.locks()
    assert unloc.state.token_requests == 2  # the first token, and one renewal


async def test_listing_leaves_out_the_states_asked(unloc: Unloc) -> None:
    later = unloc.clock.at + dt.timedelta(days=1)
    job_id = await unloc.cloud.create_keys([_key(unloc), _key(unloc, start=later)])
    await unloc.cloud.wait_for_job(job_id)
    states = sorted([k.state async for k in unloc.cloud.list_keys()])
    assert states == ["active", "scheduled"]
    left = [k.state async for k in unloc.cloud.list_keys(exclude_states=["scheduled"])]
    assert left == ["active"]


async def test_concurrent_calls_share_one_token_and_one_renewal(unloc: Unloc) -> None:
    import asyncio

    async with unloc.client() as cloud:
        await asyncio.gather(*(cloud.locks() for _ in range(5)))
        assert cloud.auth.tokens_fetched == 1
        unloc.state.forget_tokens()  # each of the next five meets a 401; one renews for all
        answers = await asyncio.gather(*(cloud.locks() for _ in range(5)))
        assert [len(locks) for locks in answers] == [2] * 5
        assert cloud.auth.tokens_fetched == 2


async def test_an_answer_of_an_unexpected_shape_is_one_line_naming_the_field(
    unloc: Unloc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unloc.state, "lock_view", lambda lock: {"id": 7, "name": "secret-ish"})
    with pytest.raises(CloudRejected) as caught:
        await unloc.cloud.locks()
    text = caught.value.one_line()
    assert text.startswith("Unloc answered the project's locks with an unexpected shape: id (")
    assert "secret-ish" not in text and "\n" not in text and "API may have changed" in text
