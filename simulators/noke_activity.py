"""The simulated Core API's ``/activity/``: the activity the cloud built from the records it
received (:func:`simulators.noke_cloud_state.record_activity`), filtered as the vendor doc's
request asks.

* ``lock_macs``, ``actions`` and ``tracking_keys`` match exactly.
* ``before`` / ``after`` keep the entries whose range overlaps the window (a ranged event that
  may have happened inside it is shown). Newest first, at most :data:`MOST_ENTRIES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, StrictStr, field_validator
from starlette.responses import JSONResponse

from simulators.noke_cloud_http import Mac, _Body, _envelope, _parse, _Refusal, _unix

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulators.noke_cloud_state import NokeCloudState

__all__ = ["handle_activity"]

MOST_ENTRIES = 1000
"""Entries one answer holds (newest first); the doc names no paging."""


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
