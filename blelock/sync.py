"""Back in coverage: refresh the offline keys, then hand every kept log record to the cloud.

The drain is at-least-once on our side and exactly-once at the cloud: a batch keeps the same
idempotency key until the cloud acknowledged it, so a retry after a lost acknowledgement (or a
crash between sending and deleting) is recognised there, and records are deleted only after it.
A batch the cloud refuses for good is set aside with the reason, so it cannot hold up the
records behind it; bad credentials, rate limits and outages stop the drain instead (they are
not about the batch).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from blelock.cloud._http import is_transient
from blelock.errors import (
    AuthFailed,
    CloudRejected,
    RateLimited,
    UnknownLock,
    UnsendableRecord,
    lock_context,
)
from blelock.model import LogRecord, MacAddress, OfflineGrant
from blelock.store.keys import KeySyncSummary

__all__ = ["drain_outbox", "refresh_offline_keys", "refuses_the_batch"]

UPLOAD_BATCH = 500
"""Records per upload: ~60 KB of JSON, small enough for a flaky uplink to get through."""


class KeyCloud(Protocol):
    async def offline_keys(
        self, macs: Sequence[MacAddress] | None = None, *, issue_for: Sequence[str] = ()
    ) -> list[OfflineGrant]: ...


class UploadCloud(Protocol):
    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None: ...


class Batch(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def records(self) -> Sequence[LogRecord]: ...


class Outbox(Protocol):
    async def lease(self, limit: int) -> Batch | None: ...
    async def acknowledge(self, batch_key: str) -> int: ...
    async def split(self, batch_key: str) -> int: ...
    async def fail(self, batch_key: str, failure: str) -> None: ...
    async def pending_count(self) -> int: ...


class KeyCache(Protocol):
    async def apply_sync(
        self, grants: Sequence[OfflineGrant], *, scope_macs: Collection[MacAddress] | None
    ) -> KeySyncSummary: ...


async def refresh_offline_keys(
    cloud: KeyCloud,
    keys: KeyCache,
    *,
    macs: Sequence[MacAddress] | None = None,
    issue_for: Sequence[str] = (),
) -> KeySyncSummary:
    """Fetch (issuing where asked) and store the keys; those the cloud no longer lists within
    ``macs`` (all locks when None) are marked revoked in the cache."""
    with lock_context(macs[0] if macs and len(macs) == 1 else None, "sync offline keys"):
        grants = await cloud.offline_keys(macs, issue_for=issue_for)
        return await keys.apply_sync(grants, scope_macs=macs)


async def drain_outbox(
    cloud: UploadCloud,
    outbox: Outbox,
    *,
    batch_size: int = UPLOAD_BATCH,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Upload every pending record, batch by batch; returns how many were acknowledged.
    Batches the cloud refuses for good are set aside (see ``Outbox.failed``)."""
    uploaded = 0
    with lock_context(None, "upload logs"):
        while (batch := await outbox.lease(batch_size)) is not None:
            try:
                await cloud.upload(batch.records, idempotency_key=batch.key)
            except (CloudRejected, UnsendableRecord) as exc:
                if not refuses_the_batch(exc):
                    raise
                if len({record.lock_id for record in batch.records}) > 1:
                    await outbox.split(batch.key)  # find which lock it was, one at a time
                else:
                    await outbox.fail(batch.key, exc.one_line())
                continue
            uploaded += await outbox.acknowledge(batch.key)
            if on_progress is not None:
                on_progress(uploaded)
    return uploaded


REFUSED_STATUSES = frozenset({400, 409, 422})
"""HTTP answers about the request's content (Keyless: problem+json naming a broken rule)."""
REFUSED_ERROR_CODES = frozenset({3, 6, 7})
"""Nokē envelopes about the content: bad input, lock not in the company, lock not found."""


def refuses_the_batch(exc: CloudRejected | UnsendableRecord) -> bool:
    """The cloud will never take these records as they are (an unknown lock, a record it
    cannot read, a record we cannot even send): retrying cannot help, and holding the queue
    would strand every later record. Anything else (credentials, a wrong URL's 404, limits,
    outages) stops the drain instead."""
    if isinstance(exc, UnsendableRecord):
        return True
    if is_transient(exc) or isinstance(exc, AuthFailed | RateLimited):
        return False
    return (
        isinstance(exc, UnknownLock)
        or exc.status in REFUSED_STATUSES
        or exc.error_code in REFUSED_ERROR_CODES
    )
