"""Logging in to the Keyless platform: a bearer token for every request, renewed a margin
before its hour is up and once more on a 401.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx
from pydantic import SecretStr

from blelock.clock import Clock, SystemClock
from blelock.cloud._http import json_body
from blelock.cloud._token_auth import RenewingBearerAuth
from blelock.errors import ConfigError
from blelock.vendors.keyless.cloud._problems import (
    _ADMIN_CREDENTIALS_HINT,
    _validate,
    raise_for_problem,
)
from blelock.vendors.keyless.models import KeylessLimits, Token

__all__ = ["KeylessAuth"]


class KeylessAuth(RenewingBearerAuth):
    """Bearer-token authentication with an automatic login, shared by concurrent requests.

    ``principal_field`` is ``"userId"`` for the Administration API and ``"operatingDeviceId"``
    for the mobile stand-in. The token is kept until :data:`KeylessLimits.TOKEN_LIFETIME` minus
    :data:`KeylessLimits.TOKEN_REFRESH_MARGIN` has passed on ``clock.monotonic()`` (monotonic:
    a wall clock set back must not keep a dead token), and is replaced once on a 401.
    """

    def __init__(
        self,
        login_url: str,
        *,
        principal_field: str,
        principal_id: str | None,
        access_key: SecretStr | None,
        api_key: SecretStr | None,
        clock: Clock | None = None,
        credentials_hint: str = _ADMIN_CREDENTIALS_HINT,
    ) -> None:
        super().__init__(clock or SystemClock())
        self._login_url = login_url
        self._principal_field = principal_field
        self._principal_id = principal_id
        self._access_key = access_key
        self._api_key = api_key
        self._credentials_hint = credentials_hint
        self._login_started = 0.0
        self.logins = 0
        """How many times this object logged in (for tests and diagnostics)."""

    def __repr__(self) -> str:
        state = "token" if self.has_token else "no token"
        return f"KeylessAuth({self._principal_field}={self._principal_id!r}, {state})"

    def set_credentials(self, principal_id: str, access_key: SecretStr) -> None:
        """New credentials (after an activation): the old token, if any, is dropped."""
        self._principal_id, self._access_key = principal_id, access_key
        self.forget()

    def stamp(self, request: httpx.Request) -> None:
        if self._api_key is not None:
            request.headers["X-Api-Key"] = self._api_key.get_secret_value()

    def token_request(self, request: httpx.Request) -> httpx.Request:
        if self._principal_id is None or self._access_key is None:
            raise ConfigError(
                f"no credentials to log in to the Keyless platform at {request.url.host}",
                hint=self._credentials_hint,
            )
        login = httpx.Request(
            "POST",
            self._login_url,
            json={
                self._principal_field: self._principal_id,
                "accessKey": self._access_key.get_secret_value(),
            },
            headers={"Accept": request.headers.get("Accept", "application/json")},
        )
        self.stamp(login)
        # The hour counts from when the platform made the token: start the count before asking.
        self._login_started = self._clock.monotonic()
        return login

    async def accept_token(self, response: httpx.Response) -> None:
        await response.aread()  # an overridden auth flow gets the answer unread
        what = f"login of {self._principal_field} {self._principal_id}"
        raise_for_problem(response, what, credentials_hint=self._credentials_hint, login=True)
        token = _validate(Token, json_body(response), "/login", response.request.url.host)
        lifetime = KeylessLimits.TOKEN_LIFETIME - KeylessLimits.TOKEN_REFRESH_MARGIN
        self.keep(token.token, self._login_started + lifetime.total_seconds())
        self.logins += 1


class _ApiKeyOnly(httpx.Auth):
    """For the one call made before there are credentials (activation)."""

    def __init__(self, auth: KeylessAuth) -> None:
        self._auth = auth

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._auth.stamp(request)
        yield request
