"""A harness's hands on the simulated Nokē locks, over HTTP on the Nokē cloud's port (like
``/_sim/cloud``): someone pressing a quick-click code on a lock, and how the lock talks after a
batch. Simulator-only; nothing here is part of the vendor's API.

::

    curl -s -X POST http://127.0.0.1:PORT/_sim/noke/locks/AA:BB:CC:DD:EE:FF/press \
         -d '{"code": "10110"}'
    curl -s -X POST http://127.0.0.1:PORT/_sim/noke/locks/AA:BB:CC:DD:EE:FF/habits \\
         -d '{"trailing_records": 1, "sends_shutdown": true, "short_notifications": 0}'
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from simulators.noke_lock import LockHabits, SimNokeLock

__all__ = ["lock_routes"]


def lock_routes(locks: Sequence[SimNokeLock]) -> list[Route]:
    by_mac = {lock.mac.upper(): lock for lock in locks}

    async def _body(request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def press(request: Request) -> JSONResponse:
        lock = by_mac.get(str(request.path_params["mac"]).upper())
        body = await _body(request)
        if lock is None:
            return JSONResponse({"error": "no such lock"}, status_code=404)
        code = None if body is None else body.get("code")
        if not isinstance(code, str):
            return JSONResponse({"error": 'expected {"code": "1010…"}'}, status_code=400)
        opened = lock.press_sequence(code)
        return JSONResponse({"opened": opened, "quick_click_unlocks": lock.quick_click_unlocks})

    async def habits(request: Request) -> JSONResponse:
        lock = by_mac.get(str(request.path_params["mac"]).upper())
        body = await _body(request)
        if lock is None:
            return JSONResponse({"error": "no such lock"}, status_code=404)
        now = dataclasses.asdict(lock.habits)
        if body is None or any(
            name not in now or type(value) is not type(now[name]) for name, value in body.items()
        ):
            return JSONResponse({"error": f"expected some of {now}"}, status_code=400)
        lock.habits = LockHabits(**(now | body))
        return JSONResponse(dataclasses.asdict(lock.habits))

    return [
        Route("/_sim/noke/locks/{mac}/press", press, methods=["POST"]),
        Route("/_sim/noke/locks/{mac}/habits", habits, methods=["POST"]),
    ]
