"""The log outbox: append durably, lease in order, resend the same batch, delete on ack only."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from blelock.errors import AuthFailed, CloudRejected, RateLimited, UnknownLock
from blelock.model import LogRecord, MacAddress
from blelock.store.db import Database
from blelock.store.outbox import Batch, Outbox
from blelock.vendors.outbox import drain_outbox

A = MacAddress("C7:E6:B0:C6:75:38")


def records(count: int, start: int = 0) -> list[LogRecord]:
    return [
        LogRecord(A, f"{i % 3:02x}" * 20, 1_790_000_000 + i, f"{i:08x}" + "00" * 12)
        for i in range(start, start + count)
    ]


@pytest.fixture
def outbox(db: Database) -> Outbox:
    return Outbox(db, "noke")


async def test_append_keeps_records_in_order(outbox: Outbox) -> None:
    kept = records(5)
    await outbox.append(kept[:3])
    await outbox.append(kept[3:])
    await outbox.append([])  # nothing to do
    assert await outbox.pending_count() == 5
    assert await outbox.pending() == kept
    assert await outbox.pending(2) == kept[:2]


async def test_duplicates_are_kept_once(outbox: Outbox) -> None:
    kept = records(3)
    await outbox.append(kept)
    await outbox.append(kept)
    await outbox.append([kept[0], kept[0]])
    # The same record arriving later (another received_at) is still the same record.
    later = LogRecord(kept[1].lock_id, kept[1].context, kept[1].received_at + 60, kept[1].payload)
    await outbox.append([later])
    assert await outbox.pending() == kept


async def test_lease_acknowledge_cycle(outbox: Outbox) -> None:
    kept = records(5)
    await outbox.append(kept)
    first = await outbox.lease(2)
    assert first is not None and first.records == tuple(kept[:2])
    assert len(first.key) == 32 and int(first.key, 16) >= 0  # uuid4 hex
    assert await outbox.acknowledge(first.key) == 2
    assert await outbox.pending() == kept[2:]

    second = await outbox.lease(10)
    assert second is not None and second.records == tuple(kept[2:])
    assert second.key != first.key
    assert await outbox.acknowledge(second.key) == 3
    assert await outbox.lease(10) is None
    assert await outbox.pending_count() == 0


async def test_an_unacknowledged_batch_comes_back_whole_with_its_key(outbox: Outbox) -> None:
    await outbox.append(records(5))
    first = await outbox.lease(3)
    assert first is not None
    await outbox.append(records(2, start=100))  # newer records do not join a formed batch
    assert await outbox.lease(1) == first  # same key, same records, whatever the limit
    assert await outbox.lease(50) == first
    assert await outbox.acknowledge(first.key) == 3
    rest = await outbox.lease(50)
    assert rest is not None and rest.records == (*records(2, start=3), *records(2, start=100))


async def test_lease_after_a_crash_returns_the_same_batch(store_dir: Path) -> None:
    path = store_dir / "blelock.db"
    async with await Database.open(path) as db:
        await Outbox(db, "noke").append(records(4))
        sent = await Outbox(db, "noke").lease(3)
        # ... uploaded, then the process died before acknowledge.
    async with await Database.open(path) as db:
        again = await Outbox(db, "noke").lease(500)
        assert again == sent
        assert sent is not None and await Outbox(db, "noke").acknowledge(sent.key) == 3
        assert await Outbox(db, "noke").pending() == records(1, start=3)


async def test_acknowledging_an_unknown_or_spent_key_deletes_nothing(outbox: Outbox) -> None:
    await outbox.append(records(2))
    batch = await outbox.lease(1)
    assert batch is not None
    assert await outbox.acknowledge("0" * 32) == 0
    assert await outbox.acknowledge(batch.key) == 1
    assert await outbox.acknowledge(batch.key) == 0  # a second ack (another process) is harmless
    assert await outbox.pending_count() == 1


async def test_a_record_appended_again_after_its_ack_is_new(outbox: Outbox) -> None:
    """Dedup covers what is pending; the cloud's idempotency keys cover the rest."""
    await outbox.append(records(1))
    batch = await outbox.lease(10)
    assert batch is not None
    await outbox.acknowledge(batch.key)
    await outbox.append(records(1))
    assert await outbox.pending_count() == 1


async def test_lease_needs_a_positive_limit(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="at least one"):
        await outbox.lease(0)


async def test_batch_is_plain_data() -> None:
    batch = Batch("k", tuple(records(1)))
    assert batch == Batch("k", tuple(records(1)))


async def test_draining_many_records_takes_each_once_in_order(outbox: Outbox) -> None:
    # How fast is scripts/bench/store.py's business; this checks what a drain hands out.
    total = 20_000
    for start in range(0, total, 2_000):
        await outbox.append(records(2_000, start=start))
    drained: list[LogRecord] = []
    while (batch := await outbox.lease(500)) is not None:
        drained.extend(batch.records)
        assert await outbox.acknowledge(batch.key) == len(batch.records)
    assert drained == records(total) and await outbox.pending_count() == 0


def keyless_entries(lock: str, sequences: range) -> list[LogRecord]:
    return [LogRecord(lock, "audit", 1_700_000_000, f"{n:08x}") for n in sequences]


async def test_each_vendor_leases_only_its_own_records(db: Database, outbox: Outbox) -> None:
    keyless = Outbox(db, "keyless")
    await outbox.append(records(3))
    await keyless.append(keyless_entries("1f0c", range(1, 5)))
    assert (await outbox.pending_count(), await keyless.pending_count()) == (3, 4)
    noke_batch = await outbox.lease(100)
    keyless_batch = await keyless.lease(100)
    assert noke_batch is not None and keyless_batch is not None
    assert noke_batch.records == tuple(records(3))
    assert keyless_batch.records == tuple(keyless_entries("1f0c", range(1, 5)))
    # A leased batch comes back to its own vendor only, with its key.
    assert await keyless.lease(1) == keyless_batch
    assert await keyless.acknowledge(keyless_batch.key) == 4
    assert await outbox.pending() == records(3)


async def test_a_leased_range_keeps_its_records_whatever_is_appended_around_it(
    db: Database, outbox: Outbox
) -> None:
    keyless = Outbox(db, "keyless")
    await outbox.append(records(2))
    await keyless.append(keyless_entries("1f0c", range(1, 3)))  # ids between the Nokē ones
    await outbox.append(records(2, start=2))
    first = await outbox.lease(3)
    assert first is not None and first.records == tuple(records(3))
    await outbox.append(records(2, start=4))  # after the lease: above the range
    await keyless.append(keyless_entries("1f0c", range(3, 5)))
    assert await outbox.lease(100) == first  # still the same three, whatever came since
    second = await outbox.lease(100, busy=first.key)
    assert second is not None and second.records == tuple(records(3, start=3))
    # The older range acknowledged first, then the newer: each deletes only its own rows.
    assert await outbox.acknowledge(first.key) == 3
    assert await outbox.pending() == records(3, start=3)
    await outbox.append(records(1, start=6))  # its id is above every live row's
    assert await outbox.acknowledge(second.key) == 3
    assert await outbox.pending() == records(1, start=6)
    assert await keyless.pending_count() == 4
    third = await outbox.lease(100)
    assert third is not None and third.records == tuple(records(1, start=6))


async def test_a_range_split_per_lock_keeps_every_record(db: Database, outbox: Outbox) -> None:
    other = MacAddress("C7:E6:B0:C6:75:39")
    mixed = [
        r if i % 2 else dataclasses.replace(r, lock_id=other) for i, r in enumerate(records(4))
    ]
    await outbox.append(mixed)
    batch = await outbox.lease(100)
    assert batch is not None
    assert await outbox.split(batch.key) == 2
    per_lock = [await outbox.lease(100)]
    assert per_lock[0] is not None
    rest = await outbox.lease(100, busy=per_lock[0].key)
    assert rest is not None
    assert {r.lock_id for r in per_lock[0].records} == {other}
    assert {r.lock_id for r in rest.records} == {A}
    assert await outbox.acknowledge(per_lock[0].key, rest.key) == 4
    assert await outbox.pending_count() == 0


async def test_log_cursors_move_with_the_records_and_never_back(db: Database) -> None:
    keyless = Outbox(db, "keyless")
    assert await keyless.cursor("1f0c", "audit") == 0
    await keyless.append(keyless_entries("1f0c", range(1, 8)), {("1f0c", "audit"): 7})
    assert await keyless.cursor("1f0c", "audit") == 7
    await keyless.append([], {("1f0c", "audit"): 3})  # a stale visit's cursor is ignored
    assert await keyless.cursor("1f0c", "audit") == 7
    assert await keyless.cursor("1f0c", "system") == 0 and await keyless.cursor("2a", "audit") == 0
    # Uploading does not reset it: the next visit still asks for entries after 7.
    batch = await keyless.lease(100)
    assert batch is not None and await keyless.acknowledge(batch.key) == 7
    assert await keyless.cursor("1f0c", "audit") == 7


class PickyCloud:
    """Takes every record but those of ``refused_lock``, which it refuses with ``error``."""

    def __init__(self, refused_lock: str, error: CloudRejected) -> None:
        self.refused_lock, self.error = refused_lock, error
        self.received: list[LogRecord] = []

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        if any(r.lock_id == self.refused_lock for r in records):
            raise self.error
        self.received.extend(records)


def lock_records(lock: str, count: int) -> list[LogRecord]:
    return [LogRecord(lock, "ab" * 4, 1_790_000_000, f"{lock[:2]}{n:04x}") for n in range(count)]


async def test_a_batch_refused_for_good_is_set_aside_and_the_rest_flow(outbox: Outbox) -> None:
    removed, kept = "C7:E6:B0:C6:75:38", "D1:00:00:00:00:02"
    # Interleaved, and a batch size that does not line up with either lock's records.
    mixed = [
        r
        for pair in zip(lock_records(removed, 2), lock_records(kept, 2), strict=True)
        for r in pair
    ]
    await outbox.append(mixed + lock_records(kept, 4)[2:])
    cloud = PickyCloud(removed, UnknownLock("the lock is not in this company", error_code=7))
    assert await drain_outbox(cloud, outbox, batch_size=3) == 4
    assert sorted(r.payload for r in cloud.received) == sorted(
        r.payload for r in lock_records(kept, 4)
    )
    (failed,) = await outbox.failed()
    assert failed.records == 2 and "not in this company" in failed.failure
    assert await outbox.pending() == lock_records(removed, 2)  # set aside, never deleted
    # Once the cause is fixed the same batch, with the same key, goes again.
    assert await outbox.retry_failed() == 1
    again = await outbox.lease(100)
    assert again is not None and again.key == failed.key
    assert again.records == tuple(lock_records(removed, 2))


@pytest.mark.parametrize(
    "error",
    [
        AuthFailed("the API key was refused", status=401),
        RateLimited("slow down", retry_after=30),
        CloudRejected("bad gateway", status=502),
        CloudRejected("no such route (a wrong base URL)", status=404),
    ],
)
async def test_credentials_limits_and_outages_stop_the_drain_without_setting_aside(
    outbox: Outbox, error: CloudRejected
) -> None:
    await outbox.append(lock_records("C7:E6:B0:C6:75:38", 2))
    with pytest.raises(type(error)):
        await drain_outbox(PickyCloud("C7:E6:B0:C6:75:38", error), outbox)
    assert await outbox.failed() == [] and await outbox.pending_count() == 2
