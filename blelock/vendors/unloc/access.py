"""Giving a phone a key and taking it away, over :class:`UnlocCloud`: what the plugin (the
kiosk's routes), the command line and the demo all do, in one place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from blelock.errors import CloudRejected
from blelock.model import PhoneKeyRequest
from blelock.vendors.unloc.cloud import JobWait, UnlocCloud
from blelock.vendors.unloc.models import Job, Key, NewKey, new_key, spans_from_windows

__all__ = ["IssuedKeys", "issue_keys", "key_from_request", "raise_unless_made"]


@dataclass(frozen=True, slots=True)
class IssuedKeys:
    job: Job
    keys: Sequence[Key]
    """Each key the job made or failed, as Unloc lists it now (its state)."""
    failed: Sequence[tuple[str | None, str | None]]
    """(key id, reason) for each key the job reports failed."""


def key_from_request(request: PhoneKeyRequest) -> NewKey:
    """The vendor-neutral request as Unloc's key; checked before anything is sent."""
    recurrence = spans_from_windows(request.weekly) if request.weekly else None
    return new_key(
        lockId=request.lock_id,
        appUserId=request.phone,
        start=request.start,
        end=request.end,
        recurrence=recurrence,
    )


async def issue_keys(
    cloud: UnlocCloud,
    keys: Sequence[NewKey],
    *,
    wait: JobWait | None = None,
    on_poll: Callable[[Job], None] | None = None,
) -> IssuedKeys:
    """Create the batch, wait for its job to end, and read back each key's state."""
    job_id = await cloud.create_keys(keys)
    job = await cloud.wait_for_job(job_id, wait=wait, on_poll=on_poll)
    data = job.result_data
    ids = [r.id for r in (data.created_keys + data.failed_keys if data else ()) if r.id]
    made = [await cloud.key(key_id) for key_id in ids]
    failed = [(r.id, r.reason) for r in (data.failed_keys if data else ())]
    return IssuedKeys(job, made, failed)


def raise_unless_made(issued: IssuedKeys) -> None:
    """A CloudRejected saying why, when the job did not succeed or a key failed."""
    job = issued.job
    if job.status != "succeeded":
        reason = f": {job.failure_reason}" if job.failure_reason else ""
        raise CloudRejected(
            f"Unloc's job {job.id} ended {job.status}{reason}; no key was made",
            hint="try again later; if it persists, Unloc's administrator must look at the lock "
            "connection",
        )
    if issued.failed:
        key_id, why = issued.failed[0]
        raise CloudRejected(
            f"Unloc could not make key {key_id}" + (f": {why}" if why else ""),
            hint="keys in error need Unloc's administrator (often the vendor lock system is "
            "unreachable for a while)",
        )
