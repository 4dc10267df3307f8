"""Keypad codes over the Web API, end to end over real HTTP: the rules checked before sending,
the full field set on every write, the 204-then-delay behaviour, and the read-back."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import SecretStr

from blelock.errors import BlelockError, UsageError
from blelock.vendors.nuki.web.client import NotConfirmed, OperationPending, ReadBackDiffers
from blelock.vendors.nuki.web.models import Smartlock
from blelock.vendors.nuki.web.ops import (
    AuthChanges,
    add_keypad_code,
    find_keypad_code,
    force_sync,
    list_keypad_codes,
    remove_keypad_code,
    update_keypad_code,
)
from blelock.vendors.nuki.web.window import TIME_FIELDS, AccessWindow
from simulators.nuki_web import Entry
from tests.nuki_web.conftest import BACK, FRONT, SHED, Sim

OFFICE_HOURS = AccessWindow(
    from_date=dt.datetime(2030, 3, 1, tzinfo=dt.UTC),
    until_date=dt.datetime(2030, 4, 1, tzinfo=dt.UTC),
    weekdays=64 | 32 | 16 | 8 | 4,
    from_time=dt.time(9, 0),
    until_time=dt.time(17, 0),
)


async def test_a_code_is_added_in_full_and_confirmed_only_once_the_lock_has_it(sim: Sim) -> None:
    start = sim.clock.monotonic()
    entry = await add_keypad_code(sim.web, FRONT, SecretStr("345678"), "Cleaner", OFFICE_HOURS)

    assert entry.keypad_code and entry.name == "Cleaner" and entry.enabled
    assert entry.code is not None and entry.code.get_secret_value() == "345678"
    assert entry.window == OFFICE_HOURS
    # The lock took it 5 s after the 204: the client waited (on the simulated clock) for it.
    assert sim.clock.monotonic() - start >= sim.state.delay_s
    (_, path, body) = sim.writes("PUT")[0]
    assert path == f"/smartlock/{FRONT}/auth"
    assert isinstance(body, dict) and body["type"] == 13 and body["code"] == 345678
    assert all(key in body for key in TIME_FIELDS)
    assert body["allowedFromTime"] == 9 * 60 and body["allowedUntilTime"] == 17 * 60
    assert body["allowedFromDate"] == "2030-03-01T00:00:00.000Z"
    held = next(iter(sim.state.locks[FRONT].on_lock.values()))
    assert (held.code, held.allowed_week_days) == (345678, 124)


async def test_a_new_entry_has_no_id_until_the_lock_has_it(sim: Sim) -> None:
    response = await sim.raw.put(
        f"smartlock/{FRONT}/auth", json={"name": "Guest", "type": 13, "code": 456789}
    )
    assert response.status_code == 204 and response.content == b""
    assert (await sim.raw.get(f"smartlock/{FRONT}/auth")).json() == []
    sim.clock.advance(sim.state.delay_s)
    listed = (await sim.raw.get(f"smartlock/{FRONT}/auth")).json()
    assert [(e["name"], e["code"]) for e in listed] == [("Guest", 456789)]


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("123456", 'may not start with "12"'),
        ("12", "exactly 6 digits"),
        ("1234567", "exactly 6 digits"),
        ("345670", "exactly 6 digits"),
        ("34567a", "exactly 6 digits"),
        (" 34567", "exactly 6 digits"),
    ],
)
async def test_code_rules_are_checked_before_anything_is_sent(
    sim: Sim, code: str, says: str
) -> None:
    with pytest.raises(UsageError, match=says) as caught:
        await add_keypad_code(sim.web, FRONT, code, "Guest")
    assert code.strip() not in caught.value.one_line() or len(code.strip()) < 3
    assert sim.state.writes == []


async def test_a_name_over_20_characters_is_refused_before_sending(sim: Sim) -> None:
    with pytest.raises(UsageError, match="at most 20 characters"):
        await add_keypad_code(sim.web, FRONT, "345678", "x" * 21)
    await add_keypad_code(sim.web, FRONT, "345678", "x" * 20)
    assert len(sim.writes()) == 1


async def test_a_code_is_unique_per_lock_not_per_account(sim: Sim) -> None:
    await add_keypad_code(sim.web, FRONT, "345678", "First")
    with pytest.raises(UsageError, match="already has this keypad code") as caught:
        await add_keypad_code(sim.web, FRONT, "345678", "Second")
    assert "345678" not in caught.value.one_line()
    assert caught.value.lock_id == f"nuki web {FRONT}"
    assert len(sim.writes()) == 1
    await add_keypad_code(sim.web, BACK, "345678", "Same, other lock")
    assert len(sim.writes()) == 2


async def test_a_lock_without_a_keypad_is_refused_before_sending(sim: Sim) -> None:
    with pytest.raises(UsageError, match="no keypad paired"):
        await add_keypad_code(sim.web, SHED, "345678", "Guest")
    assert sim.state.writes == []


async def test_a_lock_with_100_codes_takes_no_more(sim: Sim) -> None:
    lock = sim.state.locks[FRONT]
    now = sim.state.now()
    for n in range(100):
        code = int("".join(str(1 + (n // 9**k) % 9) for k in range(6)))
        entry = Entry(sim.state.new_id(), FRONT, n + 2, 13, f"c{n}", now, now, code=code)
        lock.on_lock[entry.id] = entry
    lock.refresh_listing()
    with pytest.raises(UsageError, match="100 keypad codes"):
        await add_keypad_code(sim.web, FRONT, "998877", "One more")
    assert sim.state.writes == []
    response = await sim.raw.put(
        f"smartlock/{FRONT}/auth", json={"name": "One more", "type": 13, "code": 998877}
    )
    assert response.status_code == 409


async def test_an_update_keeps_the_window_because_the_client_sends_the_full_set(sim: Sim) -> None:
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner", OFFICE_HOURS)
    updated = await update_keypad_code(sim.web, FRONT, entry.id, AuthChanges(name="Cleaner 2"))
    assert updated.name == "Cleaner 2"
    assert updated.window == OFFICE_HOURS
    (_, path, body) = sim.writes("POST")[-1]
    assert path == f"/smartlock/{FRONT}/auth/{entry.id}"
    assert isinstance(body, dict) and all(key in body for key in TIME_FIELDS)
    assert body["code"] == 345678


async def test_the_simulator_clears_the_window_of_a_partial_update(sim: Sim) -> None:
    """The quirk users report, kept: what a client that sends only {name, code} gets."""
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner", OFFICE_HOURS)
    response = await sim.raw.post(
        f"smartlock/{FRONT}/auth/{entry.id}", json={"name": "Cleaner 2", "code": 345678}
    )
    assert response.status_code == 204
    sim.clock.advance(sim.state.delay_s)
    (listed,) = (await sim.raw.get(f"smartlock/{FRONT}/auth")).json()
    assert listed["name"] == "Cleaner 2"
    assert not any(key in listed for key in TIME_FIELDS)


async def test_clearing_and_changing_a_window_and_the_code(sim: Sim) -> None:
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner", OFFICE_HOURS)
    cleared = await update_keypad_code(sim.web, FRONT, entry.id, AuthChanges(window=AccessWindow()))
    assert not cleared.window.restricted
    changed = await update_keypad_code(
        sim.web, FRONT, entry.id, AuthChanges(code=SecretStr("987654"), enabled=False)
    )
    assert changed.code is not None and changed.code.get_secret_value() == "987654"
    assert not changed.enabled and not changed.window.restricted


async def test_rapid_updates_each_wait_for_the_last_and_the_last_one_wins(sim: Sim) -> None:
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner")
    for n in range(3):
        await update_keypad_code(sim.web, FRONT, entry.id, AuthChanges(name=f"Cleaner {n}"))
    (listed,) = await list_keypad_codes(sim.web, FRONT)
    assert listed.name == "Cleaner 2"
    assert sim.state.requests["POST /smartlock/{smartlock_id}/auth/{auth_id}"] == 3


async def test_a_write_while_an_operation_is_pending_gets_423_and_is_waited_out(sim: Sim) -> None:
    first = await sim.raw.put(
        f"smartlock/{FRONT}/auth", json={"name": "Guest", "type": 13, "code": 456789}
    )
    assert first.status_code == 204
    refused = await sim.raw.put(
        f"smartlock/{FRONT}/auth", json={"name": "Other", "type": 13, "code": 567891}
    )
    assert refused.status_code == 423
    assert refused.json()["reasonPhrase"] == "Locked" and refused.json()["code"] == 423
    entry = await add_keypad_code(sim.web, FRONT, "567891", "Other")
    assert entry.name == "Other"
    assert sim.state.requests["PUT /smartlock/{smartlock_id}/auth"] >= 4  # 2 raw, ≥1 423, 1 ok


async def test_a_423_that_outlasts_the_wait_is_reported(sim: Sim) -> None:
    sim.state.locks[FRONT].server_state = 4
    await sim.raw.put(f"smartlock/{FRONT}/auth", json={"name": "G", "type": 13, "code": 456789})
    sim.web.busy_wait_s = 10
    with pytest.raises(OperationPending, match="still pending after 10 s") as caught:
        await sim.web.create_auth(FRONT, {"name": "H", "type": 13, "code": 567891})
    assert caught.value.status == 423


async def test_a_lock_that_is_offline_never_confirms_and_says_why(sim: Sim) -> None:
    sim.state.locks[FRONT].server_state = 4
    with pytest.raises(NotConfirmed, match=r"offline \(serverState 4\)") as caught:
        await add_keypad_code(sim.web, FRONT, "345678", "Cleaner")
    assert "HTTP 204" in caught.value.message and caught.value.step == "add a keypad code"
    sim.state.locks[FRONT].server_state = 0
    sim.clock.advance(1)
    (held,) = await list_keypad_codes(sim.web, FRONT)
    assert held.name == "Cleaner"


async def test_a_read_back_that_differs_is_reported_by_field(sim: Sim) -> None:
    sim.state.faults.create_drops_window = 1
    with pytest.raises(ReadBackDiffers) as caught:
        await add_keypad_code(sim.web, FRONT, "345678", "Cleaner", OFFICE_HOURS)
    assert set(caught.value.fields) == set(TIME_FIELDS)
    assert "allowedFromTime" in caught.value.message and "345678" not in caught.value.one_line()


async def test_a_removed_code_that_lingers_is_cured_by_one_sync(sim: Sim) -> None:
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner")
    sim.state.faults.skip_fast_sync = 1
    await remove_keypad_code(sim.web, FRONT, entry.id)
    assert await list_keypad_codes(sim.web, FRONT) == []
    assert sim.state.requests["PUT /smartlock/{smartlock_id}/sync"] == 1
    assert sim.state.locks[FRONT].on_lock == {}


async def test_a_lingering_code_blocks_its_own_re_creation_until_a_sync(sim: Sim) -> None:
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner")
    sim.state.faults.skip_fast_sync = 1
    assert (await sim.raw.delete(f"smartlock/{FRONT}/auth/{entry.id}")).status_code == 204
    sim.clock.advance(sim.state.delay_s)
    refused = await sim.raw.put(
        f"smartlock/{FRONT}/auth", json={"name": "Again", "type": 13, "code": 345678}
    )
    assert refused.status_code == 409
    with pytest.raises(UsageError, match="already has this keypad code"):
        await add_keypad_code(sim.web, FRONT, "345678", "Again")
    await force_sync(sim.web, FRONT)
    sim.clock.advance(sim.state.delay_s)
    again = await add_keypad_code(sim.web, FRONT, "345678", "Again")
    assert again.id != entry.id


async def test_entries_are_found_by_name_or_id_and_kinds_are_not_mixed(sim: Sim) -> None:
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner")
    assert (await find_keypad_code(sim.web, FRONT, "cleaner")).id == entry.id
    assert (await find_keypad_code(sim.web, FRONT, entry.id)).name == "Cleaner"
    with pytest.raises(UsageError, match="no keypad code 'Nobody'"):
        await find_keypad_code(sim.web, FRONT, "Nobody")
    with pytest.raises(UsageError, match="no keypad code with id nope"):
        await remove_keypad_code(sim.web, FRONT, "nope")


async def test_a_code_read_back_never_shows_in_a_repr(sim: Sim) -> None:
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner")
    assert "345678" not in repr(entry) and "345678" not in str(entry.model_dump())
    assert isinstance(entry, object) and not isinstance(entry, BlelockError)


async def test_an_update_the_web_api_shows_stale_is_cured_by_one_sync(sim: Sim) -> None:
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner")
    sim.state.faults.skip_fast_sync = 1
    updated = await update_keypad_code(sim.web, FRONT, entry.id, AuthChanges(name="Cook"))
    assert updated.name == "Cook"
    assert sim.state.requests["PUT /smartlock/{smartlock_id}/sync"] == 1


async def test_the_half_way_sync_does_not_queue_behind_a_pending_operation(sim: Sim) -> None:
    await sim.raw.put(f"smartlock/{FRONT}/auth", json={"name": "G", "type": 13, "code": 456789})
    assert await sim.web.sync(FRONT, if_idle=True) is False
    assert sim.state.locks[FRONT].pending is not None
    assert sim.state.locks[FRONT].pending.kind == "create"
    sim.web.busy_wait_s = 0
    with pytest.raises(OperationPending):
        await sim.web.sync(FRONT)


def test_a_lock_whose_keypad_the_api_does_not_mention_is_left_to_the_api() -> None:
    """Only an explicit keypadPaired false is refused before sending."""
    assert Smartlock.model_validate({"smartlockId": 1, "config": {}}).keypad_paired is None
    assert Smartlock.model_validate({"smartlockId": 1}).keypad_paired is None
    both = {"smartlockId": 1, "config": {"keypadPaired": False, "keypad2Paired": True}}
    assert Smartlock.model_validate(both).keypad_paired is True
