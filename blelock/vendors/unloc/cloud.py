"""The Unloc API v2 client: a project's locks, keys and jobs.

Authentication: the client-credentials grant (``POST /v2/auth/token/`` with ``client_id``,
``client_secret``, ``scope`` and ``project_id``) gives a bearer token for ``expires_in`` seconds
(3600); :class:`UnlocAuth` keeps it until a margin before then, on the clock's monotonic time,
and asks once more when the API answers 401 anyway. The secret goes only into that request's
body; it is a ``SecretStr`` everywhere else and in no message.

Errors are problem-style JSON: a 400's ``invalidParams`` become one line naming the parameter;
revoking an expired key (409) and a key already gone (404) are outcomes, not failures
(:class:`Revoked`). Creating keys starts a job (:meth:`UnlocCloud.create_keys`), which
:meth:`UnlocCloud.wait_for_job` polls with a growing pause until it ends (``succeeded``,
``failedValidation``, ``failedJob``, ``timeout``) or the wait's own budget is spent.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from blelock.clock import Clock, SystemClock
from blelock.cloud._http import (
    CloudClient,
    RetryPolicy,
    answer_as,
    is_transient,
    json_body,
    map_http_errors,
    parse_retry_after,
    with_retries,
)
from blelock.cloud._token_auth import RenewingBearerAuth
from blelock.config import Settings, Timeouts
from blelock.errors import (
    AuthFailed,
    CloudError,
    CloudJobRunning,
    CloudRejected,
    ConfigError,
    RateLimited,
    UsageError,
)
from blelock.vendors.unloc.models import (
    MAX_PAGE_LIMIT,
    Job,
    Key,
    Lock,
    NewKey,
    Problem,
    Token,
    check_phone,
)
from blelock.vendors.unloc.settings import unloc_settings

__all__ = ["TOKEN_MARGIN_S", "JobWait", "Revoked", "UnlocAuth", "UnlocCloud"]

TOKEN_MARGIN_S: Final = 60.0
"""A token is renewed this long before ``expires_in`` runs out: a request in flight at the last
second would otherwise meet a 401."""
_CREDENTIALS_HINT = (
    "check client_id, client_secret and project_id in the [unloc] section "
    "(BLELOCK_UNLOC__CLIENT_ID, BLELOCK_UNLOC__CLIENT_SECRET, BLELOCK_UNLOC__PROJECT_ID)"
)
_BUG_HINT = "report it with `--debug` output; the Unloc API may have changed"
_SERVER_HINT = "Unloc has trouble on its side; try again later"
_MAX_DETAIL = 300
M = TypeVar("M", bound=BaseModel)


class Revoked(enum.Enum):
    """What revoking one key came to: each means the key opens nothing any more."""

    REVOKED = "revoked"
    ALREADY_GONE = "already gone"
    """404: revoked before (keys revoked disappear) or never there."""
    EXPIRED = "expired"
    """409 "May not revoke expired keys": it reached its end and opens nothing already."""


class JobWait:
    """The pauses between polls of a job: 0.5 s doubling to 5 s, within ``budget_s``."""

    def __init__(self, budget_s: float = 300.0, first_s: float = 0.5, cap_s: float = 5.0) -> None:
        self.budget_s, self.first_s, self.cap_s = budget_s, first_s, cap_s

    def pauses(self) -> Generator[float, None, None]:
        pause = self.first_s
        while True:
            yield pause
            pause = min(self.cap_s, pause * 2)


def raise_for_problem(response: httpx.Response, what: str) -> None:
    """The tree's error for a non-2xx answer, naming ``what`` was refused and why."""
    status = response.status_code
    if 200 <= status < 300:
        return
    host = response.request.url.host
    try:
        problem: Problem | None = Problem.model_validate(json.loads(response.content))
    except (ValueError, ValidationError):
        problem = None
    said = problem.said()[:_MAX_DETAIL] if problem else ""
    because = f": {said}" if said else ""
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RateLimited(
            f"Unloc at {host} is rate limiting {what} (HTTP 429)", retry_after=retry_after
        )
    if status in (401, 403):
        raise AuthFailed(
            f"Unloc at {host} refused the credentials for {what} (HTTP {status}{because})",
            status=status,
            hint=_CREDENTIALS_HINT,
        )
    if status == 400 and problem is not None and problem.invalid_params:
        first = problem.invalid_params[0]
        more = len(problem.invalid_params) - 1
        also = f" (and {more} more)" if more else ""
        raise CloudRejected(
            f"Unloc refused {what}: {first.name}: {first.reason or 'invalid'}{also}",
            status=status,
            hint="correct that parameter and try again",
        )
    if status == 404:
        raise CloudRejected(
            f"Unloc at {host} does not know {what} (HTTP 404{because})",
            status=status,
            hint="check the id; it may have been removed",
        )
    if status >= 500:
        raise CloudRejected(
            f"Unloc at {host} failed {what} (HTTP {status}{because})",
            status=status,
            hint=_SERVER_HINT,
        )
    raise CloudRejected(
        f"Unloc at {host} refused {what} (HTTP {status}{because})",
        status=status,
        hint="correct the request as Unloc says" if said else _BUG_HINT,
    )


def _validate(model: type[M], value: object, what: str) -> M:
    return answer_as(model, value, who="Unloc", what=what, hint=_BUG_HINT)


def _field(body: object, name: str, what: str) -> object:
    if not isinstance(body, dict) or name not in body:
        raise CloudRejected(f"Unloc answered {what} without {name!r}", hint=_BUG_HINT)
    return body[name]


class UnlocAuth(RenewingBearerAuth):
    """Bearer tokens from the client-credentials grant, shared by concurrent requests."""

    def __init__(
        self,
        token_url: str,
        *,
        client_id: str,
        client_secret: SecretStr,
        project_id: str,
        scope: str,
        clock: Clock,
    ) -> None:
        super().__init__(clock)
        self._token_url = token_url
        self._client_id, self._secret = client_id, client_secret
        self._project_id, self._scope = project_id, scope
        self._asked_at = 0.0
        self.tokens_fetched = 0
        """How many tokens this object asked for (tests and diagnostics)."""

    def __repr__(self) -> str:
        return (
            f"UnlocAuth(client_id={self._client_id!r}, token={'yes' if self.has_token else 'no'})"
        )

    def token_request(self, request: httpx.Request) -> httpx.Request:
        self._asked_at = self._clock.monotonic()  # the lifetime counts from the asking
        return httpx.Request(
            "POST",
            self._token_url,
            json={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._secret.get_secret_value(),
                "scope": self._scope,
                "project_id": self._project_id,
            },
            headers={"Accept": "application/json"},
        )

    async def accept_token(self, response: httpx.Response) -> None:
        await response.aread()
        raise_for_problem(response, "the token request")
        token = _validate(Token, json_body(response), "the token request")
        self.keep(token.access_token, self._asked_at + max(0.0, token.expires_in - TOKEN_MARGIN_S))
        self.tokens_fetched += 1


def _rate_limited_only(exc: CloudError) -> bool:
    """A request that makes something is retried only when Unloc refused to look at it."""
    return isinstance(exc, RateLimited)


class UnlocCloud(CloudClient):
    """One Unloc project, as one API client: ``async with UnlocCloud.from_settings(s) as c:``."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: SecretStr,
        project_id: str,
        *,
        scope: str = "project.admin",
        timeouts: Timeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        root = base_url if base_url.endswith("/") else base_url + "/"
        self._clock = clock or SystemClock()
        self._retry = retry or RetryPolicy()
        self.project_id = project_id
        self.auth = UnlocAuth(
            root + "v2/auth/token/",
            client_id=client_id,
            client_secret=client_secret,
            project_id=project_id,
            scope=scope,
            clock=self._clock,
        )
        super().__init__(root, timeouts, transport=transport)
        self._client.auth = self.auth

    def __repr__(self) -> str:
        return f"UnlocCloud(base_url={str(self._client.base_url)!r}, project={self.project_id!r})"

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock | None = None, retry: RetryPolicy | None = None
    ) -> UnlocCloud:
        """The configured project, or a ConfigError naming what is missing."""
        section = unloc_settings(settings)
        missing = [
            name
            for name in ("client_id", "client_secret", "project_id")
            if getattr(section, name) is None
        ]
        if missing:
            raise ConfigError(
                f"Unloc needs {', '.join(missing)} in [unloc], and it is not configured",
                hint="set them in the config file's [unloc] section or as "
                + ", ".join(f"BLELOCK_UNLOC__{name.upper()}" for name in missing),
            )
        assert section.client_id and section.client_secret and section.project_id
        return cls(
            section.url,
            section.client_id,
            section.client_secret,
            section.project_id,
            scope=section.scope,
            timeouts=settings.timeouts,
            clock=clock,
            retry=retry,
        )

    def _path(self, *parts: str) -> str:
        return "/".join(("v2/projects", self.project_id, *parts))

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: object = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        retry_if = is_transient if method in ("GET", "PUT", "DELETE") else _rate_limited_only

        async def once() -> httpx.Response:
            with map_http_errors(self.host):
                response = await self._client.request(method, path, json=body, params=params)
            raise_for_problem(response, what)
            return response

        return await with_retries(once, self._retry, sleep=self._clock.sleep, retry_if=retry_if)

    # --- locks --------------------------------------------------------------------------

    async def locks(self) -> list[Lock]:
        what = "the project's locks"
        answer = json_body(await self._call("GET", self._path("locks"), what=what))
        items = _field(answer, "locks", what)
        return [_validate(Lock, item, what) for item in _list(items, "locks", what)]

    async def refresh_connection(self, connection_id: str) -> str:
        """Start a lock connection's refresh; the job's id."""
        what = f"refreshing lock connection {connection_id}"
        path = self._path("lock-connections", _plain_id(connection_id), "refresh")
        return _job_ref(json_body(await self._call("PUT", path, what=what)), what)

    # --- keys ---------------------------------------------------------------------------

    async def create_keys(self, keys: Sequence[NewKey]) -> str:
        """Start the job that creates ``keys`` (a batch: one refused key refuses all); its id."""
        if not keys:
            raise UsageError("no keys to create")
        what = f"creating {len(keys)} key(s)"
        body = {"keys": [key.body() for key in keys]}
        return _job_ref(
            json_body(await self._call("POST", self._path("keys"), what=what, body=body)), what
        )

    async def job(self, job_id: str) -> Job:
        what = f"job {job_id}"
        answer = json_body(
            await self._call("GET", self._path("jobs", _plain_id(job_id)), what=what)
        )
        return _validate(Job, _field(answer, "job", what), what)

    async def wait_for_job(
        self,
        job_id: str,
        *,
        wait: JobWait | None = None,
        on_poll: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job ended (whichever way: read ``status``); a CloudJobRunning (a
        CloudTimeout) when it is still running after the wait's budget (it goes on at Unloc)."""
        wait = wait or JobWait()
        started = self._clock.monotonic()
        for pause in wait.pauses():
            job = await self.job(job_id)
            if on_poll is not None:
                on_poll(job)
            if job.finished:
                return job
            left = wait.budget_s - (self._clock.monotonic() - started)
            if left <= 0:
                raise CloudJobRunning(
                    f"Unloc's job {job_id} is still {job.status} after {wait.budget_s:g} s",
                    hint=f"it goes on at Unloc: look again with `blelock unloc jobs show {job_id}`",
                )
            await self._clock.sleep(min(pause, left))
        raise AssertionError("unreachable: pauses() never ends")

    async def list_keys(
        self,
        *,
        app_user_id: str | None = None,
        lock_id: str | None = None,
        exclude_states: Sequence[str] = (),
        limit: int = MAX_PAGE_LIMIT,
    ) -> AsyncIterator[Key]:
        """Every key matching the filters, page by page (``startAfterId``: the last id)."""
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise UsageError(f"limit {limit} is out of range (1-{MAX_PAGE_LIMIT})")
        query: dict[str, str | int] = {"limit": limit}
        if app_user_id is not None:
            query["appUserId"] = check_phone(app_user_id)
        if lock_id is not None:
            query["lockId"] = _plain_id(lock_id)
        if exclude_states:
            query["excludeStates"] = ",".join(exclude_states)
        seen: set[str] = set()
        while True:
            what = "the project's keys"
            answer = json_body(await self._call("GET", self._path("keys"), what=what, params=query))
            items = _field(answer, "keys", what)
            page = [_validate(Key, item, what) for item in _list(items, "keys", what)]
            for key in page:
                yield key
            if len(page) < limit:
                return
            last = page[-1].id
            if last in seen:
                raise CloudRejected("Unloc repeated a page of keys", hint=_BUG_HINT)
            seen.add(last)
            query["startAfterId"] = last

    async def key(self, key_id: str) -> Key:
        what = f"key {key_id}"
        answer = json_body(
            await self._call("GET", self._path("keys", _plain_id(key_id)), what=what)
        )
        return _validate(Key, _field(answer, "key", what), what)

    async def revoke_key(self, key_id: str) -> Revoked:
        try:
            await self._call(
                "DELETE", self._path("keys", _plain_id(key_id)), what=f"revoking key {key_id}"
            )
        except CloudRejected as exc:
            if exc.status == 404:
                return Revoked.ALREADY_GONE
            if exc.status == 409:
                return Revoked.EXPIRED
            raise
        return Revoked.REVOKED

    async def revoke_keys(
        self, *, app_user_id: str | None = None, lock_id: str | None = None
    ) -> int | None:
        """Revoke every key of a phone, or of a lock, or of a phone on a lock; how many, when
        Unloc says."""
        if app_user_id is None and lock_id is None:
            raise UsageError("revoking in bulk needs a phone number or a lock (or both)")
        query: dict[str, str | int] = {}
        if app_user_id is not None:
            query["appUserId"] = check_phone(app_user_id)
        if lock_id is not None:
            query["lockId"] = _plain_id(lock_id)
        response = await self._call(
            "DELETE", self._path("shared-keys"), what="revoking keys in bulk", params=query
        )
        if not response.content:
            return None
        answer = json_body(response)
        revoked = answer.get("revokedKeys") if isinstance(answer, dict) else None
        return len(revoked) if isinstance(revoked, list) else None


def _list(value: object, name: str, what: str) -> list[object]:
    if not isinstance(value, list):
        raise CloudRejected(f"Unloc answered {what} with {name!r} not a list", hint=_BUG_HINT)
    return value


def _job_ref(answer: object, what: str) -> str:
    ref = _field(answer, "jobRef", what)
    job_id = ref.get("id") if isinstance(ref, dict) else None
    if not isinstance(job_id, str) or not job_id:
        raise CloudRejected(f"Unloc answered {what} without a job id", hint=_BUG_HINT)
    return job_id


def _plain_id(text: str) -> str:
    """An id as a path segment: refused when it could reach another route."""
    value = text.strip()
    if not value or any(c in value for c in "/?#%") or not value.isprintable():
        raise UsageError(f"{text!r} is not an Unloc id")
    return value


def job_summary(job: Job) -> dict[str, Any]:
    """A finished (or running) job as flat facts."""
    data = job.result_data
    return {
        "job_id": job.id,
        "status": job.status,
        "failure_reason": job.failure_reason,
        "created": len(data.created_keys) if data else 0,
        "failed": len(data.failed_keys) if data else 0,
        "creating": len(data.creating_keys) if data else 0,
    }
