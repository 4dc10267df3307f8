"""``blelock unloc …`` end to end against the simulated Unloc (served from its own thread: the
command runs its own event loop, as for a user), and nothing of the client secret or the tokens
in anything it prints or logs."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from blelock.cli import main
from simulators.in_thread import served_in_thread
from simulators.unloc_cloud import JobOutcome, UnlocState, WallClock, unloc_app
from simulators.world import _serve_http

PHONE = "+4799887766"


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[UnlocState]:
    clock = WallClock()
    state = UnlocState.create(clock, job_delay=dt.timedelta(0))
    connection = state.add_connection()
    state.add_lock("Unit 1", "Europe/Oslo", connection.id)
    state.add_lock("Unit 2", "America/New_York", connection.id)
    with served_in_thread(lambda: _serve_http(unloc_app(state, clock))) as url:
        monkeypatch.setenv("BLELOCK_UNLOC_URL", url)
        monkeypatch.setenv("BLELOCK_UNLOC__CLIENT_ID", state.client_id)
        monkeypatch.setenv("BLELOCK_UNLOC__CLIENT_SECRET", state.client_secret)
        monkeypatch.setenv("BLELOCK_UNLOC__PROJECT_ID", state.project_id)
        yield state


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, "--json", *argv)
    assert code == 0, (out, err)
    return json.loads(out)


def test_locks_keys_jobs_and_revoke(cloud: UnlocState, capsys: pytest.CaptureFixture[str]) -> None:
    locks = run_json(capsys, "unloc", "locks")
    assert {(lock["name"], lock["timezone"]) for lock in locks} == {
        ("Unit 1", "Europe/Oslo"), ("Unit 2", "America/New_York")}  # fmt: skip
    oslo = next(lock["id"] for lock in locks if lock["name"] == "Unit 1")
    issued = run_json(
        capsys, "unloc", "keys", "issue", oslo, "+47 998 87 766", "--hours",
        "mon-fri=09:00-17:00", "--hours", "sat=10:00-14:00", "--duration", "1440",
    )  # fmt: skip
    assert issued["ok"] is True and issued["status"] == "succeeded"
    (key,) = issued["keys"]
    assert key["phone"] == PHONE and key["lock_id"] == oslo
    assert key["hours"].split(", ")[-1] == "sat 10:00-14:00" and key["end"] is not None
    assert key["state"] in ("active", "inactive")
    listed = run_json(capsys, "unloc", "keys", "list", "--phone", PHONE)
    assert [row["id"] for row in listed] == [key["id"]]
    job = run_json(capsys, "unloc", "jobs", "show", issued["job_id"])
    assert job["status"] == "succeeded" and job["created"] == 1
    code, out, _ = run(capsys, "unloc", "keys", "revoke", key["id"])
    assert code == 0 and out.strip() == f"key {key['id']}: revoked"
    code, out, _ = run(capsys, "unloc", "keys", "revoke", key["id"])
    assert code == 0 and "already gone" in out
    assert run_json(capsys, "unloc", "keys", "list") == []


def test_bulk_revoke_and_a_failed_job(
    cloud: UnlocState, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = next(iter(cloud.locks))
    run_json(capsys, "unloc", "keys", "issue", lock, PHONE)
    cloud.faults.outcome, cloud.faults.count = JobOutcome.TIMEOUT, 1
    code, out, _ = run(capsys, "unloc", "keys", "issue", lock, "+4790000001")
    assert code == 1 and "job" in out and "timeout" in out
    revoked = run_json(capsys, "unloc", "keys", "revoke", "--phone", PHONE)
    assert revoked == {"ok": True, "revoked": 1}


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["L", "99887766"], "appUserId '99887766' is not a phone number in E.164"),
        (["L", PHONE, "--hours", "mon-fri=09:00-25:00"], "timeSpans.0.endHour"),
        (
            ["L", PHONE, "--hours", "mon-fri=09:00-17:00", "--hours", "fri=18:00-19:00"],
            "one time span per weekday (fri given twice)",
        ),
        (["L", PHONE, "--hours", "weekdays=09:00-17:00"], "'weekdays' is not a weekday"),
        (["L", PHONE, "--start", "2026-04-01T09:00"], "--start '2026-04-01T09:00' needs a time"),
    ],
)
def test_bad_input_is_one_line_naming_it_and_sends_nothing(
    cloud: UnlocState, capsys: pytest.CaptureFixture[str], argv: list[str], names: str
) -> None:
    code, out, err = run(capsys, "unloc", "keys", "issue", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and names in err
    assert cloud.keys == {} and cloud.token_requests == 0


def test_unloc_locks_are_not_opened_by_blelock(
    cloud: UnlocState, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = next(iter(cloud.locks))
    code, _, err = run(capsys, "open", lock, "--vendor", "unloc")
    assert code == 2 and "opened with the Unloc app, not by blelock" in err


def test_nothing_of_the_client_secret_or_a_token_is_printed_or_logged(
    cloud: UnlocState, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    lock = next(iter(cloud.locks))
    outputs = []
    commands = [
        ["unloc", "locks"],
        ["unloc", "keys", "issue", lock, PHONE],
        ["--json", "unloc", "keys", "list"],
        ["--debug", "unloc", "jobs", "show", "x"],
    ]
    for argv in commands:
        outputs.append(run(capsys, *argv))
    monkeypatch.setenv("BLELOCK_UNLOC__CLIENT_SECRET", "rotated-" + cloud.client_secret[::-1])
    outputs.append(run(capsys, "--debug", "unloc", "locks"))  # refused: 401
    assert outputs[-1][0] == 1 and "refused the credentials" in outputs[-1][2]
    assert cloud.tokens, "tokens were handed out"
    text = "\n".join(f"{out}\n{err}" for _, out, err in outputs) + caplog.text
    text += "\n".join(str(record.__dict__) for record in caplog.records)
    for secret in [cloud.client_secret, cloud.client_secret[::-1], *cloud.tokens]:
        for part in (secret, secret[:12], secret[-12:]):
            assert part not in text


def test_opening_hours_may_wrap_over_the_weekend(
    cloud: UnlocState, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = next(iter(cloud.locks))
    issued = run_json(
        capsys, "unloc", "keys", "issue", lock, PHONE, "--hours", "fri-mon=18:00-24:00"
    )
    assert issued["keys"][0]["hours"] == (
        "fri 18:00-24:00, sat 18:00-24:00, sun 18:00-24:00, mon 18:00-24:00"
    )
