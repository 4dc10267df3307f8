"""The simulated world's Nuki Web API is bridged to the world's Nuki locks and its settings
point blelock at it: a code added through the Web API opens the world's lock over its keypad."""

from __future__ import annotations

import pytest

from blelock.vendors.nuki.settings import nuki_settings
from blelock.vendors.nuki.web.client import NukiWeb
from blelock.vendors.nuki.web.ops import add_keypad_code, find_lock, lock_action
from blelock.vendors.nuki.web.rules import LockAction
from simulators.world import RunningWorld, WorldSpec
from tests.conftest import FAST, settings_for


@pytest.fixture
def world_spec() -> WorldSpec:
    return WorldSpec(locks=1, seed=5, latency=FAST, nuki_locks=2)


async def test_the_world_s_web_api_reaches_the_world_s_locks(running_world: RunningWorld) -> None:
    nuki = running_world.world.nuki
    assert nuki is not None
    nuki.web.delay_s = 0.0  # the client's first read-back finds it: no real wait
    settings = settings_for(running_world)
    section = nuki_settings(settings)
    assert section.web_url == running_world.nuki_web_url
    door = nuki.locks[1]
    async with NukiWeb.from_settings(section, settings.timeouts) as web:
        assert [lock.name for lock in await web.smartlocks()] == [n.name for n in nuki.locks]
        lock = await find_lock(web, door.name)
        await add_keypad_code(web, lock.smartlock_id, "345678", "Guest")
        await lock_action(web, lock.smartlock_id, LockAction.UNLOCK)
    assert [code.code for code in door.codes.values()] == [345678]
    assert door.enter_code("345678") and not nuki.locks[0].enter_code("345678")
    assert door.lock_actions == 1 and nuki.locks[0].lock_actions == 0
