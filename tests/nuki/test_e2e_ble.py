"""Nuki end to end through bleak (the simulated backend) against the simulated lock on the
simulated radio: the scan resolves a MAC Nokē could also own, pairing, the generic open,
keypad codes with a lock-local window across a DST change, the log kept in the store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

import pytest

from blelock.errors import ConfigError, LockRefused, UsageError
from blelock.jobs import context, open_store, resolve, run_operation
from blelock.model import parse_mac
from blelock.transport.scan import Found, find_lock, scan
from blelock.vendors.base import OperationRequest
from blelock.vendors.nuki import access, jobs
from blelock.vendors.nuki import protocol as nuki
from blelock.vendors.nuki.plugin import PLUGIN
from simulators.world import RunningWorld, WorldSpec
from tests.conftest import FAST, settings_for
from tests.nuki.helpers import Clock


@pytest.fixture
def world_spec() -> WorldSpec:
    return WorldSpec(locks=1, seed=5, latency=FAST, nuki_locks=2)


def test_the_plugin_repeats_the_protocol_service() -> None:
    assert PLUGIN.service_uuids == (nuki.KEYTURNER_SERVICE,)


async def test_scan_shows_pairing_mode_and_the_state_change_flag(
    running_world: RunningWorld,
) -> None:
    settings = settings_for(running_world)
    world = running_world.world.nuki
    assert world is not None
    world.locks[1].pairing_mode = False
    world.locks[1].state_changed = True
    found = await scan(settings, [PLUGIN], duration=1.0, expect=2)
    flags = {f.sighting.lock_id: f.sighting.flags for f in found}
    assert flags == {world.locks[0].mac: ("pairing mode",), world.locks[1].mac: ("state changed",)}


async def test_a_mac_both_vendors_could_own_is_resolved_by_the_scan(
    running_world: RunningWorld,
) -> None:
    settings = settings_for(running_world)
    world = running_world.world.nuki
    assert world is not None
    resolved = await resolve(world.locks[0].mac.lower(), settings)
    assert resolved.plugin.name == "nuki" and resolved.lock_id == world.locks[0].mac
    assert (await resolve(running_world.world.locks[0].mac, settings)).plugin.name == "noke"
    with pytest.raises(UsageError, match="could be a lock of"):
        await resolve("00:11:22:33:44:55", settings_for(running_world, BLELOCK_SCAN_TIMEOUT="0.3"))


async def test_pair_open_codes_and_logs(running_world: RunningWorld) -> None:
    settings = settings_for(running_world)
    world = running_world.world.nuki
    assert world is not None
    lock = world.locks[0]
    clock = Clock(dt.datetime(2026, 3, 27, 10, 0, tzinfo=dt.UTC))  # Friday, winter time
    lock.clock = clock
    mac = parse_mac(lock.mac)
    async with open_store(settings) as store:
        with pytest.raises(ConfigError, match="not paired"):
            await run_operation(settings, mac, OperationRequest(""), store=store)
        paired = await jobs.pair(mac, settings, store)
        assert paired.credentials.auth_id in lock.authorizations and not lock.pairing_mode

        # The generic open: the scan resolves the MAC to Nuki, the default operation unlocks.
        result = await run_operation(settings, mac, OperationRequest(""), store=store)
        assert result.vendor == "nuki" and result.operation == "unlock"
        assert result.details["accepted"] and result.details["lock_state"] == "unlocked"
        assert result.details["states_seen"] == 2 and lock.lock_actions == 1

        with pytest.raises(LockRefused, match="BAD_PIN"):
            await jobs.set_pin(mac, settings, store, lock.security_pin + 1)
        with pytest.raises(UsageError, match="4 digits on Smart Lock 1-4") as caught:
            await jobs.set_pin(mac, settings, store, 654321)  # an Ultra's length, not this lock's
        assert "654321" not in caught.value.one_line()
        with pytest.raises(ConfigError, match="no security PIN"):
            await access.list_codes(mac, settings, store)
        await jobs.set_pin(mac, settings, store, lock.security_pin)

        window = nuki.TimeLimit(from_time=dt.time(9), until_time=dt.time(17))
        code_id = await access.add_code(mac, settings, store, "345678", "cleaner", window)
        with pytest.raises(UsageError, match='"12"'):
            await access.add_code(mac, settings, store, "123456", "nope")
        with pytest.raises(LockRefused, match="CODE_ALREADY_EXISTS"):
            await access.add_code(mac, settings, store, "345678", "twice")
        renamed = await access.update_code(
            mac, settings, store, code_id, access.CodeChange(name="night cleaner")
        )
        assert renamed.limit == window and renamed.time_limited  # a rename keeps the window
        (listed,) = await access.list_codes(mac, settings, store)
        assert (listed.name, listed.limit, listed.time_limited) == ("night cleaner", window, True)

        # After the change to summer time (29 March): 17:30 Berlin is refused, 09:30 opens.
        clock.now = dt.datetime(2026, 3, 30, 15, 30, tzinfo=dt.UTC)
        assert not lock.enter_code("345678")
        clock.now = dt.datetime(2026, 3, 30, 7, 30, tzinfo=dt.UTC)
        assert lock.enter_code("345678")

        kept, total = await jobs.read_logs(mac, settings, store)
        assert kept == total == 3  # the unlock, the refused and the accepted code
        again, _ = await jobs.read_logs(mac, settings, store)
        assert again == 0  # what was kept is not asked for twice
        count, shown = await PLUGIN.kept_logs(context(PLUGIN, settings, store), 10)
        assert count == 3
        summaries = [k.summary for k in shown]
        assert any("refused (time not allowed)" in s for s in summaries)
        assert any("unlock (completion 0)" in s for s in summaries)

        await access.remove_code(mac, settings, store, code_id)
        assert lock.codes == {}


async def test_set_time_corrects_a_drifting_lock(running_world: RunningWorld) -> None:
    settings = settings_for(running_world)
    world = running_world.world.nuki
    assert world is not None
    lock = world.locks[1]
    lock.clock_drift_s = -7200.0
    mac = parse_mac(lock.mac)
    async with open_store(settings) as store:
        lock.pairing_mode = False
        with pytest.raises(LockRefused, match="P_NOT_PAIRING") as refused:
            await jobs.pair(mac, settings, store)
        assert refused.value.hint is not None and "pairing mode" in refused.value.hint
        lock.pairing_mode = True
        await jobs.pair(mac, settings, store)
        await jobs.set_pin(mac, settings, store, lock.security_pin)
        result = await run_operation(
            settings, mac, OperationRequest("set-time"), vendor="nuki", store=store
        )
    before = dt.datetime.fromisoformat(str(result.details["clock_was"]))
    after = dt.datetime.fromisoformat(str(result.details["clock_now"]))
    assert dt.timedelta(hours=1.9) < after - before < dt.timedelta(hours=2.1)
    assert abs((lock.now() - dt.datetime.now(dt.UTC)).total_seconds()) < 5


@dataclasses.dataclass
class _MovedClock:
    now: dt.datetime

    def now_utc(self) -> dt.datetime:
        return self.now


async def test_set_time_writes_the_time_of_when_the_lock_was_heard_not_of_the_wait_before(
    running_world: RunningWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(running_world)
    world = running_world.world.nuki
    assert world is not None
    lock = world.locks[1]
    mac = parse_mac(lock.mac)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = _MovedClock(started)
    monkeypatch.setattr(jobs, "SystemClock", lambda: clock)

    async def heard_an_hour_later() -> Found:
        found = await find_lock(mac, settings, [PLUGIN])
        clock.now += dt.timedelta(hours=1)  # the lock was heard only after a long wait
        return found

    async with open_store(settings) as store:
        await jobs.pair(mac, settings, store)
        await jobs.set_pin(mac, settings, store, lock.security_pin)
        _, written = await jobs.set_time(mac, settings, store, found=heard_an_hour_later)
    assert written == started + dt.timedelta(hours=1)


async def test_an_ultra_pairs_with_its_pin_which_is_kept_sealed(
    running_world: RunningWorld,
) -> None:
    settings = settings_for(running_world)
    world = running_world.world.nuki
    assert world is not None
    ultra = world.locks[1]
    ultra.ultra, ultra.security_pin = True, 482915
    mac = parse_mac(ultra.mac)
    async with open_store(settings) as store:
        with pytest.raises(UsageError, match="6-digit security PIN"):
            await jobs.pair(mac, settings, store)
        with pytest.raises(LockRefused, match="BAD_PIN"):
            await jobs.pair(mac, settings, store, security_pin=111111)
        paired = await jobs.pair(mac, settings, store, security_pin=482915)
        assert paired.credentials.ultra and ultra.authorizations
        # The PIN went in with pairing: a PIN command works with no set-pin.
        assert await access.list_codes(mac, settings, store) == []
        result = await run_operation(settings, mac, OperationRequest("unlock"), store=store)
        assert result.details["lock_state"] == "unlocked"
    raw = _store_bytes()
    assert raw
    assert paired.credentials.key not in raw  # the shared key is sealed at rest
    assert (482915).to_bytes(4, "little") not in raw


def _store_bytes() -> bytes:
    return b"".join(
        p.read_bytes() for p in Path(os.environ["BLELOCK_DATA_DIR"]).rglob("blelock.db*")
    )


async def test_authorizations_listed_in_pages_updated_in_full_and_removed(
    running_world: RunningWorld,
) -> None:
    """Over the air: a lock holding more authorizations than one page lists them all; an
    update changes what it names and sends the rest back as the lock had it; a removal
    reaches the lock; removing this companion's own authorization is refused here."""
    settings = settings_for(running_world)
    world = running_world.world.nuki
    assert world is not None
    lock = world.locks[0]
    mac = parse_mac(lock.mac)
    async with open_store(settings) as store:
        paired = await jobs.pair(mac, settings, store)
        await jobs.set_pin(mac, settings, store, lock.security_pin)
        mine = lock.authorizations[paired.credentials.auth_id]
        window = nuki.TimeLimit(weekdays=0x7C, from_time=dt.time(9), until_time=dt.time(17))
        for auth_id in range(100, 100 + access.PAGE + 20):
            lock.authorizations[auth_id] = dataclasses.replace(
                mine, auth_id=auth_id, name=f"fob {auth_id}", time_limited=True, limit=window
            )
        listed = await access.list_authorizations(mac, settings, store)
        assert sorted(e.auth_id for e in listed) == sorted(lock.authorizations)

        updated = await access.update_authorization(
            mac, settings, store, 105, access.CodeChange(name="front fob", enabled=False)
        )
        held = lock.authorizations[105]
        assert (held.name, held.enabled, held.time_limited, held.limit) == (
            "front fob",
            False,
            True,
            window,
        )
        assert updated.limit == window and not updated.enabled

        await access.remove_authorization(mac, settings, store, 106)
        assert 106 not in lock.authorizations
        with pytest.raises(UsageError, match="own authorization"):
            await access.remove_authorization(mac, settings, store, paired.credentials.auth_id)
