"""What every request to the kiosk API passes before routing: the bearer token, checked in
constant time, and a bound on the body, both refused before the body is read.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import SecretStr

from blelock.service.api_models import ErrorAnswer, ErrorView
from blelock.service.logs import logger

__all__ = ["MAX_BODY_BYTES", "OPEN_PATHS", "BearerAuth"]

OPEN_PATHS = frozenset({"/openapi.json"})
MAX_BODY_BYTES = 16 * 1024
"""Every request body the API takes is a few hundred bytes of JSON."""
REFUSAL_LOG_INTERVAL_S = 60.0
"""At most one log line per this long about refused tokens (with how many were refused)."""

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_App = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


def _plain_error(
    status: int, kind: str, message: str, hint: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    view = ErrorView(kind=kind, message=message, lock_id=None, step=None, hint=hint)
    return JSONResponse(
        ErrorAnswer(error=view).model_dump(mode="json"), status_code=status, headers=headers
    )


def _digest(value: bytes) -> bytes:
    # Comparing digests keeps compare_digest's time independent of the token's length too.
    return hashlib.sha256(value).digest()


class BearerAuth:
    """Pure ASGI: refuses every HTTP request but those to ``OPEN_PATHS`` without the token, and
    every body larger than :data:`MAX_BODY_BYTES` (413) before it is read. Refusals are logged,
    at most once per :data:`REFUSAL_LOG_INTERVAL_S`, without the token."""

    def __init__(self, app: _App, token: SecretStr) -> None:
        self._app = app
        self._expected = _digest(token.get_secret_value().encode())
        self._refused = 0
        self._logged_at: float | None = None

    def _log_refusal(self, scope: _Scope) -> None:
        self._refused += 1
        now = time.monotonic()
        if self._logged_at is not None and now - self._logged_at < REFUSAL_LOG_INTERVAL_S:
            return
        client = scope.get("client") or ("?", 0)
        logger.warning(
            "refused a request without the right bearer token",
            extra={"client": str(client[0]), "path": str(scope["path"]), "refused": self._refused},
        )
        self._logged_at, self._refused = now, 0

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = b""
            length = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scheme, _, credentials = value.partition(b" ")
                    given = credentials.strip() if scheme.lower() == b"bearer" else b""
                elif name == b"content-length":
                    length = value
            if not (given and hmac.compare_digest(_digest(given), self._expected)):
                self._log_refusal(scope)
                refusal = _plain_error(
                    401,
                    "Unauthorized",
                    "missing or wrong bearer token",
                    "send Authorization: Bearer <serve_token from the service's config>",
                    {"WWW-Authenticate": "Bearer"},
                )
                await refusal(scope, receive, send)
                return
            unbounded = not length.isdigit() or int(length) > MAX_BODY_BYTES
            if unbounded and (length or _has_body(scope)):
                await _too_large(scope, receive, send)
                return
            receive = _limited(receive)
        await self._app(scope, receive, send)


def _has_body(scope: _Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


async def _too_large(scope: _Scope, receive: _Receive, send: _Send) -> None:
    answer = _plain_error(
        413,
        "BodyTooLarge",
        f"the request body is larger than {MAX_BODY_BYTES} bytes (or its length is not given)",
        "send the small JSON body the API documents, with a Content-Length",
    )
    await answer(scope, receive, send)


def _limited(receive: _Receive) -> _Receive:
    """A body that turns out longer than its Content-Length promised is cut off."""
    seen = 0

    async def limited() -> MutableMapping[str, Any]:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                return {"type": "http.disconnect"}
        return message

    return limited
