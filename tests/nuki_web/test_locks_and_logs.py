"""Smart locks, lock actions, logs and the client's error mapping, over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from blelock.errors import (
    AuthFailed,
    CloudRejected,
    ConfigError,
    LockRefused,
    UnknownLock,
    UsageError,
)
from blelock.vendors.nuki.web.client import NotConfirmed, NukiWeb
from blelock.vendors.nuki.web.ops import (
    add_keypad_code,
    entry_row,
    find_lock,
    force_sync,
    lock_action,
    lock_row,
    log_row,
    read_logs,
)
from blelock.vendors.nuki.web.rules import LockAction
from blelock.vendors.nuki.web.settings import NukiWebSettings
from tests.nuki_web.conftest import BACK, FRONT, QUICK, SHED, TOKEN, Sim


async def test_locks_are_listed_and_found_by_id_or_name(sim: Sim) -> None:
    locks = await sim.web.smartlocks()
    assert [(lock.smartlock_id, lock.name) for lock in locks] == [
        (FRONT, "Front door"),
        (BACK, "Back door"),
        (SHED, "Shed"),
    ]
    assert locks[0].keypad_paired is True and locks[2].keypad_paired is False
    assert locks[0].state is not None and locks[0].state.state == 1
    assert (await find_lock(sim.web, "back DOOR")).smartlock_id == BACK
    assert (await find_lock(sim.web, str(SHED))).name == "Shed"
    with pytest.raises(UsageError, match="no smart lock named 'Garage'") as caught:
        await find_lock(sim.web, "Garage")
    assert "'Front door' (17001)" in (caught.value.hint or "")
    with pytest.raises(UnknownLock, match="HTTP 404") as unknown:
        await find_lock(sim.web, "999")
    assert unknown.value.lock_id == "nuki web 999"


async def test_a_lock_action_is_confirmed_by_the_lock_s_log(sim: Sim) -> None:
    entry = await lock_action(sim.web, FRONT, LockAction.UNLOCK)
    assert (entry.action, entry.trigger, entry.state) == (1, 4, 0)
    assert (await sim.web.smartlock(FRONT)).state.state == 3  # type: ignore[union-attr]
    again = await lock_action(sim.web, FRONT, LockAction.LOCK)
    assert again.action == 2 and again.id != entry.id
    (_, path, body) = sim.writes("POST")[-1]
    assert path == f"/smartlock/{FRONT}/action" and body == {"action": 2, "option": 0}


async def test_a_jammed_lock_s_refusal_and_an_offline_lock_s_silence(sim: Sim) -> None:
    sim.state.locks[FRONT].jammed = True
    with pytest.raises(LockRefused, match="motor blocked") as refused:
        await lock_action(sim.web, FRONT, LockAction.UNLOCK)
    assert refused.value.reason == 1 and refused.value.step == "lock action unlock"
    sim.state.locks[BACK].server_state = 4
    with pytest.raises(NotConfirmed, match="offline"):
        await lock_action(sim.web, BACK, LockAction.UNLATCH)


async def test_bad_actions_are_refused_by_the_simulator(sim: Sim) -> None:
    for body in ({"action": 9}, {"action": 1, "option": 1}, {"option": 0}):
        assert (await sim.raw.post(f"smartlock/{FRONT}/action", json=body)).status_code == 400
    assert sim.state.locks[FRONT].pending is None


def _seed_logs(sim: Sim, count: int) -> None:
    lock = sim.state.locks[FRONT]
    for n in range(count):
        sim.state.log(lock, sim.state.now(), action=1 + n % 2)


async def test_logs_default_to_20_and_page_by_50_newest_first(sim: Sim) -> None:
    _seed_logs(sim, 120)
    assert len(await sim.web.logs(FRONT)) == 20
    entries = await read_logs(sim.web, FRONT, count=110)
    ids = [entry.id for entry in entries]
    assert len(ids) == 110 == len(set(ids)) and ids == sorted(ids, reverse=True)
    assert sim.state.requests["GET /smartlock/{smartlock_id}/log"] == 1 + 3  # 50 + 50 + 10
    assert len(await read_logs(sim.web, FRONT, count=500)) == 120
    assert {e.action for e in await sim.web.logs(FRONT, action=2, limit=50)} == {2}
    assert len(await sim.web.logs(limit=5)) == 5  # every lock's


async def test_a_log_limit_over_50_is_refused_before_sending(sim: Sim) -> None:
    with pytest.raises(UsageError, match="1 to 50"):
        await sim.web.logs(FRONT, limit=51)
    with pytest.raises(UsageError, match="at least one"):
        await read_logs(sim.web, FRONT, count=0)
    assert sim.state.requests["GET /smartlock/{smartlock_id}/log"] == 0


async def test_a_sync_shows_what_changed_at_the_lock(sim: Sim) -> None:
    await sim.raw.put(f"smartlock/{FRONT}/auth", json={"name": "G", "type": 13, "code": 345678})
    sim.clock.advance(sim.state.delay_s)
    (entry,) = await sim.web.auths(FRONT)
    sim.state.change_on_lock(FRONT, lambda lock: lock.on_lock.pop(entry.id))
    assert len(await sim.web.auths(FRONT)) == 1
    await force_sync(sim.web, FRONT)
    assert len(await sim.web.auths(FRONT)) == 1  # 204: asked, not done yet
    sim.clock.advance(sim.state.delay_s)
    assert await sim.web.auths(FRONT) == []


async def test_a_wrong_token_is_auth_failed_and_never_quoted(sim: Sim) -> None:
    secret = "wrong-token-abcdef-0123456789"
    async with NukiWeb(sim.url, SecretStr(secret), clock=sim.clock, retry=QUICK) as web:
        assert secret not in repr(web)
        with pytest.raises(AuthFailed, match="HTTP 401") as caught:
            await web.smartlocks()
    assert secret not in caught.value.one_line() and TOKEN not in caught.value.one_line()
    assert "api_token" in (caught.value.hint or "")


async def test_error_bodies_of_both_shapes_are_quoted(sim: Sim) -> None:
    with pytest.raises(CloudRejected, match="parameter 'code' is not valid") as caught:
        await sim.web.create_auth(FRONT, {"name": "G", "type": 13, "code": 345670})
    # The API quotes the value it refused; a keypad code is a secret, so it is not repeated.
    assert "345670" not in caught.value.one_line()
    with pytest.raises(CloudRejected, match=r"HTTP 422 Unprocessable Entity.*allowedFromDate"):
        await sim.web.create_auth(
            FRONT, {"name": "G", "type": 13, "code": 345678, "allowedWeekDays": 64}
        )


async def test_an_answer_of_the_wrong_shape_is_refused_clearly() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=[{"name": "x"}]))
    async with NukiWeb("http://127.0.0.1:9/", TOKEN, transport=transport, retry=QUICK) as web:
        with pytest.raises(CloudRejected, match=r"unexpected shape: 0\.smartlockId"):
            await web.smartlocks()


async def test_settings_carry_the_token_as_a_secret() -> None:
    section = NukiWebSettings.model_validate({"api_token": TOKEN})
    assert section.web_url == "https://api.nuki.io/" and TOKEN not in repr(section)
    async with NukiWeb.from_settings(section) as web:
        assert web.host == "api.nuki.io"
    with pytest.raises(ConfigError, match="no Nuki Web API token"):
        NukiWeb.from_settings(NukiWebSettings())
    with pytest.raises(ValueError, match="must start with http"):
        NukiWebSettings.model_validate({"web_url": "api.nuki.io"})


async def test_rows_for_the_cli_are_flat_json_and_carry_no_code(sim: Sim) -> None:
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner")
    row = entry_row(entry)
    assert row["kind"] == "keypad code" and row["window"] == "any time" and not row["pending"]
    assert "345678" not in json.dumps(row)
    assert lock_row(await sim.web.smartlock(FRONT))["online"] is True
    _seed_logs(sim, 1)
    (log,) = await sim.web.logs(FRONT, limit=1)
    assert json.loads(json.dumps(log_row(log)))["action"] == 1
