"""A runtime switch in front of a simulated cloud: down, slow, back — its state kept.

An offline day used to be faked with a closed port, which also threw the cloud's state away.
:class:`CloudSwitch` wraps a cloud's ASGI app and is flipped while the world runs:

- ``down``: every request's connection is closed without an answer (the client sees the
  connection reset, as behind a dead uplink); the cloud itself never sees the request;
- ``slow``: every request waits ``delay_s`` first (a congested uplink);
- ``up``: back to normal. The cloud's state (uploads, keys, counters) is untouched throughout.
- ``lose_answers=N``: the next N requests that store something (an upload) reach the cloud and
  are stored, then their answer is lost (the connection closes): the client cannot tell it from
  a request that never arrived, so its retry must be recognised as a replay.

Flip it from Python (``running.switches["noke"].set(mode="down")``) or over HTTP on the cloud's
own port, which answers even while the cloud is down::

    curl -s http://127.0.0.1:PORT/_sim/cloud                                   # the switch now
    curl -s -X POST http://127.0.0.1:PORT/_sim/cloud -d '{"mode": "down"}'
    curl -s -X POST http://127.0.0.1:PORT/_sim/cloud -d '{"mode": "slow", "delay_s": 2}'
    curl -s -X POST http://127.0.0.1:PORT/_sim/cloud -d '{"lose_answers": 1}'
    curl -s -X POST http://127.0.0.1:PORT/_sim/cloud -d '{"mode": "up"}'
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CONTROL_PATH", "CloudSwitch", "SwitchState"]

CONTROL_PATH = "/_sim/cloud"
MODES = ("up", "down", "slow")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _drop(send: Send) -> None:
    """Close the connection without an answer: a response begun and never finished makes the
    server close it (the client reads a reset, not an HTTP error it could take for an answer)."""
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]}
    )


@dataclass
class SwitchState:
    mode: str = "up"
    delay_s: float = 0.0
    lose_answers: int = 0
    """Answers still to lose (requests that store something); -1: all."""
    dropped: int = 0
    """Counter: requests refused while down."""
    answers_lost: int = 0
    """Counter: stored requests whose answer was lost."""


class CloudSwitch:
    """ASGI middleware: ``stores(method, path)`` says which requests store something."""

    def __init__(self, app: App, name: str, stores: Callable[[str, str], bool]) -> None:
        self.app, self.name, self._stores = app, name, stores
        self.state = SwitchState()

    def set(
        self,
        *,
        mode: str | None = None,
        delay_s: float | None = None,
        lose_answers: int | None = None,
    ) -> SwitchState:
        if mode is not None:
            if mode not in MODES:
                raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
            self.state.mode = mode
        if delay_s is not None:
            if not delay_s >= 0:
                raise ValueError(f"delay_s {delay_s!r}: expected a number of seconds ≥ 0")
            self.state.delay_s = float(delay_s)
        if lose_answers is not None:
            if lose_answers < -1:
                raise ValueError(f"lose_answers {lose_answers!r}: expected ≥ 0, or -1 (all)")
            self.state.lose_answers = lose_answers
        return self.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope["path"])
        if path.rstrip("/") == CONTROL_PATH:
            await self._control(scope, receive, send)
            return
        if self.state.mode == "down":
            self.state.dropped += 1
            await _drop(send)
            return
        if self.state.mode == "slow" and self.state.delay_s > 0:
            await asyncio.sleep(self.state.delay_s)  # the simulated uplink's delay
        if self.state.lose_answers and self._stores(str(scope["method"]), path):
            await self.app(scope, receive, _swallow)  # stored at the cloud, answer thrown away
            if self.state.lose_answers > 0:
                self.state.lose_answers -= 1
            self.state.answers_lost += 1
            await _drop(send)
            return
        await self.app(scope, receive, send)

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, answer = 200, None
        if scope["method"] == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            try:
                wanted = json.loads(body or b"{}")
                if not isinstance(wanted, dict) or set(wanted) - {
                    "mode",
                    "delay_s",
                    "lose_answers",
                }:
                    raise ValueError("expected an object with mode, delay_s and/or lose_answers")
                self.set(**wanted)
            except (ValueError, TypeError) as exc:
                status, answer = 400, {"error": str(exc)}
        payload = json.dumps(answer or {"cloud": self.name} | asdict(self.state)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def _swallow(message: Message) -> None:
    pass
