"""A process that fills the outbox and drains it to a stand-in cloud, for the kill -9 tests.

    python outbox_worker.py DB CLOUD ACKED --records N --chunk C --batch B [--drain-only]
                                           [--die-after-upload K] [--via-drain]

Fill: append the records chunk by chunk; after each append returns, note the chunk in ACKED
(fsync'd): that is the moment a user would have been told "kept".
Drain: lease → "upload" (one JSON file per batch in the directory CLOUD, fsync'd: the cloud has
it) → acknowledge, until the outbox is empty. ``--die-after-upload K`` SIGKILLs this process right
after the K-th upload, before its acknowledgement: the worst moment, deterministically.
``--via-drain``: drain with the product's ``drain_outbox`` instead (batches leased eight at a
time, the last group's acknowledgement and the next group's lease one commit, run while the
current group is posted), so a kill lands between its combined commit and the posts too.

Prints ``started`` once its imports are done, so the parent's random delay measures work, not
interpreter start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from blelock.model import LogRecord, MacAddress
from blelock.store.db import Database
from blelock.store.outbox import Batch, Outbox
from blelock.vendors.outbox import drain_outbox


def make_records(count: int) -> list[LogRecord]:
    """Deterministic records; the parent rebuilds the same list to check the cloud."""
    return [
        LogRecord(
            lock_id=MacAddress(f"C7:E6:B0:00:{i // 256 % 256:02X}:{i % 256:02X}"),
            context=f"{i % 7:04x}" * 4,
            received_at=1_790_000_000 + i,
            payload=f"{i:08x}" + "5a" * 8,
        )
        for i in range(count)
    ]


def _append_line(path: Path, line: str) -> None:
    # One small write(2) with O_APPEND: a SIGKILL cannot tear a line shorter than a page.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class FileCloud:
    """The stand-in cloud as an uploader for ``drain_outbox``."""

    def __init__(self, cloud: Path, die_after_upload: int) -> None:
        self.cloud = cloud
        self.die_after_upload = die_after_upload
        self.uploads = 0

    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        assert idempotency_key is not None
        _upload(self.cloud, Batch(idempotency_key, tuple(records)))
        self.uploads += 1
        if self.uploads == self.die_after_upload:
            os.kill(os.getpid(), signal.SIGKILL)


def _upload(cloud: Path, batch: Batch) -> None:
    """The stand-in cloud receives an upload whole or not at all: written aside, fsync'd, then
    renamed into place (a batch is larger than a page, and Linux may stop a write to a regular
    file between pages when SIGKILL arrives). Uploads are numbered in arrival order."""
    cloud.mkdir(exist_ok=True)
    body = {
        "key": batch.key,
        "records": [[r.lock_id, r.context, r.received_at, r.payload] for r in batch.records],
    }
    draft = cloud / f".{os.getpid()}.draft"
    draft.write_text(json.dumps(body))
    with draft.open("rb") as stream:
        os.fsync(stream.fileno())
    draft.rename(cloud / f"{len(list(cloud.glob('*.json'))):06d}.json")
    fd = os.open(cloud, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def main(args: argparse.Namespace) -> None:
    db = await Database.open(Path(args.db))
    outbox = Outbox(db, "noke")
    if not args.drain_only:
        records = make_records(args.records)
        for start in range(0, len(records), args.chunk):
            await outbox.append(records[start : start + args.chunk])
            _append_line(Path(args.acked), str(start // args.chunk))
    if args.via_drain:
        await drain_outbox(
            FileCloud(Path(args.cloud), args.die_after_upload), outbox, batch_size=args.batch
        )
        print("pending", await outbox.pending_count(), flush=True)
        await db.close()
        return
    uploads = 0
    while (batch := await outbox.lease(args.batch)) is not None:
        _upload(Path(args.cloud), batch)
        uploads += 1
        if uploads == args.die_after_upload:
            os.kill(os.getpid(), signal.SIGKILL)
        await outbox.acknowledge(batch.key)
    print("pending", await outbox.pending_count(), flush=True)
    await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("cloud")
    parser.add_argument("acked")
    parser.add_argument("--records", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--drain-only", action="store_true")
    parser.add_argument("--die-after-upload", type=int, default=0)
    parser.add_argument("--via-drain", action="store_true")
    print("started", flush=True)
    asyncio.run(main(parser.parse_args()))
