"""A damaged outbox row never blocks uploads: it is found, set aside with the reason, the rest
go up, and ``blelock logs`` / ``blelock store check`` / the kiosk's health say so.

The damage is real: one hex character of a payload changed in the closed file on disk, so the
table and its UNIQUE index disagree (``quick_check`` at open does not notice)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from blelock.cli import main
from blelock.model import LogRecord
from blelock.store import outbox as outbox_module
from blelock.store.db import Database
from blelock.store.outbox import Outbox
from blelock.vendors.outbox import drain_outbox

LOCK = "C7:E6:B0:C6:75:38"
DAMAGED = "00000003" + "cafe" * 6


def _records(count: int) -> list[LogRecord]:
    return [
        LogRecord(LOCK, "ab" * 4, 1_790_000_000 + i, f"{i:08x}" + "cafe" * 6) for i in range(count)
    ]


class Cloud:
    """Keeps each batch once by its idempotency key, as the vendors' clouds do."""

    def __init__(self) -> None:
        self.batches: dict[str | None, list[LogRecord]] = {}

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        self.batches.setdefault(idempotency_key, list(records))

    @property
    def received(self) -> list[LogRecord]:
        return [record for batch in self.batches.values() for record in batch]


def _damage(path: Path, which: int = 0) -> None:
    """Change one hex digit of DAMAGED's ``which``-th copy in the file (table or index)."""
    data = bytearray(path.read_bytes())
    at = -1
    for _ in range(which + 1):
        at = data.find(DAMAGED.encode(), at + 1)
    assert at >= 0
    data[at + 7] = ord("f")  # 00000003… becomes 0000000f…, a payload no record has
    path.write_bytes(data)


async def _store_with_damage(path: Path, count: int, which: int = 0) -> None:
    async with await Database.open(path) as db:
        await Outbox(db, "noke").append(_records(count))
    await asyncio.to_thread(_damage, path, which)


@pytest.mark.parametrize("which", [0, 1], ids=["row-damaged", "index-entry-damaged"])
async def test_a_damaged_row_is_set_aside_and_the_rest_upload(tmp_path: Path, which: int) -> None:
    path = tmp_path / "blelock.db"
    await _store_with_damage(path, 10, which)
    async with await Database.open(path) as db:  # the open check does not see it
        outbox = Outbox(db, "noke")
        cloud = Cloud()
        assert await drain_outbox(cloud, outbox, batch_size=4) == 9
        assert len(cloud.received) == 9
        sent = {r.payload[:8] for r in cloud.received}
        assert "00000003" not in sent and "0000000f" not in sent
        (failed,) = await outbox.failed()
        assert failed.records == 1 and "damaged" in failed.failure
        assert await outbox.pending_count() == 1  # kept, never deleted
        # The next upload does not stop on it either.
        assert await drain_outbox(cloud, outbox) == 0
        assert await outbox.retry_failed() == 1
        if which == 0:  # the row itself is damaged: set aside again, never sent
            assert await drain_outbox(cloud, outbox) == 0
            assert len(await outbox.failed()) == 1 and await outbox.pending_count() == 1
        else:  # its index entry was: the index was rebuilt from the intact row, so it goes
            assert await drain_outbox(cloud, outbox) == 1
            assert await outbox.failed() == [] and await outbox.pending_count() == 0


async def test_damage_sqlite_reports_after_the_upload_is_set_aside_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Damage the lease did not see (here: its check blinded, the damage made after the batch
    was formed) is found once SQLite reports it at the acknowledgement, and the rest go."""
    path = tmp_path / "blelock.db"
    async with await Database.open(path) as db:
        outbox = Outbox(db, "noke")
        await outbox.append(_records(6))
        assert await outbox.lease(100) is not None  # formed while the store was sound
    await asyncio.to_thread(_damage, path)
    monkeypatch.setattr(outbox_module, "_sound_records", outbox_module._batch_records_of)
    async with await Database.open(path) as db:
        outbox = Outbox(db, "noke")
        cloud = Cloud()
        assert await drain_outbox(cloud, outbox) == 5
        (failed,) = await outbox.failed()
        assert failed.records == 1 and "damaged" in failed.failure


def test_blelock_logs_and_store_check_tell_the_user(
    private_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = private_store / "data" / "blelock.db"
    assert main(["store", "check"]) == 0  # a new store is sound
    assert "sound" in capsys.readouterr().out
    asyncio.run(_store_with_damage(path, 5))
    assert main(["store", "check"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out and any("outbox" in line and "index" in line for line in out), out
    assert main(["store", "check", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["sound"] is False and report["problems"]

    async def drain() -> None:
        async with await Database.open(path) as db:
            assert await drain_outbox(Cloud(), Outbox(db, "noke")) == 4

    asyncio.run(drain())
    assert main(["logs", "--json"]) == 0
    logs = json.loads(capsys.readouterr().out)
    (aside,) = logs["set_aside"]
    assert aside["records"] == 1 and "damaged" in aside["reason"]
