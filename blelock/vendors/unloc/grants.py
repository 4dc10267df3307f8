"""Unloc's part of access grants: a key for the holder's phone (E.164), with the grant's UTC
start and end and one time span per weekday in the lock's own time zone (Unloc's recurrence).

Keys are made by jobs. The reconciler's apply starts the job and waits a little for it; a job
still running is confirmed on a later run (the key id comes from the job's result). Unloc takes
no idempotency key, so a create interrupted before its job id was kept is found by listing the
phone's keys on the lock and matching start, end and spans. Revoking an expired key (409) or one
already gone (404) is no error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

from blelock.errors import CloudRejected, UsageError
from blelock.grants import AccessConstraints, Item, Target, WeeklyWindow
from blelock.vendors.base import (
    AccessSession,
    AccessTranslation,
    Applied,
    OptionSpec,
    VendorContext,
)

__all__ = ["ACCESS", "UnlocAccess"]

PHONE = "phone"
KEY = "key"
INLINE_JOB_WAIT_S = 10.0
"""How long apply waits for the key's job before leaving it to a later run's confirm."""


def _phone(text: str) -> str:
    from blelock.vendors.unloc.models import check_phone

    try:
        return check_phone(text.strip())
    except UsageError as exc:
        raise ValueError(exc.message) from None


def spans(windows: Sequence[WeeklyWindow]) -> list[dict[str, Any]]:
    """The windows as Unloc's timeSpans (one per weekday: the rules merged them first)."""
    from blelock.vendors.unloc.models import WEEKDAYS

    out = []
    for window in windows:
        for day in sorted(window.days):
            out.append(
                {
                    "weekday": WEEKDAYS[(day + 1) % 7],  # Unloc's week starts on Sunday
                    "startHour": window.start // 60,
                    "startMinute": window.start % 60,
                    "endHour": window.end // 60,
                    "endMinute": window.end % 60,
                }
            )
    return sorted(out, key=lambda span: (WEEKDAYS.index(span["weekday"]), span["startHour"]))


class UnlocAccess(AccessTranslation):
    identities: Sequence[OptionSpec] = (
        OptionSpec(PHONE, "the holder's phone number, E.164 (Unloc keys are given to it)",
                   metavar="+47…", parse=_phone),
    )  # fmt: skip

    def lock_id(self, text: str, *, named: bool) -> str:
        from blelock.vendors.unloc.cloud import _plain_id

        if not named:  # Unloc's ids look like anyone's: only unloc:ID is taken as one
            raise UsageError(f"{text!r}: name an Unloc lock as unloc:LOCK_ID")
        return _plain_id(text)

    async def constraints(self, ctx: VendorContext, lock_id: str) -> AccessConstraints:
        from blelock.vendors.unloc.cloud import UnlocCloud

        async with UnlocCloud.from_settings(ctx.settings, clock=ctx.clock) as cloud:
            locks = {lock.id: lock for lock in await cloud.locks()}
        lock = locks.get(lock_id)
        if lock is None:
            raise UsageError(
                f"Unloc's project has no lock {lock_id}",
                hint="`blelock unloc locks` lists them",
            )
        return AccessConstraints(
            vendor="unloc",
            lock_id=lock_id,
            credential="key",
            identity=PHONE,
            enforces_period=True,
            weekly_windows=True,
            windows_per_day=1,
            local_zone=lock.timezone,
            takes_effect="in the holder's Unloc app once Unloc's job made the key (scheduled "
            "or active)",
            revocation="revoked at Unloc at once; the app drops the key when it next syncs",
            native="one key (lockId, appUserId, UTC start/end, one time span per weekday in "
            "the lock's zone), made by a job",
        )

    def items(self, target: Target, span_from: dt.datetime, span_to: dt.datetime) -> list[Item]:
        schedule = target.schedule
        ends = schedule.ends_at
        if schedule.starts_at >= span_to or (ends is not None and ends <= span_from):
            return []
        native = {
            "lock": target.lock.lock_id,
            "phone": target.holder.identities[PHONE],
            "start": schedule.starts_at.isoformat(),
            "end": None if ends is None else ends.isoformat(),
            "spans": spans(schedule.windows),
        }
        return [Item(KEY, schedule.starts_at, ends, "vendor", native)]

    @contextlib.asynccontextmanager
    async def session(self, ctx: VendorContext) -> AsyncIterator[AccessSession]:
        from blelock.vendors.unloc.cloud import UnlocCloud

        async with UnlocCloud.from_settings(ctx.settings, clock=ctx.clock) as cloud:
            yield _Session(cloud)


def _spans_of(recurrence: Any) -> list[dict[str, Any]] | None:
    if recurrence is None:
        return None
    return [span.model_dump(by_alias=True) for span in recurrence.time_spans]


def _instant(text: object) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(str(text))


class _Session:
    def __init__(self, cloud: Any) -> None:
        self._cloud = cloud

    def _new_key(self, item: Item) -> Any:
        from blelock.vendors.unloc.models import new_key

        native = item.native
        fields: dict[str, Any] = {
            "lockId": native["lock"],
            "appUserId": native["phone"],
            "start": _instant(native["start"]),
        }
        if native["end"] is not None:
            fields["end"] = _instant(native["end"])
        if native["spans"]:
            fields["recurrence"] = {"timeSpans": native["spans"]}
        return new_key(**fields)

    def _matches(self, key: Any, item: Item) -> bool:
        wanted = self._new_key(item)
        return bool(
            key.lock_id == wanted.lock_id
            and key.app_user is not None
            and key.app_user.id == wanted.app_user_id
            and key.start == wanted.start
            and key.end == wanted.end
            and _spans_of(key.recurrence) == _spans_of(wanted.recurrence)
            and key.state not in ("revoked", "expired", "error")
        )

    async def find(self, target: Target, item: Item, taken: frozenset[str]) -> str | None:
        native = item.native
        async for key in self._cloud.list_keys(
            app_user_id=str(native["phone"]), lock_id=str(native["lock"]),
            exclude_states=["revoked"],
        ):  # fmt: skip
            ref = f"key:{key.id}"
            if ref not in taken and self._matches(key, item):
                return ref
        return None

    async def apply(self, target: Target, item: Item) -> Applied:
        from blelock.errors import CloudJobRunning
        from blelock.vendors.unloc.cloud import JobWait

        job_id = await self._cloud.create_keys([self._new_key(item)])
        try:
            job = await self._cloud.wait_for_job(job_id, wait=JobWait(budget_s=INLINE_JOB_WAIT_S))
        except CloudJobRunning:
            return Applied(f"job:{job_id}", confirmed=False)
        return Applied(self._made(job), confirmed=True)

    def _made(self, job: Any) -> str:
        """The key a finished job made, or the vendor's refusal."""
        data = job.result_data
        if job.status != "succeeded" or data is None or data.failed_keys:
            why = job.failure_reason or (
                data.failed_keys[0].reason if data is not None and data.failed_keys else None
            )
            raise CloudRejected(
                f"Unloc's job {job.id} ended {job.status}" + (f": {why}" if why else ""),
                about_content=job.status == "failedValidation",
                status=400 if job.status in ("failedValidation", "failedJob") else None,
            )
        made = [key.id for key in data.created_keys if key.id]
        if not made:
            raise CloudRejected(f"Unloc's job {job.id} succeeded without naming the key")
        return f"key:{made[0]}"

    async def confirm(self, target: Target, item: Item, ref: str) -> str | None:
        kind, _, ident = ref.partition(":")
        if kind == "job":
            job = await self._cloud.job(ident)
            return self._made(job) if job.finished else None
        key = await self._cloud.key(ident)
        if key.state == "creating":
            return None
        if key.state in ("error", "revoked"):
            raise CloudRejected(f"Unloc's key {ident} is {key.state}", status=400)
        return ref

    async def revoke(self, target: Target, item: Item, ref: str | None) -> None:
        if ref is None:
            return
        kind, _, ident = ref.partition(":")
        if kind == "job":
            job = await self._cloud.job(ident)
            if not job.finished:
                from blelock.errors import CloudJobRunning

                raise CloudJobRunning(f"Unloc's job {ident} is still {job.status}; revoked later")
            if job.status != "succeeded" or job.result_data is None:
                return  # it made nothing
            for made in job.result_data.created_keys:
                if made.id:
                    await self._cloud.revoke_key(made.id)
            return
        await self._cloud.revoke_key(ident)  # 404 (gone) and 409 (expired) are no error


ACCESS = UnlocAccess()
