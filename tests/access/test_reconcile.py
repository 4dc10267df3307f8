"""The reconciler against a vendor without idempotency keys: applied when due, removed at the
end or on revocation, an interrupted apply found by listing (never created twice), leases."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from blelock.access import GrantRefused, GrantRequest, create_grant
from blelock.access.reconcile import Reconciler
from blelock.access.store import GrantResult, GrantStore, ItemState
from blelock.config import Settings
from blelock.grants import GrantStatus, LockRef
from tests.access import slow_vendor
from tests.access._fake import FakeCloud, FakePlugin, SteppedClock


def no_context(plugin: Any) -> Any:
    return None


async def grant(
    grants: GrantStore, fake: FakePlugin, settings: Settings, clock: SteppedClock, **changes: Any
) -> str:
    values: dict[str, Any] = {
        "holder": "Renter 214",
        "locks": ["F-214"],
        "ends_at": clock.now + dt.timedelta(days=10),
        "identities": {"fake_user": "bob"},
    }
    record = await create_grant(
        GrantRequest(**(values | changes)), grants, {"fake": fake}, no_context, settings, clock
    )
    return record.grant.id


def reconciler(
    grants: GrantStore, fake: FakePlugin, clock: SteppedClock, owner: str = "r1"
) -> Reconciler:
    return Reconciler(grants, {"fake": fake}, no_context, clock, owner=owner, lease_s=30)


async def test_a_grant_is_applied_once_and_removed_at_its_end(
    grants: GrantStore, fake: FakePlugin, cloud: FakeCloud, settings: Settings,
    clock: SteppedClock,
) -> None:  # fmt: skip
    gid = await grant(grants, fake, settings, clock)
    report = await reconciler(grants, fake, clock).run()
    assert report.applied == 1 and len(cloud.holding("bob")) == 1
    record = await grants.get(gid)
    assert record is not None and record.status() is GrantStatus.ACTIVE

    again = await reconciler(grants, fake, clock).run()
    assert again.grants == 0 and again.vendor_calls == 0  # nothing due: no vendor call at all

    clock.advance(days=10, seconds=1)
    done = await reconciler(grants, fake, clock).run()
    assert done.removed == 1 and cloud.holding("bob") == []
    record = await grants.get(gid)
    assert record is not None and record.status() is GrantStatus.REVOKED
    assert record.next_check_at is None  # nothing left to do for it, ever


async def test_weekly_windows_become_one_object_per_opening_made_ahead_and_removed_after(
    grants: GrantStore, fake: FakePlugin, cloud: FakeCloud, settings: Settings,
    clock: SteppedClock,
) -> None:  # fmt: skip
    await grant(grants, fake, settings, clock, windows=["Mon-Sat 06:00-22:00"])
    await reconciler(grants, fake, clock).run()  # Monday 07:00 Oslo: today's opening
    # (cut to the grant's start, now)
    assert [o["start"] for o in cloud.holding("bob")] == ["2026-03-23T06:00:00+00:00"]
    clock.advance(hours=22)  # Tuesday 05:00 Oslo: within the lead of Tuesday's opening
    await reconciler(grants, fake, clock).run()
    assert [o["start"] for o in cloud.holding("bob")] == ["2026-03-24T05:00:00+00:00"]


async def test_an_apply_whose_answer_was_lost_is_found_by_listing_not_made_twice(
    grants: GrantStore, fake: FakePlugin, cloud: FakeCloud, settings: Settings,
    clock: SteppedClock,
) -> None:  # fmt: skip
    gid = await grant(grants, fake, settings, clock)
    cloud.lose_answer_after.add("create")  # created at the vendor, the answer never came
    first = await reconciler(grants, fake, clock).run()
    assert first.problems and len(cloud.holding("bob")) == 1
    record = await grants.get(gid)
    assert record is not None and record.items[0].state is ItemState.APPLYING

    clock.advance(seconds=61)
    second = await reconciler(grants, fake, clock).run()
    assert second.found == 1 and second.applied == 0
    assert len(cloud.holding("bob")) == 1 and cloud.calls["create"] == 1
    record = await grants.get(gid)
    assert record is not None and record.items[0].ref == "obj-1"


async def test_two_equal_grants_get_two_objects_even_after_an_interruption(
    grants: GrantStore, fake: FakePlugin, cloud: FakeCloud, settings: Settings,
    clock: SteppedClock,
) -> None:  # fmt: skip
    ends = clock.now + dt.timedelta(days=3)
    await grant(grants, fake, settings, clock, ends_at=ends, grant_id="a")
    await reconciler(grants, fake, clock).run()
    await grant(grants, fake, settings, clock, ends_at=ends, grant_id="b")
    cloud.lose_answer_after.add("create")
    await reconciler(grants, fake, clock).run()
    clock.advance(seconds=61)
    await reconciler(grants, fake, clock).run()
    # b's interrupted create is adopted; a's object (same fields) is not taken for b's.
    assert len(cloud.holding("bob")) == 2


async def test_one_reconciler_applying_then_removing_revokes_at_the_vendor(
    grants: GrantStore, fake: FakePlugin, cloud: FakeCloud, settings: Settings,
    clock: SteppedClock,
) -> None:  # fmt: skip
    # What a run applied is claimed (kept from other grants) until it is removed, not after:
    # a reconciler that applies and later removes the same item must revoke it at the vendor.
    await grant(grants, fake, settings, clock, ends_at=clock.now + dt.timedelta(minutes=30))
    same = reconciler(grants, fake, clock)
    assert (await same.run()).applied == 1 and len(cloud.holding("bob")) == 1
    clock.advance(minutes=31)
    assert (await same.run()).removed == 1
    assert cloud.holding("bob") == []


async def test_revocation_removes_at_the_next_run_and_says_revoked(
    grants: GrantStore, fake: FakePlugin, cloud: FakeCloud, settings: Settings,
    clock: SteppedClock,
) -> None:  # fmt: skip
    gid = await grant(grants, fake, settings, clock)
    await reconciler(grants, fake, clock).run()
    clock.advance(minutes=5)
    await grants.revoke(gid, clock.now)
    record = await grants.get(gid)
    assert record is not None and record.grant.revoked_at == clock.now
    report = await reconciler(grants, fake, clock).run()
    assert report.removed == 1 and cloud.holding("bob") == []
    record = await grants.get(gid)
    assert record is not None and record.status() is GrantStatus.REVOKED


async def test_a_vendor_refusal_is_kept_with_its_reason_and_not_retried(
    grants: GrantStore, fake: FakePlugin, cloud: FakeCloud, settings: Settings,
    clock: SteppedClock,
) -> None:  # fmt: skip
    cloud.refuse.add("bob")
    gid = await grant(grants, fake, settings, clock)
    await reconciler(grants, fake, clock).run()
    record = await grants.get(gid)
    assert record is not None and record.status() is GrantStatus.ERROR
    assert "refuses this holder" in (record.targets[0].reason or "")
    clock.advance(days=1)
    await reconciler(grants, fake, clock).run()
    assert cloud.calls["create"] == 1


async def test_an_unreachable_vendor_leaves_the_grant_pending_and_retries_later(
    grants: GrantStore, fake: FakePlugin, cloud: FakeCloud, settings: Settings,
    clock: SteppedClock,
) -> None:  # fmt: skip
    gid = await grant(grants, fake, settings, clock)
    cloud.down = True
    report = await reconciler(grants, fake, clock).run()
    assert report.problems and "down" in report.problems[0]
    record = await grants.get(gid)
    assert record is not None and record.status() is GrantStatus.APPLYING
    cloud.down = False
    assert (await reconciler(grants, fake, clock).run()).grants == 0  # waits its retry time
    clock.advance(seconds=61)
    await reconciler(grants, fake, clock).run()
    record = await grants.get(gid)
    assert record is not None and record.status() is GrantStatus.ACTIVE


async def test_a_leased_grant_is_not_taken_by_another_and_a_lost_lease_stops_writes(
    grants: GrantStore, fake: FakePlugin, cloud: FakeCloud, settings: Settings,
    clock: SteppedClock,
) -> None:  # fmt: skip
    await grant(grants, fake, settings, clock)
    (taken,) = await grants.lease("r1", clock.now, 30, 10)
    assert await grants.lease("r2", clock.now, 30, 10) == []  # held by r1
    clock.advance(seconds=31)  # r1 presumed dead
    (again,) = await grants.lease("r2", clock.now, 30, 10)
    # r1's late answers are refused: they would overwrite what r2 does.
    assert await grants.finish("r1", [GrantResult(taken.grant.id, {}, None)], clock.now) == {
        taken.grant.id
    }
    assert (
        await grants.finish("r2", [GrantResult(again.grant.id, {}, clock.now)], clock.now) == set()
    )


async def test_a_grant_a_vendor_cannot_express_is_refused_whole_and_nothing_is_stored(
    grants: GrantStore, cloud: FakeCloud, settings: Settings, clock: SteppedClock
) -> None:
    from tests.access._fake import FakeAccess

    no_windows = FakePlugin(FakeAccess(cloud, windows=False))
    with pytest.raises(GrantRefused, match="no weekly windows"):
        await grant(grants, no_windows, settings, clock, windows=["Mon-Sat 06:00-22:00"])
    assert await grants.grants() == []
    gid = await grant(
        grants, no_windows, settings, clock, windows=["Mon-Sat 06:00-22:00"], round=True
    )
    record = await grants.get(gid)
    assert record is not None and record.targets[0].plan.roundings
    assert record.grant.locks == (LockRef("fake", "F-214"),)


async def test_a_code_is_checked_sealed_at_rest_and_given_only_to_the_vendor(
    grants: GrantStore, cloud: FakeCloud, settings: Settings, clock: SteppedClock
) -> None:
    from pathlib import Path

    from blelock.access import grant_payload
    from blelock.grants import Code
    from tests.access._fake import FakeAccess

    pins = FakePlugin(FakeAccess(cloud, codes=True))
    with pytest.raises(GrantRefused, match="opens with a fake pin"):
        await grant(grants, pins, settings, clock)
    with pytest.raises(GrantRefused, match="must not start with '12'") as refused:
        await grant(grants, pins, settings, clock, codes={"fake_pin": Code("123999")})
    assert "123999" not in str(refused.value)
    gid = await grant(grants, pins, settings, clock, codes={"fake_pin": Code("493817")})
    record = await grants.get(gid)
    assert record is not None and "493817" not in repr(record) + str(grant_payload(record))

    def files() -> bytes:
        return b"".join(p.read_bytes() for p in Path(settings.store_dir).iterdir() if p.is_file())

    on_disk = await asyncio.to_thread(files)
    assert b"493817" not in on_disk  # sealed under the store's data key
    await Reconciler(grants, {"fake": pins}, no_context, clock, owner="r1").run()
    assert list(cloud.pins.values()) == ["493817"]


async def test_renewing_a_lease_extends_only_the_owners_and_not_once_retaken(
    grants: GrantStore, settings: Settings, clock: SteppedClock
) -> None:
    await slow_vendor.check_renew(grants, settings, clock)


async def test_a_turn_outlasting_its_lease_stops_once_taken_over_and_makes_no_duplicate(
    grants: GrantStore, settings: Settings
) -> None:
    await slow_vendor.check_turn_past_the_lease(grants, grants, settings)


async def test_a_vendor_call_outlasting_the_lease_is_cut_by_its_deadline_no_duplicate(
    grants: GrantStore, settings: Settings
) -> None:
    await slow_vendor.check_call_past_the_lease(grants, grants, settings)
