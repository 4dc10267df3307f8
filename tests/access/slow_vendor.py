"""A vendor slower than a lease, for both grant stores: a reconciler whose turn, or one call,
outlasts its lease while another takes the grant over must not make a second object at the
vendor, and every grant still converges. Shared by the SQLite tests and the postgres tier."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

from blelock.access import GrantRequest, create_grant
from blelock.access.reconcile import Reconciler
from blelock.access.store import GrantStore
from blelock.config import Settings
from blelock.grants import GrantStatus
from tests.access._fake import (
    DeadlineClock,
    FakeAccess,
    FakeCloud,
    FakePlugin,
    Stall,
    SteppedClock,
)

LEASE_S = 30.0


def no_context(plugin: Any) -> Any:
    return None


async def make_grant(
    grants: GrantStore, fake: FakePlugin, settings: Settings, clock: SteppedClock,
    locks: list[str], user: str = "bob",
) -> str:  # fmt: skip
    request = GrantRequest(
        holder="Renter 214", locks=locks, ends_at=clock.now + dt.timedelta(days=10),
        identities={"fake_user": user},
    )  # fmt: skip
    record = await create_grant(request, grants, {"fake": fake}, no_context, settings, clock)
    return record.grant.id


def fake_of(cloud: FakeCloud) -> FakePlugin:
    return FakePlugin(FakeAccess(cloud))


def duplicates(cloud: FakeCloud) -> list[tuple[object, object]]:
    """Vendor-side objects made more than once (same holder, lock and opening)."""
    made = Counter((o["holder"], o["lock"], o["start"]) for o in cloud.objects.values())
    return [key[:2] for key, count in made.items() if count > 1]


async def converged(grants: GrantStore, clock: SteppedClock, reconciler: Reconciler) -> None:
    """Every grant active, after the retries a timed-out call left have had their turn."""
    for _ in range(3):
        clock.advance(seconds=61)
        await reconciler.run()
    records = await grants.grants()
    assert records and {r.status() for r in records} == {GrantStatus.ACTIVE}


async def check_renew(grants: GrantStore, settings: Settings, clock: SteppedClock) -> None:
    """``renew`` extends a lease only while it is still this owner's."""
    gid = await make_grant(grants, fake_of(FakeCloud()), settings, clock, ["F-1"])
    (taken,) = await grants.lease("r1", clock.now, LEASE_S, 10)
    assert taken.grant.id == gid
    clock.advance(seconds=20)
    assert await grants.renew("r1", gid, clock.now, LEASE_S)  # held: extended to now + 30
    clock.advance(seconds=20)  # past the lease first taken, inside the renewed one
    assert await grants.lease("r2", clock.now, LEASE_S, 10) == []
    assert not await grants.renew("r2", gid, clock.now, LEASE_S)  # another's: refused
    clock.advance(seconds=LEASE_S + 1)
    (again,) = await grants.lease("r2", clock.now, LEASE_S, 10)  # ran out, and retaken
    assert again.grant.id == gid
    assert not await grants.renew("r1", gid, clock.now, LEASE_S)
    assert await grants.renew("r2", gid, clock.now, LEASE_S)
    assert await grants.lease("r1", clock.now, LEASE_S, 10) == []  # r1 did not take it back


async def check_turn_past_the_lease(
    first: GrantStore, second: GrantStore, settings: Settings
) -> None:
    """One grant on three locks; the vendor's answer to the second create is slower than the
    lease (the object is made, the answer held). Another reconciler takes the grant over,
    finds the two made and makes the third; the slow one, let go, must not make it again."""
    cloud = FakeCloud(stall=Stall(nth=2, landed=True))
    fake = fake_of(cloud)
    clock = SteppedClock(dt.datetime(2026, 3, 23, 6, 0, tzinfo=dt.UTC))
    await make_grant(first, fake, settings, clock, ["F-1", "F-2", "F-3"])
    slow = Reconciler(first, {"fake": fake}, no_context, clock, owner="slow", lease_s=LEASE_S)
    other = Reconciler(second, {"fake": fake}, no_context, clock, owner="other", lease_s=LEASE_S)
    assert cloud.stall is not None
    running = asyncio.create_task(slow.run())
    await cloud.stall.entered.wait()
    clock.advance(seconds=LEASE_S + 1)
    took_over = await other.run()
    assert (took_over.found, took_over.applied) == (2, 1)
    cloud.stall.released.set()
    late = await running
    assert duplicates(cloud) == []
    assert len(cloud.objects) == 3
    # It stopped before its third create: three asked in all, one of them by the takeover.
    assert late.lost_leases == 1 and cloud.calls["create"] == 3
    await converged(first, clock, other)
    assert len(cloud.objects) == 3


async def check_call_past_the_lease(
    first: GrantStore, second: GrantStore, settings: Settings
) -> None:
    """The vendor has not acted on a create when the lease would run out: the call's deadline
    (shorter than the lease) ends it first, so the object a takeover makes is the only one."""
    cloud = FakeCloud(stall=Stall(nth=1, landed=False))
    fake = fake_of(cloud)
    clock = DeadlineClock(dt.datetime(2026, 3, 23, 6, 0, tzinfo=dt.UTC))
    await make_grant(first, fake, settings, clock, ["F-1"])
    await make_grant(first, fake, settings, clock, ["F-2"], user="carol")
    slow = Reconciler(
        first, {"fake": fake}, no_context, clock, owner="slow", lease_s=LEASE_S,
        timeout=clock.timeout,
    )  # fmt: skip
    other = Reconciler(
        second, {"fake": fake}, no_context, clock, owner="other", lease_s=LEASE_S,
        timeout=clock.timeout,
    )  # fmt: skip
    assert cloud.stall is not None
    running = asyncio.create_task(slow.run())
    await cloud.stall.entered.wait()
    clock.advance(seconds=LEASE_S + 1)  # the held call's deadline has passed, then the lease
    took_over = await other.run()
    cloud.stall.released.set()
    late = await running
    assert duplicates(cloud) == []
    assert any("timed out" in problem for problem in late.problems)
    await converged(first, clock, other)
    assert duplicates(cloud) == []
    assert len(cloud.objects) == 2
    assert took_over.applied + late.applied <= 2
