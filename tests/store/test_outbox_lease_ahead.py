"""The drain leases batches several at a time and acknowledges them several per commit: fewer
fsync'd commits, and a drain cut short resends only batches under the keys the cloud already
saw them with, so the cloud keeps every record exactly once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from blelock.errors import CloudUnavailable
from blelock.model import LogRecord
from blelock.store.db import Database
from blelock.store.outbox import Outbox
from blelock.vendors.outbox import drain_outbox

LOCK = "C7:E6:B0:C6:75:38"


def records(count: int) -> list[LogRecord]:
    return [LogRecord(LOCK, f"s{n // 4}", 1, f"50{n:038x}") for n in range(count)]


class KeyedCloud:
    """Keeps each batch under its idempotency key, as the cloud does; can fail at one call."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.kept: dict[str, tuple[LogRecord, ...]] = {}
        self.calls = 0
        self.fail_at = fail_at

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise CloudUnavailable("the uplink went away")
        assert idempotency_key is not None
        # The same key must always mean the same records: otherwise a resend is not harmless.
        assert self.kept.setdefault(idempotency_key, tuple(records)) == tuple(records)


class Counting(Outbox):
    """The store's outbox, counting its write transactions (each one fsync'd commit)."""

    commits = 0

    async def lease_ahead(self, *args: object, **kwargs: object) -> list:  # type: ignore[override,type-arg]
        self.commits += 1
        return await super().lease_ahead(*args, **kwargs)  # type: ignore[arg-type]

    async def acknowledge(self, *keys: str) -> int:
        self.commits += 1
        return await super().acknowledge(*keys)

    async def acknowledge_and_lease_ahead(self, *args: object, **kwargs: object) -> tuple:  # type: ignore[override,type-arg]
        self.commits += 1
        return await super().acknowledge_and_lease_ahead(*args, **kwargs)  # type: ignore[arg-type]


async def test_leased_batches_come_back_first_with_their_keys(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "blelock.db") as db:
        outbox = Outbox(db, "noke")
        await outbox.append(records(10))
        first = await outbox.lease_ahead(2, 3)
        assert [len(b.records) for b in first] == [2, 2, 2]
        again = await outbox.lease_ahead(2, 4, busy=[first[0].key])
        assert [b.key for b in again[:2]] == [b.key for b in first[1:]]
        assert [r.payload for r in again[2].records] == [r.payload for r in records(10)[6:8]]
        acknowledged, rest = await outbox.acknowledge_and_lease_ahead(
            [b.key for b in first], 2, 8, busy=[again[2].key]
        )
        assert acknowledged == 6
        assert [[r.payload for r in b.records] for b in rest] == [
            [r.payload for r in records(10)[8:10]]
        ]


async def test_a_drain_commits_once_per_group_of_batches(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "blelock.db") as db:
        outbox = Counting(db, "noke")
        await outbox.append(records(20))
        cloud = KeyedCloud()
        assert await drain_outbox(cloud, outbox, batch_size=2, ahead=4) == 20
        # 10 batches in groups of 4: the first lease, one per group while it is sent (the
        # last finds nothing more), the last group's acknowledgement. One a batch before.
        assert outbox.commits == 5
        assert [r for kept in cloud.kept.values() for r in kept] == records(20)
        assert await outbox.pending_count() == 0


@pytest.mark.parametrize("fail_at", [2, 5, 6, 9])
async def test_a_drain_cut_short_resends_only_under_the_same_keys(
    tmp_path: Path, fail_at: int
) -> None:
    async with await Database.open(tmp_path / "blelock.db") as db:
        outbox = Outbox(db, "noke")
        await outbox.append(records(20))
        cloud = KeyedCloud(fail_at=fail_at)
        with pytest.raises(CloudUnavailable):
            await drain_outbox(cloud, outbox, batch_size=2, ahead=4)
        assert await outbox.pending_count() > 0
        cloud.fail_at = None
        await drain_outbox(cloud, outbox, batch_size=2, ahead=4)
        assert await outbox.pending_count() == 0
        # Every record kept by the cloud once (a resend came under its first key), in order.
        assert [r for kept in cloud.kept.values() for r in kept] == records(20)
