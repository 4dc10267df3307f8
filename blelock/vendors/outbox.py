"""The outbox drain, the same for every vendor: each batch goes up through the vendor's uploader.

The drain is at-least-once on our side and exactly-once at the cloud: a batch keeps the same
idempotency key until the cloud acknowledged it, so a retry after a lost acknowledgement (or a
crash between sending and deleting) is recognised there, and records are deleted only after it.
A batch the cloud refuses for good is set aside with the reason, so it cannot hold up the
records behind it; bad credentials, rate limits and outages stop the drain instead (they are
not about the batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from blelock.cloud._policy import is_transient
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
    async def lease(self, limit: int, *, busy: str | None = None) -> Batch | None: ...
    async def acknowledge(self, batch_key: str) -> int: ...
    async def acknowledge_and_lease(
        self, batch_key: str, limit: int, *, busy: str | None = None
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
    Batches the cloud refuses for good are set aside (see ``Outbox.failed``).

    While a batch is on its way, the store acknowledges the one before (the cloud has it) and
    forms the next, in one transaction: the disk's work hides behind the network's. A batch
    formed so waits its turn as any leased batch does (first in line next time)."""
    uploaded = 0
    with lock_context(None, "upload logs"):
        batch = await _lease(outbox, batch_size)
        sent: Batch | None = None  # the cloud has it; its acknowledgement is still to commit
        while batch is not None:
            ahead = asyncio.ensure_future(_advance(outbox, sent, batch_size, busy=batch.key))
            try:
                await cloud.upload(batch.records, idempotency_key=batch.key)
            except (CloudRejected, UnsendableRecord) as exc:
                if not refuses_the_batch(exc):
                    ahead.cancel()  # the store's work is whole or undone; either is safe
                    raise
                uploaded += await _settled(outbox, ahead)
                if len({record.lock_id for record in batch.records}) > 1:
                    await outbox.split(batch.key)  # find which lock it was, one at a time
                else:
                    await outbox.fail(batch.key, exc.one_line())
                sent, batch = None, await _lease(outbox, batch_size)
                continue
            except BaseException:
                ahead.cancel()
                raise
            try:
                acknowledged, following = await ahead
            except StoreDamaged:
                # Nothing of it committed. Set the damaged rows aside, then start again from
                # what is leased: resent batches keep their keys, so the cloud takes them once.
                await _set_damage_aside(outbox)
                sent, batch = None, await _lease(outbox, batch_size)
                continue
            uploaded += acknowledged
            if on_progress is not None and acknowledged:
                on_progress(uploaded)
            sent, batch = batch, following
        if sent is not None:
            try:
                uploaded += await outbox.acknowledge(sent.key)
            except StoreDamaged:
                # The cloud has the batch; a damaged row stops SQLite deleting it. Set the
                # damaged rows aside, then the same key goes again (the cloud dedupes it).
                await _set_damage_aside(outbox)
                before = uploaded
                return before + await drain_outbox(
                    cloud,
                    outbox,
                    batch_size=batch_size,
                    on_progress=None if on_progress is None else lambda n: on_progress(before + n),
                )
            if on_progress is not None:
                on_progress(uploaded)
    return uploaded


async def _advance(
    outbox: Outbox, sent: Batch | None, batch_size: int, *, busy: str
) -> tuple[int, Batch | None]:
    if sent is None:
        return 0, await outbox.lease(batch_size, busy=busy)
    return await outbox.acknowledge_and_lease(sent.key, batch_size, busy=busy)


async def _settled(outbox: Outbox, ahead: asyncio.Future[tuple[int, Batch | None]]) -> int:
    """How many the store's work acknowledged; after damage (none of it committed), the
    damaged rows set aside and 0. A batch it formed stays leased, first in line."""
    try:
        return (await ahead)[0]
    except StoreDamaged:
        await _set_damage_aside(outbox)
        return 0


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
