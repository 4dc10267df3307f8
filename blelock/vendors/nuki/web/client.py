"""The Nuki Web API client (``https://api.nuki.io``): one method per request, nothing more.

Every request carries ``Authorization: Bearer <api token>``; the token leaves this object only
in that header (never in its repr, a log line or an exception's text). Reads are retried while
the failure is transient; writes only when the API refused to look at them (429), since a
write the API took and answered badly may already be on its way to the lock.

A write answers 204 once the API has validated it, **not** once the lock has it (research
§B.3): the lock gets it seconds later, and while an operation is pending on a lock the API
answers 423 to further changes. :meth:`NukiWeb._send` waits such a 423 out (polling, bounded
by ``busy_wait_s``). Confirming that a write reached the lock is :mod:`.ops`'s job.

Error bodies come in two shapes (``{code, description, reasonPhrase}`` and
``{detailMessage}``); the message quotes the API's own words after the status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from blelock.clock import Clock, SystemClock
from blelock.cloud._http import (
    CloudClient,
    RetryPolicy,
    json_body,
    map_http_errors,
    parse_retry_after,
    with_retries,
)
from blelock.config import Timeouts
from blelock.errors import (
    AuthFailed,
    CloudError,
    CloudRejected,
    ConfigError,
    RateLimited,
    UnknownLock,
)
from blelock.vendors.nuki.web.models import (
    AccountUser,
    ApiError,
    LogEntry,
    Smartlock,
    SmartlockAuth,
)
from blelock.vendors.nuki.web.rules import LOG_LIMIT_DEFAULT, check_log_limit

__all__ = ["NotConfirmed", "NukiWeb", "OperationPending", "ReadBackDiffers", "WebSettings"]

_MAX_SAID = 200
_TOKEN_HINT = (
    "check the Nuki Web API token (api_token in the config file's [nuki] section, or "
    "BLELOCK_NUKI__API_TOKEN); web.nuki.io → API issues one"
)
_BUG_HINT = "report it with `--debug` output; the Web API may have changed"
_SERVER_HINT = "Nuki's servers have trouble; try again later"
_CONFLICT_HINT = (
    "a keypad code may exist only once per lock; an entry deleted moments ago can linger in "
    "the Web API until the lock syncs (force a sync, then try again)"
)

_T = TypeVar("_T", bound=BaseModel)


class WebSettings(Protocol):
    """What :meth:`NukiWeb.from_settings` reads: :class:`~.settings.NukiWebSettings`, or the
    plugin's ``[nuki]`` section that carries the same two fields."""

    @property
    def web_url(self) -> str: ...
    @property
    def api_token(self) -> SecretStr | None: ...


class OperationPending(CloudRejected):
    """HTTP 423: an operation on this lock (or entry) is still on its way to the lock."""

    hint = "wait until the lock has taken the last change (it can take a minute), then retry"


class NotConfirmed(CloudError):
    """The API accepted a change (204) but it had not reached the lock when we stopped looking."""

    hint = (
        "the lock may be offline or asleep (check its serverState with `--via web` listing); "
        "look again later before sending the change once more"
    )


class ReadBackDiffers(CloudError):
    """The change reached the lock, but what the API reads back is not what was sent."""

    hint = "send the full change again; if it persists, edit the entry in the Nuki app"

    def __init__(self, message: str, *, fields: Sequence[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.fields = tuple(fields)


class NukiWeb(CloudClient):
    """One Nuki Web API account. Use as ``async with NukiWeb(url, token) as web:``.

    ``clock`` drives every wait (423 polling here, read-back polling in :mod:`.ops`), so tests
    run on a simulated clock. ``poll_s`` is the gap between two looks; ``busy_wait_s`` bounds
    waiting out a 423; ``confirm_s`` bounds waiting for a write to show in a read-back.
    """

    def __init__(
        self,
        base_url: str,
        api_token: SecretStr | str,
        *,
        timeouts: Timeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        poll_s: float = 2.0,
        busy_wait_s: float = 60.0,
        confirm_s: float = 120.0,
    ) -> None:
        token = api_token if isinstance(api_token, SecretStr) else SecretStr(api_token)
        if not token.get_secret_value().strip():
            raise ConfigError("the Nuki Web API token is empty", hint=_TOKEN_HINT)
        self._token = token
        self._retry = retry or RetryPolicy()
        self.clock: Clock = clock or SystemClock()
        self.poll_s = poll_s
        self.busy_wait_s = busy_wait_s
        self.confirm_s = confirm_s
        super().__init__(
            base_url if base_url.endswith("/") else base_url + "/", timeouts, transport=transport
        )

    @classmethod
    def from_settings(
        cls, section: WebSettings, timeouts: Timeouts | None = None, **options: Any
    ) -> NukiWeb:
        """The configured Web API, or a ConfigError saying there is no token to call it with."""
        if section.api_token is None:
            raise ConfigError("no Nuki Web API token is configured", hint=_TOKEN_HINT)
        return cls(section.web_url, section.api_token, timeouts=timeouts, **options)

    def __repr__(self) -> str:
        return f"NukiWeb(base_url={str(self._client.base_url)!r})"

    # --- smart locks ------------------------------------------------------------------------

    async def smartlocks(self) -> list[Smartlock]:
        """``GET /smartlock``: every smart lock of the account."""
        return await self._read_list(Smartlock, "smartlock", what="the smart lock list")

    async def smartlock(self, smartlock_id: int) -> Smartlock:
        """``GET /smartlock/{id}``."""
        response = await self._get(
            f"smartlock/{smartlock_id}", what=f"smart lock {smartlock_id}", lock=smartlock_id
        )
        return _validate(Smartlock, json_body(response), f"smart lock {smartlock_id}", self.host)

    async def action(self, smartlock_id: int, action: int, option: int = 0) -> None:
        """``POST /smartlock/{id}/action`` (204: accepted, not yet done)."""
        await self._send(
            "POST",
            f"smartlock/{smartlock_id}/action",
            {"action": action, "option": option},
            what=f"lock action {action} on smart lock {smartlock_id}",
            lock=smartlock_id,
        )

    async def sync(self, smartlock_id: int, *, if_idle: bool = False) -> bool:
        """``PUT /smartlock/{id}/sync``: ask the lock to report its state and entries again
        (the vendor's forum gives PUT; the cure for entries that linger after a delete).
        ``if_idle``: give up at once (False) when an operation is pending on the lock."""
        try:
            await self._send(
                "PUT",
                f"smartlock/{smartlock_id}/sync",
                None,
                what=f"a sync of smart lock {smartlock_id}",
                lock=smartlock_id,
                wait_busy=not if_idle,
            )
        except OperationPending:
            if not if_idle:
                raise
            return False
        return True

    # --- authorizations ---------------------------------------------------------------------

    async def auths(
        self, smartlock_id: int, *, types: Sequence[int] | None = None
    ) -> list[SmartlockAuth]:
        """``GET /smartlock/{id}/auth`` (``types`` filters, e.g. ``[13]`` for keypad codes)."""
        params = {"types": ",".join(str(t) for t in types)} if types else None
        return await self._read_list(
            SmartlockAuth,
            f"smartlock/{smartlock_id}/auth",
            what=f"the authorizations of smart lock {smartlock_id}",
            params=params,
            lock=smartlock_id,
        )

    async def all_auths(
        self, *, account_user_id: int | None = None, types: Sequence[int] | None = None
    ) -> list[SmartlockAuth]:
        """``GET /smartlock/auth``: the authorizations of every lock of the account."""
        params: dict[str, str] = {}
        if account_user_id is not None:
            params["accountUserId"] = str(account_user_id)
        if types:
            params["types"] = ",".join(str(t) for t in types)
        return await self._read_list(
            SmartlockAuth, "smartlock/auth", what="the authorizations", params=params or None
        )

    async def create_auth(self, smartlock_id: int, body: Mapping[str, Any]) -> None:
        """``PUT /smartlock/{id}/auth``: 204 and no id (the entry shows once the lock has it)."""
        await self._send(
            "PUT",
            f"smartlock/{smartlock_id}/auth",
            body,
            what=f"a new authorization on smart lock {smartlock_id}",
            lock=smartlock_id,
        )

    async def create_auth_on(self, smartlock_ids: Sequence[int], body: Mapping[str, Any]) -> None:
        """``PUT /smartlock/auth``: the same authorization on several locks at once."""
        await self._send(
            "PUT",
            "smartlock/auth",
            {**body, "smartlockIds": list(smartlock_ids)},
            what=f"a new authorization on smart locks {_ids(smartlock_ids)}",
        )

    async def update_auth(self, smartlock_id: int, auth_id: str, body: Mapping[str, Any]) -> None:
        """``POST /smartlock/{id}/auth/{authId}``. Fields left out of the body are *cleared*
        for the time restrictions: send the full set (:mod:`.ops` does)."""
        await self._send(
            "POST",
            f"smartlock/{smartlock_id}/auth/{auth_id}",
            body,
            what=f"authorization {auth_id} of smart lock {smartlock_id}",
            lock=smartlock_id,
        )

    async def update_auths(self, bodies: Sequence[Mapping[str, Any]]) -> None:
        """``POST /smartlock/auth``: several updates, each body with its ``id``."""
        await self._send(
            "POST",
            "smartlock/auth",
            list(bodies),
            what=f"{len(bodies)} authorization updates",
        )

    async def delete_auth(self, smartlock_id: int, auth_id: str) -> None:
        """``DELETE /smartlock/{id}/auth/{authId}``."""
        await self._send(
            "DELETE",
            f"smartlock/{smartlock_id}/auth/{auth_id}",
            None,
            what=f"authorization {auth_id} of smart lock {smartlock_id}",
            lock=smartlock_id,
        )

    async def delete_auths(self, auth_ids: Sequence[str]) -> None:
        """``DELETE /smartlock/auth`` with the list of ids as its body."""
        await self._send(
            "DELETE", "smartlock/auth", list(auth_ids), what=f"{len(auth_ids)} authorizations"
        )

    # --- account users (invite keys go to them) ---------------------------------------------

    async def account_users(self) -> list[AccountUser]:
        """``GET /account/user``."""
        return await self._read_list(AccountUser, "account/user", what="the account users")

    async def create_account_user(self, email: str, name: str) -> AccountUser:
        """``PUT /account/user``: the new user. The vendor's example reads the new id with a
        ``GET /account/user`` afterwards, so an empty answer is met by looking it up by e-mail."""
        response = await self._send(
            "PUT", "account/user", {"email": email, "name": name}, what="a new account user"
        )
        if response.content.strip():
            return _validate(AccountUser, json_body(response), "a new account user", self.host)
        for user in await self.account_users():
            if user.email.casefold() == email.casefold():
                return user
        raise CloudRejected(
            f"the Nuki Web API at {self.host} took the new account user but does not list it",
            hint="list the account users in a moment; the user may still be on its way",
        )

    async def delete_account_user(self, account_user_id: int) -> None:
        """``DELETE /account/user/{id}``."""
        await self._send(
            "DELETE",
            f"account/user/{account_user_id}",
            None,
            what=f"account user {account_user_id}",
        )

    # --- logs -------------------------------------------------------------------------------

    async def logs(
        self,
        smartlock_id: int | None = None,
        *,
        limit: int = LOG_LIMIT_DEFAULT,
        before_id: str | None = None,
        action: int | None = None,
    ) -> list[LogEntry]:
        """``GET /smartlock/{id}/log`` (or every lock's), newest first, at most 50 at a time;
        ``before_id`` asks for the entries older than that one (the API's ``id`` filter)."""
        params: dict[str, str] = {"limit": str(check_log_limit(limit))}
        if before_id is not None:
            params["id"] = before_id
        if action is not None:
            params["action"] = str(action)
        path = "smartlock/log" if smartlock_id is None else f"smartlock/{smartlock_id}/log"
        where = "every lock" if smartlock_id is None else f"smart lock {smartlock_id}"
        return await self._read_list(
            LogEntry, path, what=f"the log of {where}", params=params, lock=smartlock_id
        )

    # --- plumbing ---------------------------------------------------------------------------

    def _headers(self, *, body: bool) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    async def _get(
        self,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        lock: int | None = None,
    ) -> httpx.Response:
        async def once() -> httpx.Response:
            with map_http_errors(self.host):
                response = await self._client.get(
                    path, params=params, headers=self._headers(body=False)
                )
            raise_for_nuki(response, what, lock=lock)
            return response

        return await with_retries(once, self._retry, sleep=self.clock.sleep)

    async def _read_list(
        self,
        model: type[_T],
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        lock: int | None = None,
    ) -> list[_T]:
        response = await self._get(path, what=what, params=params, lock=lock)
        return _validate_list(model, json_body(response), what, self.host)

    async def _send(
        self,
        method: str,
        path: str,
        body: object,
        *,
        what: str,
        lock: int | None = None,
        wait_busy: bool = True,
    ) -> httpx.Response:
        """One write; a 423 is waited out (polling every ``poll_s``, up to ``busy_wait_s``),
        a 429 retried as the RetryPolicy says; anything else raises at once."""
        content = None if body is None else json.dumps(body).encode()
        headers = self._headers(body=content is not None)
        deadline = self.clock.monotonic() + self.busy_wait_s
        secrets = _codes_in(body)

        async def once() -> httpx.Response:
            with map_http_errors(self.host):
                response = await self._client.request(
                    method, path, content=content, headers=headers
                )
            raise_for_nuki(response, what, lock=lock, secrets=secrets)
            return response

        while True:
            try:
                return await with_retries(
                    once,
                    self._retry,
                    sleep=self.clock.sleep,
                    retry_if=lambda exc: isinstance(exc, RateLimited),
                )
            except OperationPending as exc:
                if not wait_busy:
                    raise
                if self.clock.monotonic() + self.poll_s > deadline:
                    exc.message = f"{exc.message}; still pending after {self.busy_wait_s:g} s"
                    exc.args = (exc.message,)
                    raise
            await self.clock.sleep(self.poll_s)


def raise_for_nuki(
    response: httpx.Response,
    what: str,
    *,
    lock: int | None = None,
    secrets: Sequence[str] = (),
) -> None:
    """Raise the tree's error for a non-2xx answer; quiet for 2xx. ``secrets`` (the keypad
    codes the request carried) are blanked out of what the API says: it quotes the value it
    refused ("The supplied value '…' for parameter 'code' is not valid")."""
    status = response.status_code
    if 200 <= status < 300:
        return
    host = response.request.url.host
    said = _said(response)
    for secret in secrets:
        said = said.replace(secret, "…")
    because = f": {said}" if said else ""
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        wait = f"; it asks to wait {retry_after:g} s" if retry_after is not None else ""
        raise RateLimited(
            f"the Nuki Web API at {host} is rate limiting us (HTTP 429) for {what}{wait}",
            retry_after=retry_after,
        )
    if status in (401, 403):
        raise AuthFailed(
            f"the Nuki Web API at {host} refused the API token for {what} (HTTP {status}{because})",
            status=status,
            hint=_TOKEN_HINT,
        )
    if status == 404 and lock is not None:
        raise UnknownLock(
            f"the Nuki Web API at {host} does not know {what} (HTTP 404{because})",
            status=status,
            hint="check the smartlockId (`--via web` lists the account's locks)",
        )
    if status == 423:
        raise OperationPending(
            f"the Nuki Web API at {host} is still taking an earlier change to the lock; "
            f"it refused {what} for now (HTTP 423{because})",
            status=status,
            transient=True,
        )
    if status >= 500:
        raise CloudRejected(
            f"the Nuki Web API at {host} failed {what} (HTTP {status}{because})",
            status=status,
            hint=_SERVER_HINT,
        )
    reason = f" {response.reason_phrase}" if response.reason_phrase else ""
    raise CloudRejected(
        f"the Nuki Web API at {host} refused {what} (HTTP {status}{reason}){because}",
        status=status,
        about_content=True,
        hint=_CONFLICT_HINT if status == 409 else "correct it as the API says" if said else None,
    )


def _said(response: httpx.Response) -> str:
    try:
        error = ApiError.model_validate(json.loads(response.content))
    except (ValueError, ValidationError):
        return ""
    return " ".join(error.said.split())[:_MAX_SAID]


def _codes_in(body: object) -> tuple[str, ...]:
    """The keypad codes a request body carries (one entry, or a bulk list of them)."""
    entries = body if isinstance(body, list) else [body]
    return tuple(
        str(entry["code"])
        for entry in entries
        if isinstance(entry, dict) and entry.get("code") is not None
    )


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids[:5]) + (" …" if len(ids) > 5 else "")


def _complain(what: str, host: str, exc: ValidationError) -> CloudRejected:
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    return CloudRejected(
        f"the Nuki Web API at {host} answered {what} with an unexpected shape: "
        f"{where} ({first['msg'].lower()})",
        hint=_BUG_HINT,
    )


def _validate(model: type[_T], value: object, what: str, host: str) -> _T:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _complain(what, host, exc) from None


def _validate_list(model: type[_T], value: object, what: str, host: str) -> list[_T]:
    try:
        return TypeAdapter(list[model]).validate_python(value)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise _complain(what, host, exc) from None
