"""Reading the kiosk's live view once its scan has heard the locks a test is about."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import httpx

from blelock.service.runner import Runner


async def listed_once_heard(
    runner: Runner,
    client: httpx.AsyncClient,
    lock_ids: Collection[str],
    *,
    headers: Mapping[str, str] | None = None,
    windows: int = 25,
) -> list[Any]:
    """``/v1/locks`` once the scan has heard every one of ``lock_ids``: window after window, as
    a loaded machine's scan window can miss a lock that advertises several times within it
    (bounded: after ``windows`` windows it fails, naming the locks)."""
    listed: list[Any] = []
    for window in range(1, windows + 1):
        await runner.wait_for_scans(runner.scans_completed + 1 if window > 1 else 1)
        listed = (await client.get("/v1/locks", headers=headers)).json()
        if set(lock_ids) <= {row["lock_id"] for row in listed}:
            return listed
    raise AssertionError(f"{windows} scan windows did not hear all of {sorted(lock_ids)}")
