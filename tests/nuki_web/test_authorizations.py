"""Invite keys for account users, and the bulk create / update / delete, over real HTTP."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from blelock.errors import CloudRejected, UsageError
from blelock.vendors.nuki.web.client import NukiWeb
from blelock.vendors.nuki.web.ops import (
    AuthChanges,
    add_keypad_code,
    create_account_user,
    delete_authorizations,
    invite_key,
    invite_keys,
    remove_authorization,
    update_authorization,
    update_authorizations,
)
from blelock.vendors.nuki.web.window import TIME_FIELDS, AccessWindow
from tests.nuki_web.conftest import BACK, FRONT, QUICK, TOKEN, Sim

WEEKENDS = AccessWindow(
    from_date=dt.datetime(2030, 3, 1, 8, tzinfo=dt.UTC),
    weekdays=2 | 1,
    from_time=dt.time(10, 0),
    until_time=dt.time(18, 30),
)


async def test_an_invite_key_goes_to_an_account_user_by_email(sim: Sim) -> None:
    user = await create_account_user(sim.web, "ada@example.org", "Ada")
    assert user.account_user_id in sim.state.users
    entry = await invite_key(sim.web, FRONT, user.account_user_id, "Ada's key", WEEKENDS)
    assert (entry.type, entry.account_user_id, entry.name) == (0, user.account_user_id, "Ada's key")
    assert entry.window == WEEKENDS and not entry.remote_allowed
    assert sim.state.invites_sent == [("ada@example.org", FRONT, "Ada's key")]
    assert [u.email for u in await sim.web.account_users()] == ["ada@example.org"]


async def test_a_keypad_code_for_an_account_user_sends_no_email(sim: Sim) -> None:
    user = await create_account_user(sim.web, "bob@example.org", "Bob")
    entry = await add_keypad_code(
        sim.web, FRONT, "345678", "Bob", account_user_id=user.account_user_id
    )
    assert entry.account_user_id == user.account_user_id
    assert sim.state.invites_sent == []


async def test_account_users_are_refused_twice_and_deleted(sim: Sim) -> None:
    with pytest.raises(UsageError, match="not an e-mail address"):
        await create_account_user(sim.web, "ada", "Ada")
    user = await create_account_user(sim.web, "ada@example.org", "Ada")
    with pytest.raises(CloudRejected, match="HTTP 409") as caught:
        await create_account_user(sim.web, "ADA@example.org", "Ada again")
    assert caught.value.status == 409 and "already exists" in caught.value.message
    await sim.web.delete_account_user(user.account_user_id)
    assert await sim.web.account_users() == []


async def test_one_invite_on_several_locks_is_one_request_confirmed_on_each(sim: Sim) -> None:
    user = await create_account_user(sim.web, "ada@example.org", "Ada")
    entries = await invite_keys(
        sim.web, [FRONT, BACK], user.account_user_id, "Ada", remote_allowed=True
    )
    assert [e.smartlock_id for e in entries] == [FRONT, BACK]
    assert all(e.remote_allowed and e.account_user_id == user.account_user_id for e in entries)
    assert sim.state.requests["PUT /smartlock/auth"] == 1
    (_, _, body) = sim.writes("PUT")[-1]
    assert isinstance(body, dict) and body["smartlockIds"] == [FRONT, BACK]
    assert all(key in body for key in TIME_FIELDS)


async def test_an_app_key_is_updated_in_full_and_deactivated(sim: Sim) -> None:
    user = await create_account_user(sim.web, "ada@example.org", "Ada")
    entry = await invite_key(sim.web, FRONT, user.account_user_id, "Ada", WEEKENDS)
    off = await update_authorization(sim.web, FRONT, entry.id, AuthChanges(enabled=False))
    assert not off.enabled and off.window == WEEKENDS and off.name == "Ada"
    (_, _, body) = sim.writes("POST")[-1]
    assert isinstance(body, dict) and body["enabled"] is False
    assert body["remoteAllowed"] is False and all(key in body for key in TIME_FIELDS)
    with pytest.raises(UsageError, match="is not a keypad code"):
        await update_authorization(sim.web, FRONT, entry.id, AuthChanges(), keypad=True)
    with pytest.raises(UsageError, match="at most 32 characters"):
        await update_authorization(sim.web, FRONT, entry.id, AuthChanges(name="x" * 33))


async def test_bulk_update_sends_every_entry_in_full_in_one_request(sim: Sim) -> None:
    front = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner", WEEKENDS)
    back = await add_keypad_code(sim.web, BACK, "456789", "Cleaner")
    updated = await update_authorizations(
        sim.web,
        [(front, AuthChanges(name="Cleaner A")), (back, AuthChanges(window=WEEKENDS))],
    )
    assert [(e.name, e.window) for e in updated] == [("Cleaner A", WEEKENDS), ("Cleaner", WEEKENDS)]
    assert sim.state.requests["POST /smartlock/auth"] == 1
    (_, _, body) = sim.writes("POST")[-1]
    assert isinstance(body, list) and [item["id"] for item in body] == [front.id, back.id]
    assert all(key in item for item in body for key in TIME_FIELDS)


async def test_bulk_delete_is_one_request_and_waits_until_no_lock_lists_them(sim: Sim) -> None:
    front = await add_keypad_code(sim.web, FRONT, "345678", "A")
    back = await add_keypad_code(sim.web, BACK, "456789", "B")
    keep = await add_keypad_code(sim.web, BACK, "567891", "C")
    await delete_authorizations(sim.web, [front, back])
    assert sim.state.requests["DELETE /smartlock/auth"] == 1
    assert [e.id for e in await sim.web.all_auths()] == [keep.id]
    await remove_authorization(sim.web, BACK, keep.id)
    assert await sim.web.all_auths(types=[13]) == []


async def test_an_account_user_created_with_an_empty_answer_is_looked_up_by_email() -> None:
    """The vendor's example reads the new id with a GET afterwards."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "PUT":
            return httpx.Response(204)
        users = [{"accountUserId": 7, "email": "ada@example.org", "name": "Ada"}]
        return httpx.Response(200, json=users if len(seen) < 4 else [])

    transport = httpx.MockTransport(answer)
    async with NukiWeb("http://127.0.0.1:9/", TOKEN, transport=transport, retry=QUICK) as web:
        user = await create_account_user(web, "Ada@example.org", "Ada")
        assert user.account_user_id == 7 and seen == ["PUT", "GET"]
        with pytest.raises(CloudRejected, match="does not list it"):
            await create_account_user(web, "bob@example.org", "Bob")
