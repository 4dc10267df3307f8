"""The kiosk's local HTTP API (FastAPI): JSON in and out, a bearer token on every route.

The token is checked by an ASGI middleware, before routing and before the body is read, so a
request without it learns nothing (not even whether its body would have been valid) and changes
nothing. Only ``/openapi.json`` is open: it describes the API and holds no state.

Failures carry the error tree's fields: what happened, to which lock, at which step, what to do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import importlib
import inspect
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Literal, Union

from fastapi import Body, FastAPI, Path, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    create_model,
    field_validator,
)

from blelock import __version__, access, vendors
from blelock.errors import (
    BlelockError,
    ConfigError,
    DeviceNotFound,
    LinkError,
    LockRefused,
    OfflineKeyError,
    OutOfSlots,
    StoreFull,
    UsageError,
)
from blelock.grants import Code
from blelock.model import KeyHealth, PhoneKeyRequest, WeeklyWindow
from blelock.service.logs import logger
from blelock.service.runner import (
    Health,
    Job,
    LockBusy,
    Runner,
    SeenLock,
    ServiceStopping,
    VendorHealth,
)
from blelock.store.outbox import room_problem
from blelock.vendors.base import Facts, OperationSpec, OptionSpec, OptionValue, VendorContext

__all__ = ["OPEN_PATHS", "create_app"]

OPEN_PATHS = frozenset({"/openapi.json"})
BUSY_RETRY_AFTER_S = 5
MAX_BODY_BYTES = 16 * 1024
"""Every request body the API takes is a few hundred bytes of JSON."""
REFUSAL_LOG_INTERVAL_S = 60.0
"""At most one log line per this long about refused tokens (with how many were refused)."""
"""What a busy answer suggests: about one unlock's time."""

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_App = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

_OPTION_TEXT = r"^[\x21-\x7e]{1,64}$"
"""An option given as text: printable ASCII, no spaces (a tracking key, a number, …)."""
_PACKAGE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.zip$"

LockIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        description="the lock's id as its vendor writes it (see /v1/locks)",
    ),
]
JobIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
GrantIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


# --- models: the API's boundary -------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _known_vendor(name: str | None) -> str | None:
    if name is not None and name not in vendors.names():
        raise ValueError(f"no vendor {name!r}; known: {', '.join(vendors.names())}")
    return name


class OperationBody(_Strict):
    """What every operation takes; each route's model adds the plugins' options (and a
    firmware package where an operation takes one)."""

    mode: Literal["auto", "online", "offline"] = Field(
        default="auto",
        description="auto: the vendor's cloud, or what was synced earlier when it is unreachable",
    )
    vendor: Annotated[str | None, AfterValidator(_known_vendor)] = Field(
        default=None,
        description="only needed for a lock the service has not heard, whose id several "
        "vendors could own",
    )
    wait: bool = Field(
        default=True, description="answer when done (true) or at once with a job to poll"
    )


def _option_field(specs: list[OptionSpec]) -> tuple[Any, Any]:
    """A flag is a boolean; a value is text (checked by the option's parser) or a number."""
    text = Annotated[str, Field(pattern=_OPTION_TEXT)]
    kinds: list[Any] = []
    if any(spec.flag for spec in specs):
        kinds.append(bool)
    if not all(spec.flag for spec in specs):
        kinds += [text, int]
    helps = "; ".join(dict.fromkeys(spec.help for spec in specs))
    return (Union[(*kinds, None)], Field(default=None, description=helps))


def body_model(
    operation: str, options: dict[str, list[OptionSpec]], package: bool | None
) -> type[OperationBody]:
    """The body of ``POST /v1/locks/{id}/{operation}``: every option of every plugin (one its
    lock's vendor does not take is refused with the reason), and ``package`` when some
    vendor's operation of this name takes one (required when every one does)."""
    fields: dict[str, Any] = {name: _option_field(specs) for name, specs in options.items()}
    if package is not None:
        about = "file name of a DFU package in the service's firmware folder"
        fields["package"] = (
            (str, Field(pattern=_PACKAGE, description=about))
            if package
            else (str | None, Field(default=None, pattern=_PACKAGE, description=about))
        )
    title = "".join(part.title() for part in operation.replace("_", "-").split("-"))
    model: type[OperationBody] = create_model(f"{title}Request", __base__=OperationBody, **fields)
    return model


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class WeeklyWindowBody(_Strict):
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    start: dt.time = Field(description="lock-local wall-clock time, e.g. 09:00")
    end: dt.time | None = Field(default=None, description="lock-local; null: until midnight")


class PhoneKeyBody(_Strict):
    """A key for a renter's phone, which the vendor's own app opens the lock with."""

    vendor: Annotated[str | None, AfterValidator(_known_vendor)] = Field(
        default=None, description="only needed when several vendors give keys to phones"
    )
    lock_id: str = Field(min_length=1, max_length=64, description="the vendor's lock id")
    phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164, e.g. +4799887766")
    start: AwareDatetime | None = Field(default=None, description="null: now")
    end: AwareDatetime | None = Field(default=None, description="null: until revoked")
    weekly: list[WeeklyWindowBody] = Field(
        default_factory=list, max_length=7, description="opening hours; none: at any time"
    )

    def request(self) -> PhoneKeyRequest:
        windows = tuple(
            WeeklyWindow(_WEEKDAYS.index(w.weekday), w.start, w.end) for w in self.weekly
        )
        return PhoneKeyRequest(self.lock_id, self.phone, self.start, self.end, windows)


class PhoneRevokeBody(_Strict):
    vendor: Annotated[str | None, AfterValidator(_known_vendor)] = None
    phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")
    lock_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="only its keys on this lock"
    )


class ErrorView(BaseModel):
    kind: str
    message: str
    lock_id: str | None
    step: str | None
    hint: str | None


class ErrorAnswer(BaseModel):
    error: ErrorView


class Progress(BaseModel):
    done: int
    total: int | None
    fraction: float | None


class JobView(BaseModel):
    id: str
    lock_id: str
    vendor: str
    operation: str
    state: Literal["queued", "running", "done", "failed"]
    queued_seq: int
    started_seq: int | None
    finished_seq: int | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress: Progress | None
    result: dict[str, str | int | float | bool | None] | None
    error: ErrorView | None


class LockView(BaseModel):
    lock_id: str
    vendor: str
    name: str
    hardware: str
    firmware: str | None
    state: str
    rssi: int | None
    battery_mv: int | None = Field(description="from the lock's last session; None until one")
    last_seen: dt.datetime


class GrantBody(_Strict):
    """A grant as the kiosk is asked for it (``blelock access grant`` takes the same)."""

    id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="the caller's id for it (a lease's): a request sent twice is one grant",
    )
    holder: str = Field(min_length=1, max_length=200)
    locks: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=100, description="lock ids (VENDOR:LOCK where ambiguous)"
    )
    starts_at: dt.datetime | None = Field(default=None, description="default now")
    ends_at: dt.datetime | None = Field(default=None, description="default: until revoked")
    windows: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=28,
        description="weekly opening hours, lock-local: 'Mon-Sat 06:00-22:00'",
    )
    timezone: str | None = Field(default=None, max_length=64)
    uses: int | None = Field(default=None, ge=1, description="None: unlimited; 1: one-time")
    identities: dict[
        Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")],
        Annotated[str, Field(min_length=1, max_length=100)],
    ] = Field(default_factory=dict, description="the holder's identity per vendor, by name")
    codes: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")], SecretStr] = Field(
        default_factory=dict,
        description="the holder's secret codes by name (a keypad PIN, a quick click); sealed "
        "at rest, never answered back",
    )
    round: bool = Field(default=False, description="round what a vendor cannot express")

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry its UTC offset (e.g. 2026-03-28T08:12:00Z)")
        return value


class PendingLogs(BaseModel):
    pending: int


class KeyHealthView(BaseModel):
    cached: int
    expiring_soon: int
    expired: int
    revoked: int
    next_expiry: dt.datetime | None
    error: str | None


class VendorHealthView(BaseModel):
    active: bool = Field(description="set up here (credentials, or this device enrolled)")
    cloud_reachable: bool | None
    cloud_checked_at: dt.datetime | None
    last_sync_error: str | None
    outbox_depth: int
    set_aside: int
    keys: KeyHealthView | None
    uploads_configured: bool


class HealthView(BaseModel):
    status: Literal["ok", "degraded", "stopping"]
    version: str
    adapter_up: bool | None
    last_scan_at: dt.datetime | None
    locks_in_range: int
    cloud_reachable: bool | None
    cloud_checked_at: dt.datetime | None
    last_sync_error: str | None
    last_sync_at: dt.datetime | None
    uploads_configured: bool
    outbox_depth: int
    set_aside: int = Field(
        description="records the cloud refused for good; `blelock upload --retry-failed` "
        "sends them again once the cause is fixed"
    )
    keys: KeyHealthView | None = Field(description="every vendor's keys, summed")
    grants: dict[str, int] | None = Field(
        default=None, description="grants' locks by status (pending, active, error, …)"
    )
    grants_error: str | None = Field(
        default=None, description="the grant store's trouble, or the last reconcile's problem"
    )
    store_room: str | None = Field(
        default=None,
        description="why the store cannot take a visit's records now (the disk is full): "
        "visits are refused until there is room; None when there is",
    )
    jobs_running: int
    jobs_queued: int
    max_connections: int
    connections_in_use: int
    peak_connections: int
    vendors: dict[str, VendorHealthView]


def _error_view(error: BlelockError) -> ErrorView:
    return ErrorView(
        kind=type(error).__name__,
        message=error.message,
        lock_id=error.lock_id,
        step=error.step,
        hint=error.hint,
    )


def _job_view(job: Job) -> JobView:
    progress = None
    if job.progress_done is not None:
        total = job.progress_total
        fraction = round(job.progress_done / total, 4) if total else None
        progress = Progress(done=job.progress_done, total=total, fraction=fraction)
    return JobView(
        id=job.id,
        lock_id=job.lock_id,
        vendor=job.vendor,
        operation=job.operation,
        state=job.state.value,
        queued_seq=job.queued_seq,
        started_seq=job.started_seq,
        finished_seq=job.finished_seq,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=progress,
        result=job.result,
        error=None if job.error is None else _error_view(job.error),
    )


def _lock_view(seen: SeenLock) -> LockView:
    s = seen.sighting
    return LockView(
        lock_id=s.lock_id,
        vendor=s.vendor,
        name=s.name,
        hardware=s.hardware,
        firmware=s.firmware,
        state=s.state.value,
        rssi=s.rssi,
        battery_mv=seen.battery_mv,
        last_seen=seen.last_seen,
    )


def _key_view(keys: KeyHealth | None) -> KeyHealthView | None:
    if keys is None:
        return None
    return KeyHealthView(
        cached=keys.cached,
        expiring_soon=keys.expiring_soon,
        expired=keys.expired,
        revoked=keys.revoked,
        next_expiry=keys.next_expiry,
        error=keys.error,
    )


def _vendor_view(vendor: VendorHealth) -> VendorHealthView:
    return VendorHealthView(
        active=vendor.active,
        cloud_reachable=vendor.cloud_reachable,
        cloud_checked_at=vendor.cloud_checked_at,
        last_sync_error=vendor.last_sync_error,
        outbox_depth=vendor.outbox_depth,
        set_aside=vendor.set_aside,
        keys=_key_view(vendor.keys),
        uploads_configured=vendor.uploads_configured,
    )


def _health_view(health: Health, store_room: str | None = None) -> HealthView:
    keys = health.keys
    degraded = (
        store_room is not None
        or health.adapter_up is False
        or health.cloud_reachable is False
        or (keys is not None and (keys.error is not None or keys.expired > 0))
        or bool(health.grants and health.grants.get("error"))
        or health.grants_error is not None
    )
    status: Literal["ok", "degraded", "stopping"] = (
        "stopping" if health.stopping else "degraded" if degraded else "ok"
    )
    return HealthView(
        status=status,
        version=__version__,
        adapter_up=health.adapter_up,
        last_scan_at=health.last_scan_at,
        locks_in_range=health.locks_in_range,
        cloud_reachable=health.cloud_reachable,
        cloud_checked_at=health.cloud_checked_at,
        last_sync_error=health.last_sync_error,
        last_sync_at=health.last_sync_at,
        uploads_configured=health.uploads_configured,
        outbox_depth=health.outbox_depth,
        set_aside=health.set_aside,
        keys=_key_view(keys),
        store_room=store_room,
        jobs_running=health.jobs_running,
        jobs_queued=health.jobs_queued,
        max_connections=health.max_connections,
        connections_in_use=health.connections_in_use,
        peak_connections=health.peak_connections,
        vendors={name: _vendor_view(vendor) for name, vendor in health.vendors.items()},
        grants=None if health.grants is None else dict(health.grants),
        grants_error=health.grants_error,
    )


def status_of(error: BlelockError) -> int:
    """The HTTP status a failure is answered with (its body says more)."""
    table: list[tuple[type[BlelockError], int]] = [
        (UsageError, 422),
        (StoreFull, 507),
        (LockBusy, 429),
        (OutOfSlots, 503),
        (ServiceStopping, 503),
        (ConfigError, 503),
        (DeviceNotFound, 404),
        (LockRefused, 409),
        (OfflineKeyError, 409),
    ]
    for kind, status in table:
        if isinstance(error, kind):
            return status
    if isinstance(error, TimeoutError):
        return 504
    if isinstance(error, LinkError):
        return 502
    return 502 if error.lock_id is not None else 500


def _plain_error(
    status: int, kind: str, message: str, hint: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    view = ErrorView(kind=kind, message=message, lock_id=None, step=None, hint=hint)
    return JSONResponse(
        ErrorAnswer(error=view).model_dump(mode="json"), status_code=status, headers=headers
    )


def _error_response(error: BlelockError) -> JSONResponse:
    status = status_of(error)
    headers = {"Retry-After": str(BUSY_RETRY_AFTER_S)} if status in (429, 503) else None
    body = ErrorAnswer(error=_error_view(error)).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=headers)


def _parse_options(
    body: OperationBody, options: dict[str, list[OptionSpec]], spec: OperationSpec | None
) -> dict[str, OptionValue]:
    """The options given, each through its parser when the lock's operation takes it (one it
    does not take is passed on as given, for the operation's check to refuse with the reason)."""
    own = {} if spec is None else {option.name: option for option in spec.options}
    given: dict[str, OptionValue] = {}
    for name in options:
        value: OptionValue | None = getattr(body, name)
        if value is None:
            continue
        option = own.get(name)
        if option is None:
            given[name] = value
        elif option.flag:
            if not isinstance(value, bool):
                raise UsageError(f"{name} is a switch", hint="give it as true or false")
            given[name] = value
        elif isinstance(value, bool):
            raise UsageError(f"{name} takes a value", hint=f"give it as {option.metavar}")
        else:
            try:
                given[name] = option.parse(str(value))
            except ValueError as exc:
                raise UsageError(f"{name}: {exc}", hint=option.help) from None
    return given


# --- the bearer token -----------------------------------------------------------------------


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


# --- the app --------------------------------------------------------------------------------


def create_app(runner: Runner, token: SecretStr) -> FastAPI:
    """The API over ``runner``; requests need ``Authorization: Bearer <token>``."""
    if not token.get_secret_value():
        raise ConfigError("the API token is empty")
    # auto_error=False: the middleware has refused by then; this documents the scheme.
    bearer = HTTPBearer(auto_error=False, description="serve_token from the service's config")
    app = FastAPI(
        title="blelock kiosk",
        version=__version__,
        description="Unlock padlocks nearby; watch jobs, logs waiting for upload, and health.",
        docs_url=None,  # Swagger UI loads scripts from a CDN: nothing a kiosk should fetch
        redoc_url=None,
        dependencies=[Security(bearer)],
    )
    app.add_middleware(BearerAuth, token=token)

    @app.exception_handler(BlelockError)
    async def _blelock_error(request: Request, exc: BlelockError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name what is wrong, never echo the input back (it may be large, or a secret).
        problems = [
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
            for error in exc.errors()[:5]
        ]
        return _plain_error(
            422,
            "InvalidRequest",
            "the request is not valid: " + "; ".join(problems),
            "see /openapi.json for the fields each route takes",
        )

    failure: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorAnswer} for status in (404, 409, 422, 429, 500, 502, 503, 504, 507)
    }

    @app.get("/v1/locks", response_model=list[LockView], summary="locks heard nearby")
    async def list_locks() -> list[LockView]:
        return [_lock_view(seen) for seen in runner.locks_in_range()]

    plugins = runner.plugins
    options: dict[str, list[OptionSpec]] = {}
    for plugin in plugins.values():
        for spec in plugin.operations.values():
            for option in spec.options:
                options.setdefault(option.name, []).append(option)

    def _operation_route(operation: str) -> None:
        offered = [
            (p, p.operations[operation]) for p in plugins.values() if operation in p.operations
        ]
        takes = [spec.takes_package for _, spec in offered]
        model = body_model(operation, options, all(takes) if any(takes) else None)
        long_running = all(spec.long_running for _, spec in offered)

        async def operate(lock_id: str, response: Response, body: OperationBody) -> Any:
            plugin, canonical = await runner.resolve_heard(lock_id, body.vendor, operation)
            spec = plugin.operations.get(operation)
            given = _parse_options(body, options, spec)
            name: str | None = getattr(body, "package", None)
            package = None
            if name is not None:
                if spec is not None and not spec.takes_package:
                    raise UsageError(f"{plugin.title} {operation} takes no package")
                package = await runner.load_package(name)
            job = runner.submit(
                operation,
                canonical,
                vendor=plugin.name,
                mode=body.mode,
                options=given,
                package=package,
            )
            return await _answer(job, response, wait=body.wait)

        # The body's model is made here, from the plugins: FastAPI reads it off the signature.
        body = inspect.Parameter(
            "body",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[model, Body()],
            default=inspect.Parameter.empty if any(takes) and all(takes) else model(),
        )
        operate.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter("lock_id", inspect.Parameter.KEYWORD_ONLY, annotation=LockIdPath),
                inspect.Parameter("response", inspect.Parameter.KEYWORD_ONLY, annotation=Response),
                body,
            ]
        )
        summaries = "; ".join(f"{p.title}: {spec.summary}" for p, spec in offered)
        app.post(
            f"/v1/locks/{{lock_id}}/{operation}",
            response_model=JobView,
            status_code=202 if long_running else 200,
            responses=failure,
            summary=f"{operation} a lock"
            + (" (a long job: poll /v1/jobs/{id})" if long_running else ""),
            description=summaries,
            name=operation,
        )(operate)

    async def _answer(job: Job, response: Response, *, wait: bool) -> JobView | JSONResponse:
        if not wait or job.long_running:
            response.status_code = 202
            response.headers["Location"] = f"/v1/jobs/{job.id}"
            return _job_view(job)
        await runner.wait(job)
        if job.error is not None:
            view = _job_view(job).model_dump(mode="json")
            return JSONResponse(view, status_code=status_of(job.error))
        return _job_view(job)

    for name in runner.operation_names():
        _operation_route(name)

    if any(plugin.phone_keys for plugin in plugins.values()):

        @app.post(
            "/v1/phone-keys",
            response_model=JobView,
            status_code=202,
            responses=failure,
            summary="give a phone a key for a lock (a job: poll /v1/jobs/{id})",
        )
        async def issue_phone_key(body: PhoneKeyBody, response: Response) -> JobView:
            plugin = runner.phone_key_vendor(body.vendor)
            request = body.request()
            plugin.check_phone_key(request)  # a 422 now rather than a job that fails

            async def call(ctx: VendorContext) -> Facts:
                return await plugin.issue_phone_key(ctx, request)

            job = runner.submit_cloud(plugin, body.lock_id, "issue-phone-key", call)
            return _accepted(job, response)

        @app.post(
            "/v1/phone-keys/revoke",
            response_model=JobView,
            status_code=202,
            responses=failure,
            summary="take away a phone's keys (on one lock, when given; a job)",
        )
        async def revoke_phone_keys(body: PhoneRevokeBody, response: Response) -> JobView:
            plugin = runner.phone_key_vendor(body.vendor)

            async def call(ctx: VendorContext) -> Facts:
                return await plugin.revoke_phone_keys(ctx, body.phone, body.lock_id)

            job = runner.submit_cloud(plugin, body.lock_id or "", "revoke-phone-keys", call)
            return _accepted(job, response)

    def _accepted(job: Job, response: Response) -> JobView:
        response.headers["Location"] = f"/v1/jobs/{job.id}"
        return _job_view(job)

    @app.get(
        "/v1/jobs/{job_id}",
        response_model=JobView,
        responses={404: {"model": ErrorAnswer}},
        summary="a job's state and progress",
    )
    async def job_status(
        job_id: JobIdPath,
    ) -> JobView | JSONResponse:
        job = runner.job(job_id)
        if job is None:
            missing = ErrorView(
                kind="UnknownJob",
                message=f"no job {job_id}",
                lock_id=None,
                step=None,
                hint="jobs are forgotten when the service restarts, oldest first after 1000",
            )
            return JSONResponse(ErrorAnswer(error=missing).model_dump(mode="json"), 404)
        return _job_view(job)

    @app.get("/v1/logs/pending", response_model=PendingLogs, summary="records awaiting upload")
    async def pending_logs() -> PendingLogs:
        return PendingLogs(pending=await runner.pending_logs())

    grant_failure: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorAnswer} for status in (404, 422, 500, 503)
    }

    @app.post(
        "/v1/access/grants",
        status_code=201,
        responses=grant_failure,
        summary="let a holder open locks (stored, then reconciled); refused with every reason "
        "a vendor cannot express it",
    )
    async def create_grant(body: GrantBody) -> dict[str, Any]:
        if body.id is not None:
            existing = await runner.grants.get(body.id)
            if existing is not None:
                return access.grant_payload(existing)  # the same request again
        request = access.GrantRequest(
            holder=body.holder,
            locks=body.locks,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            windows=body.windows,
            timezone=body.timezone,
            uses=body.uses,
            identities=body.identities,
            codes={name: Code(value.get_secret_value()) for name, value in body.codes.items()},
            round=body.round,
            grant_id=body.id,
        )
        record = await access.create_grant(
            request,
            runner.grants,
            access.access_plugins(),
            runner.access_context,
            runner.settings,
            runner.clock,
        )
        runner.wake_upkeep()
        return access.grant_payload(record)

    @app.get("/v1/access/grants", summary="every grant and its status")
    async def list_grants() -> list[dict[str, Any]]:
        return [access.grant_payload(record) for record in await runner.grants.grants()]

    @app.get("/v1/access/grants/{grant_id}", responses=grant_failure, summary="one grant")
    async def show_grant(grant_id: GrantIdPath) -> Any:
        record = await runner.grants.get(grant_id)
        if record is None:
            return _plain_error(
                404, "UnknownGrant", f"no grant {grant_id}", "GET /v1/access/grants lists them"
            )
        return access.grant_payload(record)

    @app.delete(
        "/v1/access/grants/{grant_id}",
        responses=grant_failure,
        summary="end a grant now (the reconciler removes it at each vendor)",
    )
    async def revoke_grant(grant_id: GrantIdPath) -> Any:
        if await runner.grants.get(grant_id) is None:
            return _plain_error(
                404, "UnknownGrant", f"no grant {grant_id}", "GET /v1/access/grants lists them"
            )
        record = await runner.grants.revoke(grant_id, runner.clock.now_utc().replace(microsecond=0))
        runner.wake_upkeep()
        return access.grant_payload(record)

    @app.get(
        "/v1/access/constraints/{lock_id}",
        responses=grant_failure,
        summary="what a lock's vendor can express (rules as data)",
    )
    async def lock_constraints(lock_id: LockIdPath) -> dict[str, object]:
        rules = await access.constraints(lock_id, access.access_plugins(), runner.access_context)
        return rules.as_json()

    for plugin in plugins.values():
        if plugin.api_module is not None:  # a vendor's own routes, under the same token
            vendor_routes = importlib.import_module(plugin.api_module).router(runner.settings)
            app.include_router(vendor_routes, prefix=f"/v1/{plugin.name}", responses=failure)

    @app.get("/v1/health", response_model=HealthView, summary="adapter, cloud, outbox, keys")
    async def health() -> HealthView:
        store_room = await asyncio.to_thread(room_problem, runner.settings.store_dir)
        return _health_view(await runner.health(), store_room)

    return app
