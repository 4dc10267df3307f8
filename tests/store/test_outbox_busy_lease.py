"""A drain forms the next batch while one is on its way: lease(busy=) never hands that one
out again, and a batch leased and not acknowledged still comes back first otherwise."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from blelock.errors import CloudRejected
from blelock.jobs import open_store
from blelock.model import LogRecord, MacAddress
from blelock.vendors.outbox import drain_outbox
from tests.conftest import RecordingCloud, store_settings

MAC = MacAddress("C7:E6:B0:C6:75:38")


async def test_the_batch_in_flight_is_not_leased_again(tmp_path: Path) -> None:
    async with open_store(store_settings(tmp_path)) as store:
        outbox = store.outbox("noke")
        await outbox.append([LogRecord(MAC, f"s{n}", 1, f"50{n:038x}") for n in range(6)])
        first = await outbox.lease(2)
        assert first is not None
        second = await outbox.lease(2, busy=first.key)
        assert second is not None and second.key != first.key
        assert [r.context for r in second.records] == ["s2", "s3"]
        again = await outbox.lease(2)  # nothing in flight: the oldest unacknowledged first
        assert again is not None and again.key == first.key
        acknowledged, third = await outbox.acknowledge_and_lease(first.key, 2, busy=second.key)
        assert acknowledged == 2
        assert third is not None and [r.context for r in third.records] == ["s4", "s5"]
        assert await outbox.pending_count() == 4


class HeldCloud:
    """Takes every batch; the first upload waits until the test lets it through."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.records: list[LogRecord] = []
        self.first_arrived = asyncio.Event()
        self.release_first = asyncio.Event()

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        assert idempotency_key is not None
        self.keys.append(idempotency_key)
        if len(self.keys) == 1:
            self.first_arrived.set()
            await self.release_first.wait()
        self.records.extend(records)


async def test_drains_in_one_process_pass_over_each_others_batches(tmp_path: Path) -> None:
    first_visit = [LogRecord(MAC, f"s{n}", 1, f"50{n:038x}") for n in range(3)]
    second_visit = [LogRecord(MAC, f"t{n}", 2, f"51{n:038x}") for n in range(3)]
    async with open_store(store_settings(tmp_path)) as store:
        outbox = store.outbox("noke")
        cloud = HeldCloud()
        await outbox.append(first_visit)
        first = asyncio.create_task(drain_outbox(cloud, outbox))
        await cloud.first_arrived.wait()  # the first visit's batch is on its way
        await outbox.append(second_visit)
        # The second visit's drain sends its own records, not the batch in flight again.
        assert await drain_outbox(cloud, outbox) == 3
        cloud.release_first.set()
        assert await first == 3
        assert len(cloud.keys) == len(set(cloud.keys)) == 2
        assert sorted(cloud.records, key=lambda r: r.payload) == first_visit + second_visit
        assert await outbox.pending_count() == 0


async def test_drains_that_lease_at_the_same_moment_send_each_batch_once(tmp_path: Path) -> None:
    # Two visits end together: both drains ask the store for a batch before either has heard
    # back. The second must not be handed the batch the first was just given.
    async with open_store(store_settings(tmp_path)) as store:
        outbox = store.outbox("noke")
        await outbox.append([LogRecord(MAC, f"s{n}", 1, f"50{n:038x}") for n in range(3)])
        cloud = RecordingCloud()  # lets the other drain run while a batch is on its way
        done = await asyncio.gather(drain_outbox(cloud, outbox), drain_outbox(cloud, outbox))
        assert sorted(done) == [0, 3]
        assert len(cloud.keys) == len(set(cloud.keys)) == 1
        assert await outbox.pending_count() == 0


class RefusingFirstCloud:
    """Refuses the first record for good (a broken rule); takes the rest."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        if any(record.context == "s0" for record in records):
            raise CloudRejected("the record breaks a rule", status=422)
        self.taken.extend(record.context for record in records)


async def test_a_refused_batch_leaves_the_batches_leased_behind_it_to_the_same_drain(
    tmp_path: Path,
) -> None:
    # While the first group went up, the store leased the next one ahead. The first batch is
    # refused and set aside: the drain goes on with everything else, those leased ahead too.
    async with open_store(store_settings(tmp_path)) as store:
        outbox = store.outbox("noke")
        await outbox.append([LogRecord(MAC, f"s{n}", 1, f"50{n:038x}") for n in range(5)])
        cloud = RefusingFirstCloud()
        assert await drain_outbox(cloud, outbox, batch_size=1, ahead=2) == 4
        assert sorted(cloud.taken) == ["s1", "s2", "s3", "s4"]
        assert [failed.records for failed in await outbox.failed()] == [1]
        assert await outbox.pending_count() == 1


async def test_only_the_acknowledgement_commits_without_waiting_for_the_disk(
    tmp_path: Path,
) -> None:
    # Appends and leases must survive a power cut (a record kept, a key the cloud may have
    # seen); an acknowledgement undone by one only sends the batch again under its key.
    async with open_store(store_settings(tmp_path)) as store:
        outbox = store.outbox("noke")
        levels: dict[str, list[int]] = {}

        def level(conn: sqlite3.Connection) -> int:
            return int(conn.execute("PRAGMA synchronous").fetchone()[0])

        async def commits_at(step: str, run: Callable[[], Awaitable[object]]) -> None:
            # The level each of the step's commits ran at, read inside each of them.
            database = store.database
            real = database._transaction

            def seen(fn: Callable[[sqlite3.Connection], object], *args: bool) -> object:
                return real(
                    lambda conn: (levels.setdefault(step, []).append(level(conn)), fn(conn))[1],
                    *args,
                )

            database._transaction = seen  # type: ignore[method-assign]
            try:
                await run()
            finally:
                del database._transaction

        await commits_at("append", lambda: outbox.append([LogRecord(MAC, "s", 1, "50" * 20)]))
        batch = await outbox.lease(10)
        assert batch is not None
        await commits_at("acknowledge", lambda: outbox.acknowledge(batch.key))
        await commits_at("lease", lambda: outbox.lease(10))
        assert levels == {"append": [2], "acknowledge": [1], "lease": [2]}  # FULL, NORMAL
        assert await store.database.run(level) == 2  # FULL again after the acknowledgement
        assert await outbox.pending_count() == 0
