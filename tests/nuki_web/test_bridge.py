"""The simulated Web API in front of the simulated Smart Lock: a keypad code added through the
Web API is kept by the lock itself, which applies its window on its own wall clock (Europe/
Berlin, daylight saving included); codes added at the lock show in the Web API after a sync."""

from __future__ import annotations

import datetime as dt

import pytest

from blelock.vendors.nuki import protocol as nuki
from blelock.vendors.nuki.web.client import ReadBackDiffers
from blelock.vendors.nuki.web.ops import (
    AuthChanges,
    add_keypad_code,
    force_sync,
    list_keypad_codes,
    lock_action,
    remove_keypad_code,
    update_keypad_code,
)
from blelock.vendors.nuki.web.rules import LockAction
from blelock.vendors.nuki.web.window import AccessWindow
from simulators.nuki_lock import MAX_KEYPAD_CODES, Code, SimNukiLock
from simulators.nuki_web.bridge import bridge
from tests.nuki_web.conftest import FRONT, Sim

UTC = dt.UTC


@pytest.fixture
def door(sim: Sim) -> SimNukiLock:
    lock = SimNukiLock(
        mac="54:D2:72:00:00:01", nuki_id=0x1234, timezone="Europe/Berlin", clock=sim.clock.now_utc
    )
    bridge(sim.state, FRONT, lock)
    return lock


def _at(sim: Sim, instant: dt.datetime) -> None:
    step = (instant - sim.clock.now_utc()).total_seconds()
    assert step >= 0, "the manual clock only moves forward"
    sim.clock.advance(step)


async def test_a_web_code_s_day_window_is_kept_by_the_lock_across_dst(
    sim: Sim, door: SimNukiLock
) -> None:
    window = AccessWindow.parse(from_date="2030-03-01T00:00:00Z", daily="09:00-17:00")
    await add_keypad_code(sim.web, FRONT, "345678", "Cleaner", window)
    (code,) = door.codes.values()
    assert code.code == 345678 and code.time_limited
    assert (code.limit.from_time, code.limit.until_time) == (dt.time(9), dt.time(17))
    # Saturday 30 March 2030, CET (UTC+1)
    _at(sim, dt.datetime(2030, 3, 30, 8, 15, tzinfo=UTC))  # 09:15 local
    assert door.enter_code("345678")
    _at(sim, dt.datetime(2030, 3, 30, 16, 15, tzinfo=UTC))  # 17:15 local
    assert not door.enter_code("345678")
    # Sunday 31 March 2030, CEST (UTC+2) from 01:00 UTC: the same instants read an hour later
    _at(sim, dt.datetime(2030, 3, 31, 7, 15, tzinfo=UTC))  # 09:15 local (08:15 under CET)
    assert door.enter_code("345678")
    _at(sim, dt.datetime(2030, 3, 31, 15, 15, tzinfo=UTC))  # 17:15 local (16:15 under CET)
    assert not door.enter_code("345678")


async def test_updates_and_removals_reach_the_lock_only_when_it_takes_them(
    sim: Sim, door: SimNukiLock
) -> None:
    entry = await add_keypad_code(sim.web, FRONT, "345678", "Cleaner")
    assert door.enter_code("345678")
    await update_keypad_code(sim.web, FRONT, entry.id, AuthChanges(enabled=False))
    assert not door.enter_code("345678")
    await sim.raw.delete(f"smartlock/{FRONT}/auth/{entry.id}")
    assert len(door.codes) == 1  # 204: not on the lock yet
    sim.clock.advance(sim.state.delay_s)
    await sim.raw.get("smartlock")  # any request lets the due operation run
    assert door.codes == {}


async def test_a_code_added_at_the_lock_shows_in_the_web_api_after_a_sync(
    sim: Sim, door: SimNukiLock
) -> None:
    limit = nuki.TimeLimit(
        from_date=dt.datetime(2030, 3, 1, tzinfo=UTC),
        weekdays=0x40,
        from_time=dt.time(8),
        until_time=dt.time(12),
    )
    door.codes[7] = Code(7, 456789, "Over BLE", door.now(), time_limited=True, limit=limit)
    assert await list_keypad_codes(sim.web, FRONT) == []
    await force_sync(sim.web, FRONT)
    sim.clock.advance(sim.state.delay_s)
    (entry,) = await list_keypad_codes(sim.web, FRONT)
    assert entry.name == "Over BLE" and entry.code is not None
    assert entry.code.get_secret_value() == "456789"
    assert entry.window == AccessWindow(
        from_date=dt.datetime(2030, 3, 1, tzinfo=UTC),
        weekdays=64,
        from_time=dt.time(8),
        until_time=dt.time(12),
    )
    await remove_keypad_code(sim.web, FRONT, entry.id)
    assert door.codes == {}


async def test_a_web_lock_action_moves_the_lock(sim: Sim, door: SimNukiLock) -> None:
    await lock_action(sim.web, FRONT, LockAction.UNLOCK)
    assert door.lock_state == nuki.LockState.UNLOCKED and door.lock_actions == 1


async def test_a_code_the_lock_holds_unsynced_is_refused_at_the_lock(
    sim: Sim, door: SimNukiLock
) -> None:
    """The half-way sync reads the lock: the code is there, under the other name, and the
    client says so rather than calling it done."""
    door.codes[3] = Code(3, 345678, "Over BLE", door.now())
    with pytest.raises(ReadBackDiffers, match="with a different name") as caught:
        await add_keypad_code(sim.web, FRONT, "345678", "Via web")
    assert caught.value.fields == ("name",)
    assert [c.name for c in door.codes.values()] == ["Over BLE"]
    (listed,) = await list_keypad_codes(sim.web, FRONT)
    assert listed.name == "Over BLE"


async def test_without_the_sync_a_refused_code_is_not_confirmed(
    sim: Sim, door: SimNukiLock
) -> None:
    door.codes[3] = Code(3, 345678, "Over BLE", door.now())
    await sim.raw.put(f"smartlock/{FRONT}/auth", json={"name": "G", "type": 13, "code": 345678})
    sim.clock.advance(sim.state.delay_s)
    assert (await list_keypad_codes(sim.web, FRONT)) == []  # 204, and never on the lock
    assert [c.name for c in door.codes.values()] == ["Over BLE"]


async def test_a_lock_whose_keypad_is_full_refuses_a_web_code(sim: Sim, door: SimNukiLock) -> None:
    """The lock's own capacity decides, not the Web API's copy: codes added over Bluetooth
    (unsynced) fill it, so the Web API's 204 never becomes a code on the lock."""
    for n in range(MAX_KEYPAD_CODES):
        door.codes[n + 1] = Code(n + 1, int(f"9{n + 11111:05d}".replace("0", "9")), "x", door.now())
    await sim.raw.put(f"smartlock/{FRONT}/auth", json={"name": "G", "type": 13, "code": 345678})
    sim.clock.advance(sim.state.delay_s)
    assert (await list_keypad_codes(sim.web, FRONT)) == []
    assert len(door.codes) == MAX_KEYPAD_CODES and 345678 not in {
        c.code for c in door.codes.values()
    }
