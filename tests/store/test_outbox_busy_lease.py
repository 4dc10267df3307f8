"""A drain forms the next batch while one is on its way: lease(busy=) never hands that one
out again, and a batch leased and not acknowledged still comes back first otherwise."""

from __future__ import annotations

from pathlib import Path

from blelock.config import load_settings
from blelock.jobs import open_store
from blelock.model import LogRecord, MacAddress

MAC = MacAddress("C7:E6:B0:C6:75:38")


async def test_the_batch_in_flight_is_not_leased_again(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"BLELOCK_DATA_DIR": str(tmp_path), "BLELOCK_KEY_DIR": str(tmp_path)},
        read_file=False,
    )
    async with open_store(settings) as store:
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
