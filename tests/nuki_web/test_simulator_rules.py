"""The simulated Web API checks the client: it refuses what the real one refuses, in the error
shapes users quote, whoever sends it (requests here bypass blelock's own checks)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.nuki_web.conftest import FRONT, SHED, Sim

DETAIL = "The supplied value '{value}' for parameter '{name}' is not valid"


def _detail(answer: dict[str, Any], name: str, value: object) -> bool:
    return answer == {
        "detailMessage": DETAIL.format(value=value, name=name),
        "stackTrace": [],
        "suppressedExceptions": [],
    }


@pytest.mark.parametrize(
    ("body", "name", "value"),
    [
        ({"name": "G", "type": 13, "code": 123456}, "code", 123456),
        ({"name": "G", "type": 13, "code": 345670}, "code", 345670),
        ({"name": "G", "type": 13, "code": 34567}, "code", 34567),
        ({"name": "G", "type": 13}, "code", None),
        ({"name": "x" * 21, "type": 13, "code": 345678}, "name", "x" * 21),
        ({"name": "G", "type": 7, "code": 345678}, "type", 7),
        ({"name": "G", "type": 13, "code": "345678"}, "code", "345678"),
        ({"name": "G", "remoteAllowed": False}, "accountUserId", None),
        ({"name": "G", "type": 13, "code": 345678, "allowedWeekDays": 128}, "allowedWeekDays", 128),
    ],
)
async def test_invalid_parameters_get_400_with_the_detail_message(
    sim: Sim, body: dict[str, Any], name: str, value: object
) -> None:
    response = await sim.raw.put(f"smartlock/{FRONT}/auth", json=body)
    assert response.status_code == 400
    assert _detail(response.json(), name, "null" if value is None else value)
    assert sim.state.writes == [] and sim.state.locks[FRONT].pending is None


async def test_type_13_on_a_lock_without_a_keypad_is_the_error_users_quote(sim: Sim) -> None:
    response = await sim.raw.put(
        f"smartlock/{SHED}/auth", json={"name": "G", "type": 13, "code": 345678}
    )
    assert response.status_code == 400 and _detail(response.json(), "type", 13)


async def test_an_app_key_needs_a_known_account_user_and_remote_allowed(sim: Sim) -> None:
    user = sim.state.add_user("ada@example.org", "Ada")
    missing = await sim.raw.put(
        f"smartlock/{FRONT}/auth", json={"name": "Ada", "accountUserId": user.account_user_id}
    )
    assert missing.status_code == 400 and _detail(missing.json(), "remoteAllowed", "null")
    unknown = await sim.raw.put(
        f"smartlock/{FRONT}/auth",
        json={"name": "Ada", "accountUserId": 999, "remoteAllowed": False},
    )
    assert unknown.status_code == 400 and _detail(unknown.json(), "accountUserId", 999)
    too_long = await sim.raw.put(
        f"smartlock/{FRONT}/auth",
        json={"name": "x" * 33, "accountUserId": user.account_user_id, "remoteAllowed": False},
    )
    assert too_long.status_code == 400


@pytest.mark.parametrize(
    "window",
    [
        {"allowedWeekDays": 64},
        {"allowedFromTime": 540, "allowedUntilTime": 1020},
        {"allowedUntilDate": "2030-04-01T00:00:00.000Z"},
        {"allowedFromDate": "2030-03-01T00:00:00.000Z", "allowedFromTime": 540},
    ],
)
async def test_a_restriction_without_its_start_date_or_half_a_day_window_is_422(
    sim: Sim, window: dict[str, Any]
) -> None:
    response = await sim.raw.put(
        f"smartlock/{FRONT}/auth", json={"name": "G", "type": 13, "code": 345678, **window}
    )
    assert response.status_code == 422
    answer = response.json()
    assert answer["code"] == 422 and answer["reasonPhrase"] == "Unprocessable Entity"
    assert answer["homeRef"] == "/" and answer["description"]


async def test_a_date_without_its_zone_is_refused(sim: Sim) -> None:
    response = await sim.raw.put(
        f"smartlock/{FRONT}/auth",
        json={"name": "G", "type": 13, "code": 345678, "allowedFromDate": "2030-03-01T00:00:00"},
    )
    assert response.status_code == 400


async def test_a_wrong_token_is_401_and_an_unknown_lock_or_entry_404(sim: Sim) -> None:
    response = await sim.raw.get("smartlock", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401 and response.json()["reasonPhrase"] == "Unauthorized"
    assert (await sim.raw.get("smartlock", headers={"Authorization": ""})).status_code == 401
    assert (await sim.raw.get("smartlock/999")).status_code == 404
    assert (await sim.raw.delete(f"smartlock/{FRONT}/auth/nope")).status_code == 404
    assert (await sim.raw.patch(f"smartlock/{FRONT}")).status_code == 405


@pytest.mark.parametrize("limit", ["0", "51", "x"])
async def test_a_log_limit_outside_1_to_50_is_refused(sim: Sim, limit: str) -> None:
    response = await sim.raw.get(f"smartlock/{FRONT}/log", params={"limit": limit})
    assert response.status_code == 400 and _detail(response.json(), "limit", limit)


async def test_bulk_requests_refuse_unknown_ids_and_busy_locks_whole(sim: Sim) -> None:
    unknown = await sim.raw.request("DELETE", "smartlock/auth", json=["nope"])
    assert unknown.status_code == 400 and _detail(unknown.json(), "id", "nope")
    assert (await sim.raw.post("smartlock/auth", json=[{"id": "nope"}])).status_code == 400
    assert (await sim.raw.post("smartlock/auth", json={"id": "x"})).status_code == 400
    await sim.raw.post(f"smartlock/{FRONT}/action", json={"action": 1})
    busy = await sim.raw.put(
        "smartlock/auth",
        json={"name": "G", "type": 13, "code": 345678, "smartlockIds": [17_002, FRONT]},
    )
    assert busy.status_code == 423
    assert sim.state.locks[17_002].pending is None  # nothing half-done


async def test_the_daily_sync_brings_a_change_made_at_the_lock(sim: Sim) -> None:
    response = await sim.raw.put(
        f"smartlock/{FRONT}/auth", json={"name": "G", "type": 13, "code": 345678}
    )
    assert response.status_code == 204
    sim.clock.advance(sim.state.delay_s)
    (listed,) = (await sim.raw.get(f"smartlock/{FRONT}/auth")).json()

    def rename(lock: Any) -> None:
        lock.on_lock[listed["id"]].name = "Renamed in the app"

    sim.state.change_on_lock(FRONT, rename)
    sim.clock.advance(3600)
    assert (await sim.raw.get(f"smartlock/{FRONT}/auth")).json()[0]["name"] == "G"
    sim.clock.advance(86_400)
    renamed = (await sim.raw.get(f"smartlock/{FRONT}/auth")).json()[0]["name"]
    assert renamed == "Renamed in the app"


async def test_the_control_route_advances_and_completes(sim: Sim) -> None:
    await sim.raw.post(f"smartlock/{FRONT}/action", json={"action": 1})
    state = (await sim.raw.get("_sim/nuki")).json()
    assert state["pending"] == {str(FRONT): "action"}
    done = (await sim.raw.post("_sim/nuki", json={"complete": True})).json()
    assert done["pending"] == {} and sim.state.locks[FRONT].state == 3
    before = sim.clock.now_utc()
    await sim.raw.post("_sim/nuki", json={"advance_s": 90, "delay_s": 1})
    assert (sim.clock.now_utc() - before).total_seconds() == 90 and sim.state.delay_s == 1
