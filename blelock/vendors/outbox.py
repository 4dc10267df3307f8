"""The outbox drain, the same for every vendor: each batch goes up through the vendor's uploader.

The drain is at-least-once on our side and exactly-once at the cloud: a batch keeps the same
idempotency key until the cloud acknowledged it, so a retry after a lost acknowledgement (or a
crash between sending and deleting) is recognised there, and records are deleted only after it.
A batch the cloud refuses for good is set aside with the reason, so it cannot hold up the
records behind it; bad credentials, rate limits and outages stop the drain instead (they are
not about the batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from blelock.cloud._http import is_transient
from blelock.errors import (
    AuthFailed,
    CloudRejected,
    RateLimited,
    StoreDamaged,
    UnknownLock,
    UnsendableRecord,
    lock_context,
)
from blelock.model import LogRecord
from blelock.vendors.base import Uploader

__all__ = ["UPLOAD_BATCH", "drain_outbox", "refuses_the_batch"]

UPLOAD_BATCH = 500
"""Records per upload: ~60 KB of JSON, small enough for a flaky uplink to get through."""


class Batch(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def records(self) -> Sequence[LogRecord]: ...


class Outbox(Protocol):
    async def lease(self, limit: int) -> Batch | None: ...
    async def acknowledge(self, batch_key: str) -> int: ...
    async def acknowledge_and_lease(
        self, batch_key: str, limit: int
    ) -> tuple[int, Batch | None]: ...
    async def split(self, batch_key: str) -> int: ...
    async def fail(self, batch_key: str, failure: str) -> None: ...
    async def pending_count(self) -> int: ...
    async def set_aside_damaged(self) -> int: ...


async def drain_outbox(
    cloud: Uploader,
    outbox: Outbox,
    *,
    batch_size: int = UPLOAD_BATCH,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Upload every pending record, batch by batch; returns how many were acknowledged.
    Batches the cloud refuses for good are set aside (see ``Outbox.failed``)."""
    uploaded = 0
    with lock_context(None, "upload logs"):
        batch = await _lease(outbox, batch_size)
        while batch is not None:
            try:
                await cloud.upload(batch.records, idempotency_key=batch.key)
            except (CloudRejected, UnsendableRecord) as exc:
                if not refuses_the_batch(exc):
                    raise
                if len({record.lock_id for record in batch.records}) > 1:
                    await outbox.split(batch.key)  # find which lock it was, one at a time
                else:
                    await outbox.fail(batch.key, exc.one_line())
                batch = await _lease(outbox, batch_size)
                continue
            try:
                # One commit a batch: this one's records go, the next batch is formed.
                acknowledged, batch = await outbox.acknowledge_and_lease(batch.key, batch_size)
            except StoreDamaged:
                # The cloud has the batch; a damaged row stops SQLite deleting it. Set the
                # damaged rows aside, then the same key goes again (the cloud dedupes it) and
                # the rest are acknowledged.
                await _set_damage_aside(outbox)
                batch = await _lease(outbox, batch_size)
                continue
            uploaded += acknowledged
            if on_progress is not None:
                on_progress(uploaded)
    return uploaded


async def _lease(outbox: Outbox, batch_size: int) -> Batch | None:
    while True:
        try:
            return await outbox.lease(batch_size)
        except StoreDamaged:
            await _set_damage_aside(outbox)


async def _set_damage_aside(outbox: Outbox) -> None:
    """After SQLite reported damage: set the damaged rows aside, or stop when none of it is
    in this stream's rows (the damage then is elsewhere, and retrying would not help)."""
    try:
        found = await outbox.set_aside_damaged()
    except StoreDamaged:
        raise
    if not found:
        raise StoreDamaged(
            "the store is damaged and none of it is in this vendor's pending records; "
            "nothing was uploaded past it"
        )


REFUSED_STATUSES = frozenset({400, 409, 422})
"""HTTP answers about the request's content (a problem+json naming a broken rule, say)."""


def refuses_the_batch(exc: CloudRejected | UnsendableRecord) -> bool:
    """The cloud will never take these records as they are (an unknown lock, a record it
    cannot read, a record we cannot even send): retrying cannot help, and holding the queue
    would strand every later record. Anything else (credentials, a wrong URL's 404, limits,
    outages) stops the drain instead."""
    if isinstance(exc, UnsendableRecord):
        return True
    if is_transient(exc) or isinstance(exc, AuthFailed | RateLimited):
        return False
    return isinstance(exc, UnknownLock) or exc.status in REFUSED_STATUSES or exc.about_content
