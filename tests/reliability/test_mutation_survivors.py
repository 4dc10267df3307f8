"""The rest of the tests a mutation run showed missing (issue 17, item 9): each pins one rule
a hand-made mutant broke without any test noticing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from blelock.errors import CloudRejected
from blelock.model import LogRecord
from blelock.store import crypto
from blelock.store.crypto import DATA_KEY_FILE, DataKey
from blelock.store.db import Database
from blelock.store.outbox import Outbox
from blelock.vendors.outbox import drain_outbox

LOCK = "C7:E6:B0:C6:75:38"


class RefusingCloud:
    def __init__(self, status: int) -> None:
        self.status = status
        self.calls = 0

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        self.calls += 1
        raise CloudRejected(f"the cloud answered {self.status}", status=self.status)


@pytest.mark.parametrize("status", [400, 409, 422])
async def test_a_status_about_the_batch_sets_it_aside(tmp_path: Path, status: int) -> None:
    async with await Database.open(tmp_path / "blelock.db") as db:
        outbox = Outbox(db, "noke")
        await outbox.append([LogRecord(LOCK, "ab", 1, f"{n:04x}") for n in range(3)])
        cloud = RefusingCloud(status)
        assert await drain_outbox(cloud, outbox) == 0  # the drain goes on past it
        (failed,) = await outbox.failed()
        assert failed.records == 3 and str(status) in failed.failure
        assert await outbox.pending_count() == 3 and cloud.calls == 1


@pytest.mark.parametrize("status", [404, 500, 502, 503, 504])
async def test_a_status_not_about_the_batch_stops_the_drain(tmp_path: Path, status: int) -> None:
    async with await Database.open(tmp_path / "blelock.db") as db:
        outbox = Outbox(db, "noke")
        await outbox.append([LogRecord(LOCK, "ab", 1, f"{n:04x}") for n in range(3)])
        with pytest.raises(CloudRejected) as caught:
            await drain_outbox(RefusingCloud(status), outbox)
        assert caught.value.status == status
        assert await outbox.failed() == [] and await outbox.pending_count() == 3


def test_the_data_key_file_is_fsynced_before_its_name_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "keys"
    seen: list[tuple[str, str]] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def link(src: str | Path, dst: str | Path) -> None:
        seen.append(("link", str(dst)))
        real_link(src, dst)

    monkeypatch.setattr(crypto.os, "fsync", fsync)
    monkeypatch.setattr(crypto.os, "link", link)
    key = DataKey.load(directory, {}, create=True)
    final = str(directory / DATA_KEY_FILE)
    kinds = [kind for kind, _ in seen]
    assert "link" in kinds
    linked = kinds.index("link")
    drafts = [path for kind, path in seen[:linked] if kind == "fsync"]
    # The key's bytes reached the disk (under the draft name) before the name appeared...
    assert any(Path(p).name.startswith(f".{DATA_KEY_FILE}.") for p in drafts), seen
    # ...and the directory entry after it.
    assert ("fsync", str(directory)) in seen[linked + 1 :], seen
    assert seen[linked] == ("link", final)
    assert DataKey.load(directory, {}, create=False).seal  # the same key reads back
    assert key.source.endswith(final)
