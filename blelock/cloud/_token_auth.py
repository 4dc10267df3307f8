"""Bearer tokens that a vendor's cloud hands out for a while: the auth flow every client with
expiring tokens shares (Keyless's login, Unloc's client-credentials grant).

The token is asked for when there is none or it is no longer fresh, by one request at a time
(concurrent requests wait and reuse it), kept until an expiry read on ``clock.monotonic()`` (a
wall clock set back must not keep a dead token), and asked for once more when the cloud answers
401 anyway; a second 401 is the caller's answer. A subclass says how to ask
(:meth:`token_request`) and how to read the answer (:meth:`accept_token`, which calls
:meth:`keep`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator

import httpx
from pydantic import SecretStr

from blelock.clock import Clock

__all__ = ["RenewingBearerAuth"]


class RenewingBearerAuth(httpx.Auth):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: SecretStr | None = None
        self._expires_at = 0.0

    def token_request(self, request: httpx.Request) -> httpx.Request:
        """The request that asks for a token (``request``: the one that needs it)."""
        raise NotImplementedError

    async def accept_token(self, response: httpx.Response) -> None:
        """Read the token request's answer (unread yet): :meth:`keep` its token, or raise."""
        raise NotImplementedError

    def stamp(self, request: httpx.Request) -> None:
        """Headers every request carries besides the token (none unless overridden)."""

    def keep(self, token: SecretStr, expires_at: float) -> None:
        """Use ``token`` until ``expires_at`` on the clock's monotonic time."""
        self._token, self._expires_at = token, expires_at

    def forget(self) -> None:
        """Drop the token (new credentials): the next request asks for one."""
        self._token = None

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError(f"{type(self).__name__} needs an httpx.AsyncClient")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self.stamp(request)
        async with self._lock:
            if self._token is None or self._clock.monotonic() >= self._expires_at:
                await self.accept_token((yield self.token_request(request)))
            token = self._token
        assert token is not None
        request.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        response = yield request
        if response.status_code != 401:
            return
        async with self._lock:
            # Another request may have renewed it while this one waited: reuse that token.
            if self._token is token or self._token is None:
                self._token = None
                await self.accept_token((yield self.token_request(request)))
            token = self._token
        assert token is not None
        request.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        yield request
