"""A visit whose records go up right after it keeps them and forms their batch in one commit
(one wait for the disk, which on a Pi's SD card is milliseconds), then sends that batch first;
what it kept and did not send is left leased, first in line for the next drain."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from blelock.jobs import context, open_store
from blelock.model import LogRecord, MacAddress, parse_mac
from blelock.store import outbox as outbox_module
from blelock.vendors import outbox as outbox_drain
from blelock.vendors.base import OperationRequest

# Imported now: the visit imports it lazily, and inside the loop an import is a blocking call.
from blelock.vendors.noke import cloud as _cloud  # noqa: F401
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from blelock.vendors.outbox import KeptForUpload, drain_outbox
from simulators.world import RunningWorld
from tests.conftest import RecordingCloud, settings_for, store_settings

MAC = MacAddress("C7:E6:B0:C6:75:38")
RECORDS = [LogRecord(MAC, "s", 2, f"50{n:038x}") for n in range(3)]
"""A visit's records."""


async def test_kept_records_are_sent_by_their_visit_and_passed_over_by_other_drains(
    tmp_path: Path,
) -> None:
    async with open_store(store_settings(tmp_path)) as store:
        outbox = store.outbox("noke")
        cloud = RecordingCloud()
        async with KeptForUpload(outbox) as kept:
            await kept.append(RECORDS)
            assert await outbox.pending_count() == 3  # kept before anything is sent
            assert await drain_outbox(cloud, outbox) == 0  # the visit's own, on their way
            assert await kept.upload(cloud) == 3
        assert cloud.records == RECORDS and len(cloud.keys) == 1
        assert await outbox.pending_count() == 0


async def test_what_a_visit_kept_and_did_not_send_goes_first_under_its_key(
    tmp_path: Path,
) -> None:
    older = [LogRecord(MAC, "r", 1, f"49{n:038x}") for n in range(2)]
    async with open_store(store_settings(tmp_path)) as store:
        outbox = store.outbox("noke")
        await outbox.append(older)  # an offline visit's, still to go up
        async with KeptForUpload(outbox) as kept:
            await kept.append(RECORDS)
        # The visit failed before its upload: its batch is still leased, oldest records first.
        again = await outbox.lease(500)
        assert again is not None and list(again.records) == older + RECORDS
        cloud = RecordingCloud()
        assert await drain_outbox(cloud, outbox) == 5
        assert cloud.keys == [again.key]


async def test_an_online_visit_waits_for_the_disk_once_before_its_upload(
    running_world: RunningWorld,
) -> None:
    settings = settings_for(running_world)
    world = running_world.world
    mac = parse_mac(world.locks[0].mac)
    # Each durable commit that wrote something, with the uploads the cloud had seen then.
    waits: list[int] = []
    async with open_store(settings) as store:
        database = store.database
        real = database._transaction

        def counted(
            fn: Callable[[sqlite3.Connection], object], write: bool, durable: bool = True
        ) -> object:
            def observed(conn: sqlite3.Connection) -> object:
                before = conn.total_changes
                result = fn(conn)
                if durable and conn.total_changes > before:
                    waits.append(world.cloud.requests["upload"])
                return result

            return real(observed, write, durable)

        database._transaction = counted  # type: ignore[method-assign,assignment]
        ctx = context(NOKE, settings, store)
        result = await NOKE.run(ctx, mac, OperationRequest("unlock", "online"))
    assert result.online and result.logs_uploaded
    assert world.cloud.requests["upload"] == 1
    assert waits.count(0) == 1  # the records kept and their batch formed: one commit


async def test_damage_the_lease_runs_into_does_not_cost_the_visit_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite reports damage while the batch is formed: that transaction is undone whole, so
    # the records are kept on their own instead, and the drain deals with the damage.

    def damaged(*args: object) -> tuple[LogRecord, ...]:
        error = sqlite3.DatabaseError("database disk image is malformed")
        error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT  # as SQLite's own carries it
        raise error

    async with open_store(store_settings(tmp_path)) as store:
        outbox = store.outbox("noke")
        with monkeypatch.context() as patched:
            patched.setattr(outbox_module, "_sound_records", damaged)
            async with KeptForUpload(outbox) as kept:
                await kept.append(RECORDS)
        assert await outbox.pending(10) == RECORDS
        cloud = RecordingCloud()
        assert await drain_outbox(cloud, outbox) == 3


async def test_a_visit_cancelled_while_its_keeping_waits_still_keeps_its_records(
    tmp_path: Path,
) -> None:
    # Another drain is forming its batch, so the keeping waits its turn; the visit is
    # cancelled meanwhile (a kiosk shutting down). The lock gave the records: they are kept.
    async with open_store(store_settings(tmp_path)) as store:
        outbox = store.outbox("noke")
        leasing = outbox_drain._drains(outbox).leasing
        async with KeptForUpload(outbox) as kept, leasing:  # the other drain's lease
            visit = asyncio.ensure_future(kept.append(RECORDS))
            await asyncio.sleep(0)  # the visit reaches its keeping and waits
            visit.cancel()
            with pytest.raises(asyncio.CancelledError):
                await visit
        # The sink's exit waited for the keeping, which had its turn once the lock was free.
        assert await outbox.pending(10) == RECORDS
        cloud = RecordingCloud()  # not left marked in flight: the next drain sends them
        assert await drain_outbox(cloud, outbox) == 3
