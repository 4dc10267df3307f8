"""The simulated Core API's ``/activity/``: activity built from the records the cloud received.

Each authentic record uploaded for the first time becomes one entry (the vendor doc's shape:
``lock_mac``, ``action``, ``recorded_time``, ``range_date_start``, ``range_date_end``,
``tracking_key``). Our reading of what the doc leaves open:

* ``recorded_time`` is the upload's ``received_time`` (the doc: "date that the log was received
  by the mobile device").
* An online unlock's time is known: the range is the instant the cloud issued that session's
  commands, start = end. An offline unlock or a quick click happened at some time the cloud can
  only bound (the doc names exactly these two): from the cloud's last contact with the lock
  before that session (an earlier session's command batch or record; the lock's registration
  if none) to the ``received_time`` of the record.
* Action names: ``unlocked``, ``unshackled``, ``offline_unlocked``, ``quick_click_unlocked``,
  ``locked`` (the lock's late record after a batch), ``setup``, ``unlock_failed``. The doc lists
  only "unlocked, locked" as examples (and its request example filters on ``unlock``): filters
  match these names exactly.
* ``before`` / ``after`` keep the entries whose range overlaps the window (a ranged event that
  may have happened inside it is shown). Newest first, at most :data:`MOST_ENTRIES`.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, StrictStr, field_validator
from starlette.responses import JSONResponse

from blelock.vendors.noke.protocol import LockRecord, RecordEvent, RecordType, ResultCode
from simulators.noke_cloud import Mac, _Body, _envelope, _parse, _Refusal

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulators.noke_cloud import NokeCloudState, RegisteredLock, UploadedRecord

__all__ = ["ActivityEntry", "handle_activity", "note_contact", "record_activity"]

MOST_ENTRIES = 1000
"""Entries one answer holds (newest first); the doc names no paging."""


@dataclass(frozen=True)
class ActivityEntry:
    lock_mac: str
    action: str
    recorded_time: int
    range_date_start: int
    range_date_end: int
    tracking_key: str

    def view(self) -> dict[str, Any]:
        return {
            "lock_mac": self.lock_mac,
            "action": self.action,
            "recorded_time": _iso(self.recorded_time),
            "range_date_start": _iso(self.range_date_start),
            "range_date_end": _iso(self.range_date_end),
            "tracking_key": self.tracking_key,
        }


def _iso(unix: int) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unix(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def note_contact(lock: RegisteredLock, unix: int, session: str) -> None:
    """The cloud heard of the lock at ``unix`` in ``session`` (a command batch, a record)."""
    bisect.insort(lock.contacts, (unix, session))


def _contact_before(lock: RegisteredLock, unix: int, session: str) -> int:
    index = bisect.bisect_right(lock.contacts, (unix, "\uffff"))
    for when, other in reversed(lock.contacts[:index]):
        if other != session:
            return when
    return _unix(lock.created_date)


_UNLOCK_ACTIONS: dict[int, str] = {
    RecordEvent.UNLOCKED: "unlocked",
    RecordEvent.UNSHACKLED: "unshackled",
    RecordEvent.OFFLINE_UNLOCKED: "offline_unlocked",
}


def _action(opened: LockRecord) -> str | None:
    if opened.record_type == RecordType.KEY:
        return "setup"
    if opened.record_type == RecordType.UNLOCK:
        return _UNLOCK_ACTIONS.get(opened.event)
    if opened.record_type == RecordType.LOG:
        if opened.event == RecordEvent.QUICK_CLICK_UNLOCKED:
            return "quick_click_unlocked"
        if opened.event == RecordEvent.RELOCKED:
            return "locked"
        if opened.event in (ResultCode.FAILED_TO_UNLOCK, ResultCode.FAILED_TO_UNSHACKLE):
            return "unlock_failed"
    return None


def record_activity(
    state: NokeCloudState, lock: RegisteredLock, record: UploadedRecord, opened: LockRecord
) -> None:
    """One entry for a record received for the first time (before its own contact is noted)."""
    action = _action(opened)
    if action is None:
        return
    batch = state.batches.get((lock.mac.upper(), record.session))
    received = record.received_time
    tracking_key = ""
    if action in ("offline_unlocked", "quick_click_unlocked") or batch is None:
        start, end = min(_contact_before(lock, received, record.session), received), received
        if action == "offline_unlocked":
            tracking_key = lock.slot_holders.get(opened.detail, "")
    else:
        start = end = batch.unix_time
        tracking_key = batch.tracking_key or ""
    state.activity.append(
        ActivityEntry(lock.mac.upper(), action, received, start, end, tracking_key)
    )


class ActivityQuery(_Body):
    lock_macs: list[Mac] | None = None
    actions: list[StrictStr] | None = None
    tracking_keys: list[StrictStr] | None = None
    before: str | None = Field(default=None, pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
    after: str | None = Field(default=None, pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

    @field_validator("before", "after")
    @classmethod
    def _a_date(cls, value: str | None) -> str | None:
        if value is not None:
            _unix(value)  # a real date (raises ValueError: "Invalid input")
        return value


async def handle_activity(
    state: NokeCloudState, raw: bytes, clock: Callable[[], int]
) -> JSONResponse:
    query = _parse(ActivityQuery, raw, empty_ok=True)
    before = None if query.before is None else _unix(query.before)
    after = None if query.after is None else _unix(query.after)
    if before is not None and after is not None and after > before:
        raise _Refusal(3, "Invalid input: after must not be later than before")
    macs = None if query.lock_macs is None else {mac.upper() for mac in query.lock_macs}
    actions = None if query.actions is None else set(query.actions)
    keys = None if query.tracking_keys is None else set(query.tracking_keys)
    chosen = [
        entry
        for entry in reversed(state.activity)
        if (macs is None or entry.lock_mac in macs)
        and (actions is None or entry.action in actions)
        and (keys is None or entry.tracking_key in keys)
        and (before is None or entry.range_date_start <= before)
        and (after is None or entry.range_date_end >= after)
    ][:MOST_ENTRIES]
    return _envelope("activity", data={"activity": [entry.view() for entry in chosen]})
