"""Grants in a shared PostgreSQL database: the same store as the local one, leases taken with
SKIP LOCKED so two reconcilers never work on one grant, and one dying mid-grant survived."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from blelock.access import GrantRequest, create_grant
from blelock.access.postgres import open_postgres
from blelock.access.reconcile import Reconciler, effective_target
from blelock.access.store import GrantResult, ItemRow, ItemState
from blelock.config import Settings
from blelock.errors import StoreError
from blelock.grants import GrantStatus
from tests.access import slow_vendor
from tests.access._fake import FakeAccess, FakeCloud, FakePlugin, SteppedClock

pytestmark = pytest.mark.postgres

NOW = dt.datetime(2026, 3, 23, 6, 0, tzinfo=dt.UTC)


def no_context(plugin: Any) -> Any:
    return None


def settings() -> Settings:
    from blelock.config import load_settings

    return load_settings(environ={"BLELOCK_ACCESS_TIMEZONE": "Europe/Oslo"}, read_file=False)


async def test_the_shared_store_keeps_grants_and_refuses_a_second_with_one_id(
    pg_database: str,
) -> None:
    cloud = FakeCloud()
    fake = FakePlugin(FakeAccess(cloud))
    clock = SteppedClock(NOW)
    async with open_postgres(pg_database) as grants:
        request = GrantRequest(
            holder="Renter 214", locks=["F-1", "F-2"], ends_at=NOW + dt.timedelta(days=3),
            windows=["Mon-Sat 06:00-22:00"], identities={"fake_user": "bob"}, grant_id="lease-1",
        )  # fmt: skip
        record = await create_grant(request, grants, {"fake": fake}, no_context, settings(), clock)
        assert [t.lock.lock_id for t in record.targets] == ["F-1", "F-2"]
        with pytest.raises(Exception, match="exists already"):
            await create_grant(request, grants, {"fake": fake}, no_context, settings(), clock)
    # Another process (a second kiosk) sees the same grant.
    async with open_postgres(pg_database) as other:
        (seen,) = await other.grants()
        assert seen.grant.schedule.windows == record.grant.schedule.windows
        assert seen.grant.holder.identities == {"fake_user": "bob"}


async def test_two_reconcilers_at_once_apply_each_grant_once(pg_database: str) -> None:
    cloud = FakeCloud()
    fake = FakePlugin(FakeAccess(cloud))
    clock = SteppedClock(NOW)
    async with open_postgres(pg_database) as one, open_postgres(pg_database) as two:
        for n in range(30):
            await create_grant(
                GrantRequest(holder=f"Renter {n}", locks=[f"F-{n % 4}"],
                             ends_at=NOW + dt.timedelta(days=3), identities={"fake_user": f"u{n}"}),
                one, {"fake": fake}, no_context, settings(), clock,
            )  # fmt: skip
        first = Reconciler(one, {"fake": fake}, no_context, clock, owner="a", batch=3)
        second = Reconciler(two, {"fake": fake}, no_context, clock, owner="b", batch=3)
        reports = await asyncio.gather(first.run(), second.run())
        assert sum(r.applied for r in reports) == 30 and all(r.grants for r in reports)
        assert cloud.calls["create"] == 30 and len(cloud.objects) == 30
        records = await one.grants()
        assert {r.status() for r in records} == {GrantStatus.ACTIVE}


async def test_a_reconciler_dying_mid_grant_is_taken_over_once_its_lease_ends(
    pg_database: str,
) -> None:
    cloud = FakeCloud()
    fake = FakePlugin(FakeAccess(cloud))
    clock = SteppedClock(NOW)
    async with open_postgres(pg_database) as grants:
        record = await create_grant(
            GrantRequest(holder="Renter 1", locks=["F-1"], ends_at=NOW + dt.timedelta(days=3),
                         identities={"fake_user": "bob"}),
            grants, {"fake": fake}, no_context, settings(), clock,
        )  # fmt: skip
        # The dying one: took the lease, recorded "applying", the vendor made it, then nothing.
        (taken,) = await grants.lease("dead", clock.now, 30, 10)
        target = effective_target(taken, taken.targets[0].plan)
        target_item = fake.access().items(target, clock.now, clock.now + dt.timedelta(hours=2))[0]
        await grants.save_items(
            "dead",
            [ItemRow(record.grant.id, taken.targets[0].lock, target_item, ItemState.APPLYING,
                     attempts=1)],
            clock.now, 30,
        )  # fmt: skip
        cloud.objects["obj-dead"] = dict(target_item.native)

        alive = Reconciler(grants, {"fake": fake}, no_context, clock, owner="alive", lease_s=30)
        assert (await alive.run()).grants == 0  # the lease still holds
        report = await alive.run(until_settled=True)  # waits it out (the clock moves)
        assert report.found == 1 and report.applied == 0 and len(cloud.objects) == 1
        after = await grants.get(record.grant.id)
        assert after is not None and after.items[0].ref == "obj-dead"


async def test_an_unreachable_database_is_one_clear_store_error() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreError, match="shared grant database failed"):
        async with open_postgres(f"postgresql://postgres@127.0.0.1:{port}/none"):
            pass


async def test_codes_in_the_shared_store_are_sealed_under_the_facilitys_key(
    pg_database: str,
) -> None:
    import base64
    import os

    import psycopg
    from pydantic import SecretStr

    from blelock.errors import ConfigError
    from blelock.grants import Code

    cloud = FakeCloud()
    pins = FakePlugin(FakeAccess(cloud, codes=True))
    clock = SteppedClock(NOW)
    request = GrantRequest(
        holder="Renter 7", locks=["F-7"], ends_at=NOW + dt.timedelta(days=3),
        identities={"fake_user": "bob"}, codes={"fake_pin": Code("493817")},
    )  # fmt: skip
    async with open_postgres(pg_database) as keyless:
        with pytest.raises(ConfigError, match="access_code_key"):
            await create_grant(request, keyless, {"fake": pins}, no_context, settings(), clock)
    key = SecretStr(base64.urlsafe_b64encode(os.urandom(32)).decode())
    async with open_postgres(pg_database, key) as grants:
        await create_grant(request, grants, {"fake": pins}, no_context, settings(), clock)
        await Reconciler(grants, {"fake": pins}, no_context, clock, owner="k1").run()
    assert list(cloud.pins.values()) == ["493817"]

    def stored() -> bytes:
        with psycopg.connect(pg_database) as conn:
            (value,) = conn.execute("SELECT sealed FROM access_grants").fetchone()
            return bytes(value)

    sealed = await asyncio.to_thread(stored)
    assert b"493817" not in sealed and len(sealed) > 28


async def test_a_lost_lease_fences_the_old_owners_writes_in_the_shared_store(
    pg_database: str,
) -> None:
    cloud = FakeCloud()
    fake = FakePlugin(FakeAccess(cloud))
    clock = SteppedClock(NOW)
    async with open_postgres(pg_database) as one, open_postgres(pg_database) as two:
        await create_grant(
            GrantRequest(holder="Renter 1", locks=["F-1"], ends_at=NOW + dt.timedelta(days=3),
                         identities={"fake_user": "bob"}),
            one, {"fake": fake}, no_context, settings(), clock,
        )  # fmt: skip
        (taken,) = await one.lease("slow", clock.now, 30, 10)
        assert await two.lease("other", clock.now, 30, 10) == []  # held
        clock.advance(seconds=31)  # "slow" is presumed dead
        (again,) = await two.lease("other", clock.now, 30, 10)
        item = fake.access().items(
            effective_target(taken, taken.targets[0].plan),
            clock.now,
            clock.now + dt.timedelta(hours=2),
        )[0]
        row = ItemRow(taken.grant.id, taken.targets[0].lock, item, ItemState.APPLYING, attempts=1)
        # The slow one's late writes are refused, intents and answers alike.
        assert await one.save_items("slow", [row], clock.now, 30) == {taken.grant.id}
        assert await one.finish("slow", [GrantResult(taken.grant.id, {}, None)], clock.now) == {
            taken.grant.id
        }
        kept = await two.get(again.grant.id)
        assert kept is not None and kept.items == ()  # nothing of the slow one's was written
        assert (
            await two.finish("other", [GrantResult(again.grant.id, {}, clock.now)], clock.now)
            == set()
        )


async def test_code_tags_in_the_shared_store_are_keyed_and_the_same_on_every_kiosk(
    pg_database: str,
) -> None:
    import base64
    import os

    import psycopg
    from pydantic import SecretStr

    from blelock.grants import Code
    from tests.access.test_code_tags import PIN, VendorRefs, fresh_natives, unkeyed

    cloud = FakeCloud()
    access = VendorRefs(cloud, codes=True)
    pins = FakePlugin(access)
    clock = SteppedClock(NOW)
    request = GrantRequest(
        holder="Renter 8", locks=["F-8"], ends_at=NOW + dt.timedelta(days=3),
        identities={"fake_user": "bob"}, codes={"fake_pin": Code(PIN)},
    )  # fmt: skip
    key = SecretStr(base64.urlsafe_b64encode(os.urandom(32)).decode())
    async with open_postgres(pg_database, key) as grants:
        record = await create_grant(request, grants, {"fake": pins}, no_context, settings(), clock)
        first = await Reconciler(grants, {"fake": pins}, no_context, clock, owner="k1").run()
    assert first.applied == 1

    def natives() -> str:
        with psycopg.connect(pg_database) as conn:
            rows = conn.execute("SELECT native, coalesce(ref, '') FROM access_items").fetchall()
            return " ".join(str(value) for row in rows for value in row)

    text = await asyncio.to_thread(natives)
    assert "code:" in text and "qc:" in text and PIN not in text
    assert not [digest for digest in unkeyed(PIN) if digest in text]
    # A second kiosk (its own key object from the same access_code_key) sees the same items.
    clock.advance(days=1, seconds=1)  # the grant's next look (a day ahead)
    async with open_postgres(pg_database, key) as other:
        again = await Reconciler(other, {"fake": pins}, no_context, clock, owner="k2").run()
        assert again.grants == 1 and again.changed == 0 and len(cloud.objects) == 1
        (stored,) = (await other.get(record.grant.id) or pytest.fail("gone")).items
        later = clock.now + dt.timedelta(days=1)
        assert await fresh_natives(other, access, later) == [stored.item.native]
    assert await asyncio.to_thread(natives) == text


async def test_renewing_a_lease_in_the_shared_store_extends_only_the_owners(
    pg_database: str,
) -> None:
    async with open_postgres(pg_database) as grants:
        await slow_vendor.check_renew(grants, settings(), SteppedClock(NOW))


async def test_two_reconcilers_on_the_shared_store_a_turn_outlasting_its_lease_no_duplicate(
    pg_database: str,
) -> None:
    async with open_postgres(pg_database) as one, open_postgres(pg_database) as two:
        await slow_vendor.check_turn_past_the_lease(one, two, settings())


async def test_two_reconcilers_on_the_shared_store_a_call_outlasting_the_lease_no_duplicate(
    pg_database: str,
) -> None:
    async with open_postgres(pg_database) as one, open_postgres(pg_database) as two:
        await slow_vendor.check_call_past_the_lease(one, two, settings())
