"""The access matrix, one row per vendor: a Mon-Sat 06:00-22:00 Europe/Oslo grant over the
spring-forward of 29 March 2026 becomes the vendor's own form; the simulated lock or cloud lets
the holder in at 06:30 and refuses at 22:30 local time, before and after the change; at
``ends_at`` the grant is gone everywhere.

The reconciler runs at each moment on a stepped clock, and the simulated platforms' clocks are
set to the same moment. A vendor with no schedules at all (Nokē) cannot refuse at 22:30: its row
asserts the rounding ``--round`` shows instead (windows dropped, issued at the start and revoked
at the end), which is what its lock really does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import pytest

import blelock.vendors.keyless.cloud
import blelock.vendors.noke.cloud
import blelock.vendors.nuki.web.client
import blelock.vendors.nuki.web.ops
import blelock.vendors.unloc.cloud  # noqa: F401  (imported before the loop: imports read files)
from blelock import access, jobs
from blelock.access.reconcile import Reconciler
from blelock.access.store import GrantStore
from blelock.config import Settings
from blelock.grants import Code
from blelock.store import Store
from simulators.world import RunningWorld, WorldSpec, build_world, serve_world
from tests.access._fake import SteppedClock
from tests.conftest import FAST, settings_for

OSLO = ZoneInfo("Europe/Oslo")
WINDOW = "Mon-Sat 06:00-22:00"


def oslo(month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=OSLO).astimezone(dt.UTC)


STARTS, ENDS = oslo(3, 26, 0), oslo(4, 2, 0)
"""Thursday before the change to the Thursday after."""
MOMENTS = {
    "before": (oslo(3, 27, 6, 30), oslo(3, 27, 22, 30)),  # Friday, UTC+1
    "after": (oslo(3, 30, 6, 30), oslo(3, 30, 22, 30)),  # Monday, UTC+2
}


@dataclass
class Kit:
    running: RunningWorld
    settings: Settings
    store: Store
    grants: GrantStore
    clock: SteppedClock

    def at(self, moment: dt.datetime) -> None:
        self.clock.now = moment
        world = self.running.world
        if world.keyless is not None:
            world.keyless.platform.now = lambda: self.clock.now
        if world.nuki is not None:
            world.nuki.web.clock = self.clock
            for lock in world.nuki.locks:
                lock.clock = lambda: self.clock.now
        if world.unloc is not None:
            world.unloc.state.now = lambda: self.clock.now

    async def reconcile(self) -> None:
        """Until nothing is waiting to be confirmed (a job, a read-back): the clock moves a
        few seconds between runs, as the kiosk's upkeep would."""
        for _ in range(5):
            reconciler = Reconciler(
                self.grants,
                access.access_plugins(),
                lambda p: jobs.context(p, self.settings, self.store, clock=self.clock),
                self.clock,
            )
            report = await reconciler.run()
            assert not report.problems, report.problems
            records = await self.grants.grants()
            if all(row.confirmed for r in records for row in r.items):
                return
            self.clock.advance(seconds=6)


class Row(Protocol):
    vendor: str
    rounds: bool

    def lock(self, kit: Kit) -> str: ...
    def identities(self, kit: Kit) -> dict[str, str]: ...
    async def native(self, kit: Kit) -> list[Any]:
        """What the vendor holds for the holder now, in its own form."""
        ...

    def check_native(self, held: list[Any]) -> None: ...
    async def lets_in(self, kit: Kit, moment: dt.datetime) -> bool: ...


class NokeRow:
    vendor = "noke"
    rounds = True
    tracking_key = "renter-214"

    def lock(self, kit: Kit) -> str:
        return kit.running.world.locks[0].mac

    def identities(self, kit: Kit) -> dict[str, str]:
        return {"tracking_key": self.tracking_key}

    async def native(self, kit: Kit) -> list[Any]:
        lock = kit.running.world.cloud.locks[self.lock(kit)]
        return [key for key in lock.offline_keys.values() if key.tracking_key == self.tracking_key]

    def check_native(self, held: list[Any]) -> None:
        assert len(held) == 1  # one offline key, which has no time fields at all

    async def lets_in(self, kit: Kit, moment: dt.datetime) -> bool:
        # An offline key opens whenever the cloud lists it: the windows were rounded away.
        return bool(await self.native(kit))


class KeylessRow:
    vendor = "keyless"
    rounds = False

    def __init__(self) -> None:
        self._mobile: Any = None

    def lock(self, kit: Kit) -> str:
        keyless = kit.running.world.keyless
        assert keyless is not None
        return keyless.locks[0].locking_device_id

    def identities(self, kit: Kit) -> dict[str, str]:
        keyless = kit.running.world.keyless
        assert keyless is not None
        return {"keyless_user": keyless.technician_user_id}

    async def native(self, kit: Kit) -> list[Any]:
        keyless = kit.running.world.keyless
        assert keyless is not None
        user = keyless.technician_user_id
        return sorted(
            (p.start, p.end)
            for p in keyless.platform.permissions.values()
            if p.user_id == user
            and p.locking_device_id == self.lock(kit)
            and p.start >= STARTS
            and p.end <= ENDS  # not the seeded technician's own
        )

    def check_native(self, held: list[Any]) -> None:
        assert held, "no permission made"
        for start, end in held:  # each one day's 06:00-22:00 in Oslo, in UTC on that day
            local_start, local_end = start.astimezone(OSLO), end.astimezone(OSLO)
            assert (local_start.hour, local_end.hour) in ((6, 22), (local_start.hour, 22))
            assert local_start.weekday() < 6
        offsets = {start.astimezone(OSLO).utcoffset() for start, _ in held}
        assert offsets <= {dt.timedelta(hours=1), dt.timedelta(hours=2)}

    async def lets_in(self, kit: Kit, moment: dt.datetime) -> bool:
        """The platform gives the holder's phone an operating key the lock accepts at
        ``moment`` (signed grant's own validity), or none."""
        from cryptography.hazmat.primitives.asymmetric import ec

        from blelock.vendors.keyless.cloud import KeylessMobile
        from blelock.vendors.keyless.protocol import verify_grant

        keyless = kit.running.world.keyless
        assert keyless is not None and kit.running.keyless_url is not None
        if self._mobile is None:
            self._mobile = KeylessMobile(kit.running.keyless_url, clock=kit.clock)
            await self._mobile.__aenter__()
            key = ec.generate_private_key(ec.SECP256R1()).public_key()
            from cryptography.hazmat.primitives import serialization

            point = key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            await self._mobile.activate(keyless.invitation_code, point)
        platform_key = keyless.platform.platform_key.public_key()
        for issued in await self._mobile.operating_keys():
            if issued.locking_device_id != self.lock(kit):
                continue
            grant = verify_grant(issued.grant, platform_key)
            if "OPEN" in {op.value for op in grant.operations} and (
                grant.not_before <= moment < grant.not_after
            ):
                return True
        return False

    async def close(self) -> None:
        if self._mobile is not None:
            await self._mobile.__aexit__(None, None, None)


class NokeQuickClickRow:
    """A quick click for the holder: no schedule either (rounded), held by the cloud until the
    lock's next online unlock carries it."""

    vendor = "noke"
    rounds = True
    presses = "1011010"

    def lock(self, kit: Kit) -> str:
        return kit.running.world.locks[0].mac

    def identities(self, kit: Kit) -> dict[str, str]:
        return {}

    def codes(self) -> dict[str, Code]:
        return {"quick_click": Code(self.presses)}

    async def native(self, kit: Kit) -> list[Any]:
        lock = kit.running.world.cloud.locks[self.lock(kit)]
        return [q for q in lock.quick_clicks.values() if q.code == self.presses and not q.revoked]

    def check_native(self, held: list[Any]) -> None:
        assert len(held) == 1 and held[0].uses == 255  # unlimited; no time fields exist

    async def lets_in(self, kit: Kit, moment: dt.datetime) -> bool:
        return bool(await self.native(kit))


class NukiRow:
    """A keypad code through the Web API; the simulated Smart Lock (Europe/Berlin, the same
    clock as Oslo) judges a code typed on its keypad by its own clock."""

    vendor = "nuki"
    rounds = False  # exact: Berlin's clock is Oslo's, one window a day, ending before 23:59
    pin = "493817"

    def _world(self, kit: Kit) -> Any:
        nuki = kit.running.world.nuki
        assert nuki is not None
        return nuki

    def lock(self, kit: Kit) -> str:
        return "1001"

    def identities(self, kit: Kit) -> dict[str, str]:
        return {}

    def codes(self) -> dict[str, Code]:
        return {"keypad_code": Code(self.pin)}

    async def native(self, kit: Kit) -> list[Any]:
        lock = self._world(kit).locks[0]
        return [c for c in lock.codes.values() if str(c.code) == self.pin]

    def check_native(self, held: list[Any]) -> None:
        (code,) = held
        limit = code.limit
        assert code.time_limited
        assert (limit.from_time.hour, limit.until_time.hour) == (6, 22)  # lock-local hours
        assert limit.weekdays == 0b1111110  # Mon-Sat (64 Mon ... 2 Sat)

    async def lets_in(self, kit: Kit, moment: dt.datetime) -> bool:
        return bool(self._world(kit).locks[0].enter_code(self.pin))


class UnlocRow:
    """A key for the holder's phone, made by a job; the simulated cloud says whether the key
    is active (the app opens) or inactive (outside its spans) at a moment."""

    vendor = "unloc"
    rounds = False
    phone = "+4799887766"

    def _state(self, kit: Kit) -> Any:
        unloc = kit.running.world.unloc
        assert unloc is not None
        return unloc.state

    def lock(self, kit: Kit) -> str:
        return next(lock.id for lock in self._state(kit).locks.values()
                    if lock.timezone == "Europe/Oslo")  # fmt: skip

    def identities(self, kit: Kit) -> dict[str, str]:
        return {"phone": self.phone}

    def codes(self) -> dict[str, Code]:
        return {}

    async def native(self, kit: Kit) -> list[Any]:
        state = self._state(kit)
        return [
            key for key in state.keys.values()
            if key.app_user_id == self.phone and state.key_state(key) not in ("revoked", "expired")
        ]  # fmt: skip

    def check_native(self, held: list[Any]) -> None:
        (key,) = held
        assert key.start == STARTS and key.end == ENDS
        assert sorted(s.weekday for s in key.spans) == sorted(
            ["mon", "tue", "wed", "thu", "fri", "sat"]
        )
        assert {(s.start, s.end) for s in key.spans} == {(6 * 60, 22 * 60)}  # lock-local

    async def lets_in(self, kit: Kit, moment: dt.datetime) -> bool:
        keys = await self.native(kit)
        return any(self._state(kit).key_state(key) == "active" for key in keys)


ROWS = {
    "noke": NokeRow,
    "noke-quick-click": NokeQuickClickRow,
    "keyless": KeylessRow,
    "nuki": NukiRow,
    "unloc": UnlocRow,
}


@contextlib.asynccontextmanager
async def kit(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Kit]:
    spec = WorldSpec(locks=1, seed=4, latency=FAST, keyless_locks=1, nuki_locks=1, unloc_locks=1)
    async with serve_world(build_world(spec)) as running:
        monkeypatch.setenv("BLELOCK_SIM_RADIO", running.radio_address)
        settings = settings_for(running, BLELOCK_ACCESS_TIMEZONE="Europe/Oslo")
        async with (
            jobs.open_store(settings) as store,
            access.open_grants(settings, store) as grants,
        ):
            yield Kit(running, settings, store, grants, SteppedClock(STARTS - dt.timedelta(days=1)))


@pytest.mark.parametrize("vendor", list(ROWS))
async def test_a_weekly_grant_over_the_dst_change_in_each_vendors_form(
    vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = ROWS[vendor]()
    async with kit(monkeypatch) as k:
        k.at(STARTS - dt.timedelta(hours=1))
        request = access.GrantRequest(
            holder="Renter 214", locks=[f"{row.vendor}:{row.lock(k)}"], starts_at=STARTS,
            ends_at=ENDS, windows=[WINDOW], identities=row.identities(k),
            codes=getattr(row, "codes", dict)(), round=row.rounds,
        )  # fmt: skip
        record = await access.create_grant(
            request,
            k.grants,
            access.access_plugins(),
            lambda p: jobs.context(p, k.settings, k.store, clock=k.clock),
            k.settings,
            k.clock,
        )
        (target,) = record.targets
        dropped = any("dropped" in text for text in target.plan.roundings)  # windows lost
        try:
            for when, (morning, night) in MOMENTS.items():
                k.at(morning)
                await k.reconcile()
                row.check_native(await row.native(k))
                assert await row.lets_in(k, morning), f"{vendor}: refused at 06:30 {when}"
                k.at(night)
                await k.reconcile()
                if dropped:  # no windows at this vendor: the rounding says it opens
                    assert await row.lets_in(k, night)
                else:
                    assert not await row.lets_in(k, night), f"{vendor}: let in at 22:30 {when}"
            k.at(ENDS + dt.timedelta(minutes=1))
            await k.reconcile()
            assert await row.native(k) == [], f"{vendor}: still holds the grant after its end"
            assert not await row.lets_in(k, ENDS + dt.timedelta(hours=7))
            done = await k.grants.get(record.grant.id)
            assert done is not None and done.status().value == "revoked"
        finally:
            close = getattr(row, "close", None)
            if close is not None:
                await close()
