"""What both Keyless clients share: the paths, one request with retries and problem+json
mapping, paging, and the checks of ids and log queries.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import httpx
from pydantic import SecretStr

from blelock.clock import Clock
from blelock.cloud._http import (
    CloudClient,
    RetryPolicy,
    is_transient,
    json_body,
    map_http_errors,
    with_retries,
)
from blelock.config import Timeouts
from blelock.errors import CloudError, CloudRejected, ConfigError, RateLimited
from blelock.vendors.keyless.cloud._problems import (
    _ADMIN_CREDENTIALS_HINT,
    _BUG_HINT,
    _ModelT,
    _validate,
    raise_for_problem,
)
from blelock.vendors.keyless.cloud.auth import KeylessAuth, _ApiKeyOnly
from blelock.vendors.keyless.models import (
    KeylessLimits,
    Page,
    SortDirection,
    check_aware,
    check_choice,
    check_id,
    check_sequence_number,
    utc_text,
)

__all__ = ["PATHS"]


PATHS: Final = {
    "login": "login",
    "user": "user",
    "invitation": "operating-device-invitation",
    "operating-device": "operating-device",
    "locking-device": "locking-device",
    "locking-device-system-log": "locking-device-system-log",
    "locking-device-audit-log": "locking-device-audit-log",
    "permission": "permission",
    "offline-key": "offline-key",
    "gateway": "gateway-device",
    "gateway-system-log": "gateway-device-system-log",
    "gateway-audit-log": "gateway-device-audit-log",
    "association": "gateway-device-association",
    "remote-command": "remote-command",
    "mobile-activation": "mobile/activation",
    "mobile-login": "mobile/login",
    "mobile-operating-keys": "mobile/operating-keys",
    "mobile-offline-keys": "mobile/offline-keys",
    "mobile-revocations": "mobile/revocations",
    "mobile-locking-device": "mobile/locking-device",
    "mobile-ca": "mobile/ca",
}
"""Paths relative to the API root (``.../administration/``)."""


_JSON_PATCH: Final = "application/json-patch+json"
_LOGS: Final = {  # PATHS key: (the log, whose log, the query parameter naming its owner)
    "locking-device-system-log": ("system log", "locking device", "locking-device-id"),
    "locking-device-audit-log": ("audit log", "locking device", "locking-device-id"),
    "gateway-system-log": ("system log", "gateway device", "gateway-device-id"),
    "gateway-audit-log": ("audit log", "gateway device", "gateway-device-id"),
}


def _rate_limited(exc: CloudError) -> bool:
    """A request that is not idempotent is retried only when the platform refused to look at
    it: a 5xx or a timeout may have created the resource already."""
    return isinstance(exc, RateLimited)


class _KeylessClient(CloudClient):
    """An httpx client with :class:`KeylessAuth`, retries and problem+json mapping."""

    _accept: str = KeylessLimits.MEDIA_TYPE
    _credentials_hint: str = _ADMIN_CREDENTIALS_HINT

    def __init__(
        self,
        base_url: str,
        auth: KeylessAuth,
        *,
        timeouts: Timeouts | None,
        transport: httpx.AsyncBaseTransport | None,
        retry: RetryPolicy | None,
        clock: Clock,
    ) -> None:
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self.auth = auth
        super().__init__(base_url, timeouts, transport=transport, headers={"Accept": self._accept})
        self._client.auth = auth

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self._client.base_url)!r})"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: object = None,
        params: Mapping[str, str | int] | None = None,
        content_type: str | None = None,
        lock_id: str | None = None,
        idempotent: bool | None = None,
        authenticated: bool = True,
    ) -> httpx.Response:
        """One request, retried while transient; non-2xx raises the tree's error."""
        retry_safe = method in ("GET", "PUT") if idempotent is None else idempotent
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type or "application/json"} if content else {}

        async def once() -> httpx.Response:
            extra: dict[str, Any] = {}
            if not authenticated:  # no token to get yet; the API key still goes along
                extra["auth"] = _ApiKeyOnly(self.auth)
            with map_http_errors(self.host):
                response = await self._client.request(
                    method, path, content=content, params=params, headers=headers, **extra
                )
            raise_for_problem(
                response,
                what,
                credentials_hint=self._credentials_hint,
                lock_id=lock_id,
                names_resource=method != "POST",
            )
            return response

        return await with_retries(
            once,
            self._retry,
            sleep=self._clock.sleep,
            retry_if=is_transient if retry_safe else _rate_limited,
        )

    async def _fetch(
        self, model: type[_ModelT], method: str, path: str, *, what: str, **kwargs: Any
    ) -> _ModelT:
        response = await self._call(method, path, what=what, **kwargs)
        return _validate(model, json_body(response), what, self.host)

    async def _pages(
        self,
        model: type[_ModelT],
        path: str,
        *,
        what: str,
        limit: int,
        params: Mapping[str, str | int | None] | None = None,
        lock_id: str | None = None,
    ) -> AsyncIterator[_ModelT]:
        query: dict[str, str | int] = {
            name: value for name, value in (params or {}).items() if value is not None
        }
        query["limit"] = limit
        seen: set[str] = set()
        while True:
            response = await self._call("GET", path, what=what, params=query, lock_id=lock_id)
            page = _validate(Page[Any], json_body(response), what, self.host)
            for index, item in enumerate(page.items):
                yield _validate(model, item, f"{what} (item {index})", self.host)
            token = page.next_page_token
            if not token:
                return
            if token in seen:
                raise CloudRejected(
                    f"the Keyless platform at {self.host} handed out a page token twice "
                    f"while listing {what}",
                    hint=_BUG_HINT,
                )
            seen.add(token)
            query["next-page-token"] = token


def _secret(value: SecretStr | str, what: str) -> SecretStr:
    secret = value if isinstance(value, SecretStr) else SecretStr(value)
    if not secret.get_secret_value().strip():
        raise ConfigError(f"the Keyless {what} is empty", hint=_ADMIN_CREDENTIALS_HINT)
    return secret


def _root(base_url: str) -> str:
    return base_url if base_url.endswith("/") else base_url + "/"


def _resource(
    path_key: str, identifier: str, noun: str, label: str | None = None, lock: bool = False
) -> tuple[str, str, str | None]:
    """The path, the ``what`` (``"<noun> <id>"``) and the ``lock_id`` (with ``lock``: a 404 is an
    UnknownLock) of one resource; a malformed id is refused under ``label`` (default ``noun``)."""
    checked = check_id(identifier, label or noun)
    return f"{PATHS[path_key]}/{checked}", f"{noun} {checked}", checked if lock else None


def _log_query(
    sequence_number_greater_than: int | None, after: dt.datetime | None, sort: SortDirection
) -> dict[str, str | int | None]:
    check_sequence_number(sequence_number_greater_than)
    if after is not None:
        check_aware(after, "log: after-datetime")
    return {
        "sequence-number-greater-than": sequence_number_greater_than,
        "after-datetime": None if after is None else utc_text(after),
        "sort-direction": check_choice(SortDirection, sort, "log: sort-direction").value,
    }
