"""The HTTP plumbing every vendor cloud client shares.

With ``transport/bleak_errors.py`` and ``transport/ble.py``, the only modules that catch foreign
exceptions: httpx's transport errors, HTTP error statuses and bodies that are not JSON become the
blelock tree here (:func:`map_http_errors`, :func:`json_body`). Messages name the host and never
carry a key or the request headers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import functools
import json
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from blelock.cloud._policy import (
    AT_THE_LOCK,
    OFFLINE_HINT,
    RetryPolicy,
    cannot_serve,
    is_transient,
)
from blelock.config import Timeouts
from blelock.errors import (
    AuthFailed,
    BlelockError,
    CloudError,
    CloudRejected,
    CloudTimeout,
    CloudUnavailable,
    RateLimited,
)

__all__ = [
    "AT_THE_LOCK",
    "OFFLINE_HINT",
    "CloudClient",
    "RetryPolicy",
    "answer_as",
    "cannot_serve",
    "is_transient",
    "json_body",
    "make_client",
    "map_http_errors",
    "parse_retry_after",
    "raise_for_status",
    "with_retries",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    retry_if: Callable[[CloudError], bool] = is_transient,
) -> T:
    """Run ``operation``; on a transient CloudError wait (Retry-After, else jittered backoff)
    and try again, up to ``policy.attempts`` in all; then raise the last error, its message
    saying how many attempts were made. ``retry_if`` narrows what counts as transient (a
    request that is not idempotent may only be retried when the cloud did not process it)."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return await operation()
        except CloudError as exc:
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            too_long = retry_after is not None and retry_after > policy.max_retry_after_s
            if not retry_if(exc) or attempt == policy.attempts or too_long:
                if attempt > 1:
                    exc.message = f"{exc.message} (after {attempt} attempts)"
                    exc.args = (exc.message,)
                raise
            if retry_after is None:
                # Seeded only when a retry needs it: seeding reads the OS's entropy pool, which
                # cost each upload of a drain half a millisecond.
                rng = rng or random.Random()
                retry_after = policy.backoff(attempt - 1, rng)
            await sleep(retry_after)
    raise AssertionError("unreachable: the last attempt returns or raises")


_SERVER_TROUBLE_HINT = "the cloud has trouble on its side; try again later"
_CLIENT_BUG_HINT = "the cloud did not accept blelock's request; report it with `--debug` output"
_NOT_JSON_HINT = (
    "check that the cloud URL in the config points at the vendor's API (not a proxy or login page)"
)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Loading the CA bundle costs ~20 ms of CPU: once per process, not once per client."""
    return httpx.create_ssl_context()


_NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
"""For plain-http URLs (the simulators on loopback): never used for a handshake, and it spares
httpx building a verified context, with its CA bundle, for every client."""


def make_client(
    base_url: str,
    timeouts: Timeouts,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for one cloud: every call is bounded by ``timeouts.cloud``.

    ``transport`` is the seam for tests (``httpx.ASGITransport(app)``, ``httpx.MockTransport``).
    Redirects are not followed: an API that redirects a POST is misconfigured, and following it
    would hand the Authorization header to whoever it points at.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeouts.cloud),
        verify=_tls_context() if base_url.startswith("https:") else _NO_TLS,
        transport=transport,
        headers={"Accept": "application/json", **(headers or {})},
        follow_redirects=False,
    )


class CloudClient:
    """The base of a vendor cloud client: it owns one :func:`make_client` client, which
    :meth:`aclose` (or leaving ``async with client:``) closes."""

    def __init__(
        self,
        base_url: str,
        timeouts: Timeouts | None,
        *,
        transport: httpx.AsyncBaseTransport | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._client = make_client(
            base_url, timeouts or Timeouts(), transport=transport, headers=headers
        )
        self.host: str = self._client.base_url.host

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


class map_http_errors:  # a class named like a function: ``with map_http_errors(host):``
    """Context manager (``with`` or ``async with``) turning httpx's exceptions into the tree.

    ``httpx.TimeoutException`` → :class:`CloudTimeout`; any other transport failure (refused,
    DNS, reset, TLS) → :class:`CloudUnavailable`; ``httpx.HTTPStatusError`` → as
    :func:`raise_for_status`. Errors already in the tree pass through untouched.
    """

    def __init__(self, host: str | None = None) -> None:
        self._host = host

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, BlelockError):
            return
        host = self._host or _host_of(exc)
        if isinstance(exc, httpx.TimeoutException):
            raise CloudTimeout(
                f"the cloud at {host} did not answer in time ({type(exc).__name__})"
            ) from exc
        if isinstance(exc, httpx.HTTPStatusError):
            raise_for_status(exc.response)
        if isinstance(exc, httpx.LocalProtocolError):
            # Its text quotes the offending header, which may be the Authorization header.
            raise CloudRejected(
                f"blelock could not form a valid request to the cloud at {host}",
                hint="check the API key for stray characters (spaces, line breaks)",
            ) from None
        if isinstance(exc, httpx.TransportError):
            reason = str(exc) or type(exc).__name__
            raise CloudUnavailable(f"cannot reach the cloud at {host}: {reason}") from exc
        if isinstance(exc, httpx.RequestError):  # e.g. a body that does not decode
            raise CloudRejected(
                f"the cloud at {host} answered with a body that cannot be read "
                f"({type(exc).__name__})",
                hint=_NOT_JSON_HINT,
                transient=True,
            ) from None

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _host_of(exc: BaseException) -> str:
    try:
        request = (
            exc.request if isinstance(exc, httpx.RequestError | httpx.HTTPStatusError) else None
        )
    except RuntimeError:  # a RequestError raised without its request
        request = None
    return request.url.host if request is not None else "(unknown host)"


def raise_for_status(response: httpx.Response) -> None:
    """Raise the tree's error for a non-2xx answer; return quietly for 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return
    host = response.request.url.host
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        wait = f"; it asks to wait {retry_after:g} s" if retry_after is not None else ""
        raise RateLimited(
            f"the cloud at {host} is rate limiting us (HTTP 429){wait}", retry_after=retry_after
        )
    if status in (401, 403):
        raise AuthFailed(f"the cloud at {host} refused the API key (HTTP {status})", status=status)
    hint = _SERVER_TROUBLE_HINT if status >= 500 else _CLIENT_BUG_HINT
    raise CloudRejected(
        f"the cloud at {host} answered HTTP {status} {response.reason_phrase}".rstrip(),
        status=status,
        hint=hint,
    )


def json_body(response: httpx.Response) -> object:
    """The answer's JSON after :func:`raise_for_status`; a body that is not JSON is rejected."""
    raise_for_status(response)
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        kind = response.headers.get("Content-Type", "no content type")
        raise CloudRejected(
            f"the cloud at {response.request.url.host} answered with something that is not JSON "
            f"(HTTP {response.status_code}, {kind}, {len(response.content)} bytes)",
            status=response.status_code,
            hint=_NOT_JSON_HINT,
            transient=True,
        ) from None


def answer_as(model: type[M], value: object, *, who: str, what: str, hint: str) -> M:
    """``value`` (a cloud's answer) as ``model``, or a one-line CloudRejected naming the first
    field that does not fit: ``{who} answered {what} with an unexpected shape: keys.0.id (…)``;
    never the value itself (it may hold a secret)."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise CloudRejected(
            f"{who} answered {what} with an unexpected shape: {where} ({first['msg'].lower()})",
            hint=hint,
        ) from None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP-date; None if absent/garbled."""
    if value is None or not (value := value.strip()):
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; obsolete forms may come without a zone
        when = when.replace(tzinfo=dt.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
