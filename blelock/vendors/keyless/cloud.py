"""The ASSA ABLOY Keyless Administration API v2 client, and the operating-device stand-in client.

Authentication (vendor doc): ``POST /login`` with the administrator's ``userId`` + ``accessKey``
and the ``X-Api-Key`` header gives a token valid one hour; every other call carries
``X-Api-Key``, ``Authorization: Bearer <token>`` and the versioned vendor media type in
``Accept``. :class:`KeylessAuth` does this for every request of the client, logs in again a
margin before the hour is up, and once more when the platform answers 401 anyway.

Errors are RFC 7807 problem+json: 403 is the API key, 401 the credentials, 404 an unknown
resource, 400/409/422 a refused request (the vendor's ``detail`` is quoted), 429 rate limiting
(waited out, bounded, honouring ``Retry-After``), 5xx trouble on the platform's side.

The document names two paths outright (``/login``, ``/locking-device``); the others follow the
same singular-noun pattern and the query-parameter names it gives (``user-id``,
``gateway-device-id`` ...); revoking an invitation is ``DELETE``, cancelling a remote command
``POST .../cancel`` (the simulated platform reads the document the same way). They are all in
:data:`PATHS`, in one place, for that reason.

:class:`KeylessMobile` speaks the ``/mobile/...`` routes of the simulated platform: the
project's documented stand-in for the non-public Mobile API (see simulators/keyless_cloud/).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
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
    CloudRejected,
    ConfigError,
    RateLimited,
    UnknownLock,
    UsageError,
)
from blelock.vendors.keyless.models import (
    AssociationRequest,
    ClaimGatewayRequest,
    ClaimingStatus,
    CreatedId,
    CreatedUser,
    CreateLockingDeviceRequest,
    CreateUserRequest,
    GatewayAssociation,
    GatewayAuditLogEntry,
    GatewayDevice,
    GatewaySystemLogEntry,
    InvitationDelivery,
    InvitationFormat,
    InvitationRequest,
    IssuedOfflineKey,
    KeylessLimits,
    LockingDevice,
    LockingDeviceAuditLogEntry,
    LockingDeviceSystemLogEntry,
    MobileActivation,
    MobileCertificate,
    MobileItems,
    MobileOfflineKey,
    MobileOperatingKey,
    MobileRevocations,
    MobileTimeStatement,
    MobileUpload,
    OfflineKeyDelivery,
    OfflineKeyMetadata,
    OfflineKeyRequest,
    OperatingDevice,
    OperatingDeviceInvitation,
    OperationType,
    Page,
    Permission,
    PermissionRequest,
    Problem,
    RemoteCommand,
    RemoteCommandAction,
    RemoteCommandRequest,
    Role,
    SortDirection,
    Token,
    User,
    check_association_room,
    check_aware,
    check_choice,
    check_claiming_code,
    check_id,
    check_invitation_validity,
    check_locking_device_name,
    check_offline_key,
    check_page_limit,
    check_permission,
    check_phone_number,
    check_sequence_number,
    utc_text,
)
from blelock.vendors.keyless.protocol import LIMITS
from blelock.vendors.keyless.settings import keyless_settings

__all__ = ["PATHS", "KeylessAuth", "KeylessCloud", "KeylessMobile"]

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
_JSON_PATCH: Final = "application/json-patch+json"
_LOGS: Final = {  # PATHS key: (the log, whose log, the query parameter naming its owner)
    "locking-device-system-log": ("system log", "locking device", "locking-device-id"),
    "locking-device-audit-log": ("audit log", "locking device", "locking-device-id"),
    "gateway-system-log": ("system log", "gateway device", "gateway-device-id"),
    "gateway-audit-log": ("audit log", "gateway device", "gateway-device-id"),
}

_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _rate_limited(exc: CloudError) -> bool:
    """A request that is not idempotent is retried only when the platform refused to look at
    it: a 5xx or a timeout may have created the resource already."""
    return isinstance(exc, RateLimited)


# --- errors ---------------------------------------------------------------------------------


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


# --- authentication -------------------------------------------------------------------------


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


# --- shared plumbing ------------------------------------------------------------------------


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


# --- the Administration API -----------------------------------------------------------------


class KeylessCloud(_KeylessClient):
    """The Keyless Administration API v2 of one system, as one administrator.

    Use as ``async with KeylessCloud(url, api_key, user_id, access_key) as cloud:``. List
    methods return async iterators that fetch the next page only when the last one is used up.
    """

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | str,
        user_id: str,
        access_key: SecretStr | str,
        *,
        timeouts: Timeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        clock = clock or SystemClock()
        root = _root(base_url)
        auth = KeylessAuth(
            root + PATHS["login"],
            principal_field="userId",
            principal_id=check_id(str(user_id), "login: userId"),
            access_key=_secret(access_key, "access key"),
            api_key=_secret(api_key, "API key"),
            clock=clock,
        )
        super().__init__(
            root, auth, timeouts=timeouts, transport=transport, retry=retry, clock=clock
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> KeylessCloud:
        """The configured system, or a ConfigError naming the missing setting."""
        section = keyless_settings(settings)
        missing = [
            name for name in ("api_key", "user_id", "access_key") if getattr(section, name) is None
        ]
        if missing:
            raise ConfigError(
                f"the Keyless platform needs {', '.join(missing)} in [keyless], and it is not "
                "configured",
                hint="set them in the config file's [keyless] section or as BLELOCK_KEYLESS__"
                + " / BLELOCK_KEYLESS__".join(name.upper() for name in missing),
            )
        assert section.api_key is not None and section.access_key is not None
        return cls(
            section.url,
            section.api_key,
            str(section.user_id),
            section.access_key,
            timeouts=settings.timeouts,
            retry=retry,
            clock=clock,
        )

    # --- the shapes most resources share ----------------------------------------------

    async def _get_one(
        self,
        model: type[_ModelT],
        path_key: str,
        identifier: str,
        noun: str,
        *,
        label: str | None = None,
        lock: bool = False,
    ) -> _ModelT:
        path, what, lock_id = _resource(path_key, identifier, noun, label, lock)
        return await self._fetch(model, "GET", path, what=what, lock_id=lock_id)

    async def _delete_one(
        self,
        path_key: str,
        identifier: str,
        noun: str,
        *,
        label: str | None = None,
        lock: bool = False,
    ) -> None:
        path, what, lock_id = _resource(path_key, identifier, noun, label, lock)
        await self._call("DELETE", path, what=what, lock_id=lock_id)

    def _list(
        self,
        model: type[_ModelT],
        path_key: str,
        what: str,
        limit: int,
        *,
        param: str | None = None,
        value: str | None = None,
        label: str | None = None,
    ) -> AsyncIterator[_ModelT]:
        """The pages of ``PATHS[path_key]``, optionally filtered by the id ``value`` in the query
        parameter ``param`` (a malformed id is refused under ``label``, default ``param``).
        The limit is checked before the id."""
        check_page_limit(limit)
        params: dict[str, str | int | None] = {}
        if param is not None:
            params[param] = None if value is None else check_id(value, label or param)
        return self._pages(model, PATHS[path_key], what=what, limit=limit, params=params)

    def _log_pages(
        self,
        model: type[_ModelT],
        path_key: str,
        identifier: str,
        sequence_number_greater_than: int | None,
        after: dt.datetime | None,
        sort: SortDirection,
        limit: int,
    ) -> AsyncIterator[_ModelT]:
        """A log of :data:`_LOGS`; the owner's id is checked before the limit; a locking
        device's 404 is an UnknownLock."""
        kind, owner, param = _LOGS[path_key]
        checked = check_id(identifier, f"{kind}: {param}")
        check_page_limit(limit)
        query = _log_query(sequence_number_greater_than, after, sort)
        return self._pages(
            model,
            PATHS[path_key],
            what=f"the {kind} of {owner} {checked}",
            limit=limit,
            params={param: checked, **query},
            lock_id=checked if owner == "locking device" else None,
        )

    # --- users --------------------------------------------------------------------------

    def users(self, *, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT) -> AsyncIterator[User]:
        return self._list(User, "user", "the users", limit)

    async def create_user(self, role: Role) -> CreatedUser:
        """A new user; its access key is in the answer, and only there."""
        body = CreateUserRequest(role=check_choice(Role, role, "user: role")).body()
        return await self._fetch(CreatedUser, "POST", PATHS["user"], what="a new user", body=body)

    async def get_user(self, user_id: str) -> User:
        return await self._get_one(User, "user", user_id, "user")

    async def delete_user(self, user_id: str) -> None:
        """Also removes the user's permissions and operating devices (vendor doc)."""
        await self._delete_one("user", user_id, "user")

    # --- operating devices and invitations -----------------------------------------------

    async def invite_operating_device(
        self,
        user_id: str,
        *,
        delivery: InvitationDelivery = InvitationDelivery.NONE,
        phone_number: str | None = None,
        validity: dt.timedelta | None = None,
        format: InvitationFormat | None = None,
    ) -> OperatingDeviceInvitation:
        """An invitation (default validity 24 h); ``NONE`` delivery leaves delivering it to us."""
        user_id = check_id(user_id, "invitation: userId")
        delivery = check_choice(InvitationDelivery, delivery, "invitation: deliveryMechanism")
        check_invitation_validity(validity)
        check_phone_number(phone_number, "invitation", required=delivery is InvitationDelivery.SMS)
        body = InvitationRequest(
            user_id=user_id,
            validity_duration=validity,
            delivery_mechanism=delivery,
            phone_number=phone_number,
            format=None
            if format is None
            else check_choice(InvitationFormat, format, "invitation: format"),
        ).body()
        return await self._fetch(
            OperatingDeviceInvitation,
            "POST",
            PATHS["invitation"],
            what=f"an operating device invitation for user {user_id}",
            body=body,
        )

    async def revoke_invitation(self, invitation_id: str) -> None:
        await self._delete_one(
            "invitation", invitation_id, "operating device invitation", label="invitation"
        )

    def operating_devices(
        self, *, user_id: str | None = None, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[OperatingDevice]:
        return self._list(
            OperatingDevice,
            "operating-device",
            "the operating devices",
            limit,
            param="user-id",
            value=user_id,
            label="operating devices: user-id",
        )

    async def delete_operating_device(self, operating_device_id: str) -> None:
        await self._delete_one("operating-device", operating_device_id, "operating device")

    # --- locking devices -----------------------------------------------------------------

    def locking_devices(
        self,
        *,
        claiming_status: ClaimingStatus | None = None,
        serial_number: str | None = None,
        limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT,
    ) -> AsyncIterator[LockingDevice]:
        check_page_limit(limit)
        status = (
            None
            if claiming_status is None
            else check_choice(
                ClaimingStatus, claiming_status, "locking devices: claiming-status"
            ).value
        )
        return self._pages(
            LockingDevice,
            PATHS["locking-device"],
            what="the locking devices",
            limit=limit,
            params={"claiming-status": status, "serial-number": serial_number},
        )

    async def create_locking_device(self, name: str) -> LockingDevice:
        """An unclaimed placeholder that a physical lock claims later (via an operating device)."""
        body = CreateLockingDeviceRequest(name=check_locking_device_name(name)).body()
        return await self._fetch(
            LockingDevice, "POST", PATHS["locking-device"], what="a new locking device", body=body
        )

    async def get_locking_device(self, locking_device_id: str) -> LockingDevice:
        return await self._get_one(
            LockingDevice, "locking-device", locking_device_id, "locking device", lock=True
        )

    async def rename_locking_device(self, locking_device_id: str, name: str) -> None:
        """JSON Patch ``replace /name``: the only change the API allows."""
        path, what, lock = _resource(
            "locking-device", locking_device_id, "locking device", lock=True
        )
        patch = [{"op": "replace", "path": "/name", "value": check_locking_device_name(name)}]
        await self._call(
            "PATCH", path, what=what, body=patch, content_type=_JSON_PATCH, lock_id=lock
        )

    async def delete_locking_device(self, locking_device_id: str) -> None:
        """Destructive for a claimed lock: it cannot be claimed again (vendor doc)."""
        await self._delete_one("locking-device", locking_device_id, "locking device", lock=True)

    def locking_device_system_log(
        self,
        locking_device_id: str,
        *,
        sequence_number_greater_than: int | None = None,
        after: dt.datetime | None = None,
        sort: SortDirection = SortDirection.ASC,
        limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT,
    ) -> AsyncIterator[LockingDeviceSystemLogEntry]:
        return self._log_pages(
            LockingDeviceSystemLogEntry,
            "locking-device-system-log",
            locking_device_id,
            sequence_number_greater_than,
            after,
            sort,
            limit,
        )

    def locking_device_audit_log(
        self,
        locking_device_id: str,
        *,
        sequence_number_greater_than: int | None = None,
        after: dt.datetime | None = None,
        sort: SortDirection = SortDirection.ASC,
        limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT,
    ) -> AsyncIterator[LockingDeviceAuditLogEntry]:
        return self._log_pages(
            LockingDeviceAuditLogEntry,
            "locking-device-audit-log",
            locking_device_id,
            sequence_number_greater_than,
            after,
            sort,
            limit,
        )

    # --- permissions ---------------------------------------------------------------------

    def _permission_body(
        self,
        user_id: str,
        locking_device_id: str,
        operation: OperationType,
        start: dt.datetime,
        end: dt.datetime,
        operating_key_validity: dt.timedelta,
    ) -> dict[str, object]:
        check_permission(start, end, operating_key_validity)
        return PermissionRequest(
            user_id=check_id(user_id, "permission: userId"),
            locking_device_id=check_id(locking_device_id, "permission: lockingDeviceId"),
            operation_type=check_choice(OperationType, operation, "permission: operationType"),
            operating_key_validity_duration=operating_key_validity,
            start=start,
            end=end,
        ).body()

    async def grant_permission(
        self,
        user_id: str,
        locking_device_id: str,
        operation: OperationType,
        start: dt.datetime,
        end: dt.datetime,
        *,
        operating_key_validity: dt.timedelta = KeylessLimits.OPERATING_KEY_VALIDITY_DEFAULT,
    ) -> str:
        """A SINGLE_INTERVAL permission from ``start`` to ``end``; returns its id.

        ``operating_key_validity`` (a timedelta, 1 to 31 days) bounds how long an operating key
        downloaded under it stays usable offline."""
        body = self._permission_body(
            user_id, locking_device_id, operation, start, end, operating_key_validity
        )
        created = await self._fetch(
            CreatedId, "POST", PATHS["permission"], what="a new permission", body=body
        )
        return created.id

    def permissions(
        self, *, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[Permission]:
        return self._list(Permission, "permission", "the permissions", limit)

    async def get_permission(self, permission_id: str) -> Permission:
        return await self._get_one(Permission, "permission", permission_id, "permission")

    async def update_permission(
        self,
        permission_id: str,
        user_id: str,
        locking_device_id: str,
        operation: OperationType,
        start: dt.datetime,
        end: dt.datetime,
        *,
        operating_key_validity: dt.timedelta = KeylessLimits.OPERATING_KEY_VALIDITY_DEFAULT,
    ) -> None:
        """Replaces every field; the permission keeps its id."""
        path, what, _ = _resource("permission", permission_id, "permission")
        body = self._permission_body(
            user_id, locking_device_id, operation, start, end, operating_key_validity
        )
        await self._call("PUT", path, what=what, body=body)

    async def revoke_permission(self, permission_id: str) -> None:
        """Operating keys already downloaded stay valid until they expire (vendor doc)."""
        await self._delete_one("permission", permission_id, "permission")

    # --- offline keys --------------------------------------------------------------------

    async def issue_offline_key(
        self,
        operating_device_id: str,
        locking_device_id: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        delivery: OfflineKeyDelivery = OfflineKeyDelivery.NONE,
        phone_number: str | None = None,
        app_link_base_url: str | None = None,
    ) -> IssuedOfflineKey:
        """A key valid from ``start`` (at most 30 days ahead) to ``end`` (at most 24 h later).

        The answer holds the primary key value and, during a re-keying, an alternative: give
        both to the operating device. Their values are secrets."""
        delivery = check_choice(OfflineKeyDelivery, delivery, "offline key: deliveryMechanism")
        check_offline_key(
            start, end, self._clock.now_utc(), delivery, phone_number, app_link_base_url
        )
        body = OfflineKeyRequest(
            operating_device_id=check_id(operating_device_id, "offline key: operatingDeviceId"),
            locking_device_id=check_id(locking_device_id, "offline key: lockingDeviceId"),
            start_datetime=start,
            end_datetime=end,
            app_link_base_url=app_link_base_url,
            delivery_mechanism=delivery,
            phone_number=phone_number,
        ).body()
        return await self._fetch(
            IssuedOfflineKey,
            "POST",
            PATHS["offline-key"],
            what=f"an offline key for locking device {locking_device_id}",
            body=body,
        )

    def offline_keys(
        self, *, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[OfflineKeyMetadata]:
        """Metadata of the issued offline keys: never their values (vendor doc)."""
        return self._list(OfflineKeyMetadata, "offline-key", "the offline keys", limit)

    # --- gateways, associations, remote commands (experimental in the vendor doc) ---------

    async def claim_gateway(self, claiming_code: str) -> GatewayDevice:
        body = ClaimGatewayRequest(claiming_code=check_claiming_code(claiming_code)).body()
        return await self._fetch(
            GatewayDevice, "POST", PATHS["gateway"], what="claiming a gateway device", body=body
        )

    def gateways(
        self, *, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[GatewayDevice]:
        return self._list(GatewayDevice, "gateway", "the gateway devices", limit)

    async def get_gateway(self, gateway_id: str) -> GatewayDevice:
        return await self._get_one(GatewayDevice, "gateway", gateway_id, "gateway device")

    async def delete_gateway(self, gateway_id: str) -> None:
        await self._delete_one("gateway", gateway_id, "gateway device")

    def gateway_system_log(
        self,
        gateway_id: str,
        *,
        sequence_number_greater_than: int | None = None,
        sort: SortDirection = SortDirection.ASC,
        limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT,
    ) -> AsyncIterator[GatewaySystemLogEntry]:
        return self._log_pages(
            GatewaySystemLogEntry,
            "gateway-system-log",
            gateway_id,
            sequence_number_greater_than,
            None,
            sort,
            limit,
        )

    def gateway_audit_log(
        self,
        gateway_id: str,
        *,
        sequence_number_greater_than: int | None = None,
        sort: SortDirection = SortDirection.ASC,
        limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT,
    ) -> AsyncIterator[GatewayAuditLogEntry]:
        return self._log_pages(
            GatewayAuditLogEntry,
            "gateway-audit-log",
            gateway_id,
            sequence_number_greater_than,
            None,
            sort,
            limit,
        )

    async def associate(self, gateway_id: str, locking_device_id: str) -> GatewayAssociation:
        """Let the gateway control this lock; refused before sending if it already has five."""
        gateway = check_id(gateway_id, "gateway association: gatewayDeviceId")
        lock = check_id(locking_device_id, "gateway association: lockingDeviceId")
        existing = [
            association
            async for association in self.associations(
                gateway_id=gateway, limit=KeylessLimits.PAGE_LIMIT_MAX
            )
        ]
        check_association_room(len(existing))
        body = AssociationRequest(gateway_device_id=gateway, locking_device_id=lock).body()
        return await self._fetch(
            GatewayAssociation,
            "POST",
            PATHS["association"],
            what=f"an association of gateway device {gateway} with locking device {lock}",
            body=body,
        )

    def associations(
        self, *, gateway_id: str | None = None, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[GatewayAssociation]:
        return self._list(
            GatewayAssociation,
            "association",
            "the gateway device associations",
            limit,
            param="gateway-device-id",
            value=gateway_id,
        )

    async def get_association(self, association_id: str) -> GatewayAssociation:
        return await self._get_one(
            GatewayAssociation,
            "association",
            association_id,
            "gateway device association",
            label="gateway association",
        )

    async def delete_association(self, association_id: str) -> None:
        await self._delete_one(
            "association",
            association_id,
            "gateway device association",
            label="gateway association",
        )

    async def issue_remote_command(
        self,
        gateway_id: str,
        locking_device_id: str,
        action: RemoteCommandAction = RemoteCommandAction.OPEN,
    ) -> RemoteCommand:
        """A command valid for five minutes from issuance (the platform sets the window)."""
        body = RemoteCommandRequest(
            gateway_device_id=check_id(gateway_id, "remote command: gatewayDeviceId"),
            locking_device_id=check_id(locking_device_id, "remote command: lockingDeviceId"),
            action=check_choice(RemoteCommandAction, action, "remote command: action"),
        ).body()
        return await self._fetch(
            RemoteCommand, "POST", PATHS["remote-command"], what="a remote command", body=body
        )

    def remote_commands(
        self, *, gateway_id: str | None = None, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[RemoteCommand]:
        return self._list(
            RemoteCommand,
            "remote-command",
            "the remote commands",
            limit,
            param="gateway-device-id",
            value=gateway_id,
        )

    async def get_remote_command(self, command_id: str) -> RemoteCommand:
        return await self._get_one(RemoteCommand, "remote-command", command_id, "remote command")

    async def cancel_remote_command(self, command_id: str) -> None:
        """Only before a gateway acknowledged it (vendor doc)."""
        path, what, _ = _resource("remote-command", command_id, "remote command")
        await self._call("POST", f"{path}/cancel", what=what)


# --- the operating-device stand-in ----------------------------------------------------------


class KeylessMobile(_KeylessClient):
    """What an operating device asks of the platform (the project's stand-in for the non-public
    Mobile API): activation, operating and offline keys, revocations, log upload, re-keying.

    Created without credentials, it can only :meth:`activate`; that stores the credentials the
    platform hands out, and every later call logs in with them.
    """

    _accept = "application/json"
    _credentials_hint = _DEVICE_CREDENTIALS_HINT

    def __init__(
        self,
        base_url: str,
        *,
        operating_device_id: str | None = None,
        access_key: SecretStr | str | None = None,
        api_key: SecretStr | str | None = None,
        timeouts: Timeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        clock = clock or SystemClock()
        root = _root(base_url)
        self._api_key = None if api_key is None else _secret(api_key, "API key")
        auth = KeylessAuth(
            root + PATHS["mobile-login"],
            principal_field="operatingDeviceId",
            principal_id=None
            if operating_device_id is None
            else check_id(operating_device_id, "operating device"),
            access_key=None if access_key is None else _secret(access_key, "access key"),
            api_key=self._api_key,
            clock=clock,
            credentials_hint=_DEVICE_CREDENTIALS_HINT,
        )
        super().__init__(
            root, auth, timeouts=timeouts, transport=transport, retry=retry, clock=clock
        )

    async def activate(self, invitation_code: str, public_key: bytes) -> MobileActivation:
        """Accept an invitation with this device's public key (65-byte uncompressed P-256)."""
        if not invitation_code.strip():
            raise UsageError("activation: the invitation code is empty")
        if len(public_key) != 65 or public_key[0] != 0x04:
            raise UsageError(
                "activation: the public key must be a 65-byte uncompressed P-256 point"
            )
        body = {"invitationCode": invitation_code.strip(), "publicKey": _b64(public_key)}
        activation = await self._fetch(
            MobileActivation,
            "POST",
            PATHS["mobile-activation"],
            what="activation",
            body=body,
            authenticated=False,
        )
        self.auth.set_credentials(activation.operating_device_id, activation.access_key)
        return activation

    async def operating_keys(self) -> list[MobileOperatingKey]:
        """One per permission of this device's user that is valid now."""
        items = await self._fetch(
            MobileItems[MobileOperatingKey],
            "GET",
            PATHS["mobile-operating-keys"],
            what="the operating keys",
        )
        return items.items

    async def offline_keys(self) -> list[MobileOfflineKey]:
        """The values of the offline keys issued to this device (with their private keys)."""
        items = await self._fetch(
            MobileItems[MobileOfflineKey],
            "GET",
            PATHS["mobile-offline-keys"],
            what="the offline keys",
        )
        return items.items

    async def revocations(self) -> MobileRevocations:
        return await self._fetch(
            MobileRevocations, "GET", PATHS["mobile-revocations"], what="the revocation list"
        )

    async def upload_audit_log(
        self, locking_device_id: str, entries: Sequence[bytes]
    ) -> MobileUpload:
        """Signed audit entries; the platform keeps one per (lock, sequence number), so a
        retried upload is safe."""
        return await self._upload(locking_device_id, "audit-log", entries)

    async def submit_csr(
        self, locking_device_id: str, csr_der: bytes, endorsement: bytes = b""
    ) -> None:
        """The lock's certificate signing request from a re-keying visit (DER PKCS#10) and the
        lock's current key's endorsement of it (the platform refuses a CSR without one)."""
        lock = check_id(locking_device_id, "csr: locking device")
        if not csr_der:
            raise UsageError("csr: the certificate signing request is empty")
        await self._call(
            "POST",
            f"{PATHS['mobile-locking-device']}/{lock}/csr",
            what=f"the certificate signing request of locking device {lock}",
            body={"csr": _b64(csr_der), "endorsement": _b64(endorsement)},
            lock_id=lock,
            idempotent=True,
        )

    async def certificate(self, locking_device_id: str) -> bytes | None:
        """The certificate issued for the lock's pending CSR (DER), or None if none is."""
        lock = check_id(locking_device_id, "certificate: locking device")
        try:
            answer = await self._fetch(
                MobileCertificate,
                "GET",
                f"{PATHS['mobile-locking-device']}/{lock}/certificate",
                what=f"a certificate for locking device {lock}",
            )
        except CloudRejected as exc:
            if exc.status == 404:
                return None
            raise
        return answer.certificate

    async def time_statement(self, locking_device_id: str, nonce: bytes) -> bytes:
        """The platform's signed time for the lock that issued ``nonce`` (needs an UPDATE_TIME
        permission in force): lets the lock go back more than its clock tolerance."""
        lock = check_id(locking_device_id, "time statement: locking device")
        if len(nonce) != LIMITS.nonce_size:
            raise UsageError(f"time statement: the nonce must be {LIMITS.nonce_size} bytes")
        answer = await self._fetch(
            MobileTimeStatement,
            "POST",
            f"{PATHS['mobile-locking-device']}/{lock}/time-statement",
            what=f"a time statement for locking device {lock}",
            body={"nonce": _b64(nonce)},
            lock_id=lock,
            idempotent=True,  # a second statement for the same nonce changes nothing
        )
        return answer.statement

    async def platform_ca(self) -> bytes:
        """The platform CA certificate (DER) the companion pins."""
        answer = await self._fetch(
            MobileCertificate, "GET", PATHS["mobile-ca"], what="the platform CA certificate"
        )
        return answer.certificate

    async def _upload(
        self, locking_device_id: str, kind: str, entries: Sequence[bytes]
    ) -> MobileUpload:
        lock = check_id(locking_device_id, f"{kind} upload: locking device")
        return await self._fetch(
            MobileUpload,
            "POST",
            f"{PATHS['mobile-locking-device']}/{lock}/{kind}",
            what=f"the {kind} of locking device {lock}",
            body={"entries": [_b64(entry) for entry in entries]},
            lock_id=lock,
            idempotent=True,
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
