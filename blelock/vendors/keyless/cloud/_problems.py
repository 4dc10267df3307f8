"""How the Keyless platform's problem+json answers become blelock's errors, and the hints
they carry.
"""

from __future__ import annotations

import json
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from blelock.cloud._http import answer_as, parse_retry_after
from blelock.errors import AuthFailed, CloudRejected, RateLimited, UnknownLock
from blelock.vendors.keyless.models import Problem

__all__ = ["raise_for_problem"]


_MAX_DETAIL = 300
"""Characters of the vendor's ``detail`` quoted in an error (free text)."""
_API_KEY_HINT = "check the Keyless API key (keyless_api_key / BLELOCK_KEYLESS_API_KEY)"
_ADMIN_CREDENTIALS_HINT = (
    "check the administrator's userId and access key "
    "(keyless_user_id / keyless_access_key, BLELOCK_KEYLESS_USER_ID / BLELOCK_KEYLESS_ACCESS_KEY)"
)
_DEVICE_CREDENTIALS_HINT = "activate this operating device again with a fresh invitation"
_BUG_HINT = "report it with `--debug` output; the vendor's API may have changed"
_SERVER_HINT = "the Keyless platform has trouble on its side; try again later"


_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _problem(response: httpx.Response) -> Problem | None:
    try:
        return Problem.model_validate(json.loads(response.content))
    except (ValueError, ValidationError):
        return None


def raise_for_problem(
    response: httpx.Response,
    what: str,
    *,
    credentials_hint: str = _ADMIN_CREDENTIALS_HINT,
    login: bool = False,
    lock_id: str | None = None,
    names_resource: bool = True,
) -> None:
    """Raise the tree's error for a non-2xx answer (problem+json or not); quiet for 2xx.

    ``what`` names the resource or action (``"locking device 0282..."``, ``"login"``) so the
    message says what was refused; ``lock_id`` turns a 404 into :class:`UnknownLock`.
    ``names_resource`` is False for a creation: its 404 is about an id in the body, which the
    vendor's ``detail`` names.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    host = response.request.url.host
    problem = _problem(response)
    said = (problem.detail or problem.title or "").strip()[:_MAX_DETAIL] if problem else ""
    because = f": {said}" if said else ""
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        wait = f"; it asks to wait {retry_after:g} s" if retry_after is not None else ""
        raise RateLimited(
            f"the Keyless platform at {host} is rate limiting this API key (HTTP 429) "
            f"for {what}{wait}",
            retry_after=retry_after,
        )
    if status == 403:
        raise AuthFailed(
            f"the Keyless platform at {host} refused the API key for {what} (HTTP 403{because})",
            status=status,
            hint=_API_KEY_HINT,
        )
    if status == 401:
        message = (
            f"the Keyless platform at {host} refused the credentials at {what} (HTTP 401{because})"
            if login
            else f"the Keyless platform at {host} refused a freshly issued token for {what} "
            f"(HTTP 401{because})"
        )
        raise AuthFailed(message, status=status, hint=credentials_hint)
    if status == 404 and names_resource:
        text = f"the Keyless platform at {host} does not know {what} (HTTP 404{because})"
        if lock_id is not None:
            raise UnknownLock(text, status=status, hint="check the locking device's id")
        raise CloudRejected(
            text, status=status, hint="check the identifier; the resource may have been deleted"
        )
    if status >= 500:
        raise CloudRejected(
            f"the Keyless platform at {host} failed {what} (HTTP {status}{because})",
            status=status,
            hint=_SERVER_HINT,
        )
    title = f" {problem.title}" if problem and problem.title else ""
    raise CloudRejected(
        f"the Keyless platform at {host} refused {what} (HTTP {status}{title}){because}",
        status=status,
        hint="correct the request as the platform says" if said else _BUG_HINT,
    )


def _validate(model: type[_ModelT], value: object, what: str, host: str) -> _ModelT:
    who = f"the Keyless platform at {host}"
    return answer_as(model, value, who=who, what=what, hint=_BUG_HINT)
