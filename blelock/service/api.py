"""The kiosk's local HTTP API (FastAPI): JSON in and out, a bearer token on every route.

The token is checked by an ASGI middleware (:mod:`blelock.service.api_guard`), before routing
and before the body is read, so a request without it learns nothing (not even whether its body
would have been valid) and changes nothing. Only ``/openapi.json`` is open: it describes the API
and holds no state. The bodies and views are in :mod:`blelock.service.api_models`.

Failures carry the error tree's fields: what happened, to which lock, at which step, what to do.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import SecretStr

from blelock import __version__, access
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
from blelock.service.api_guard import BearerAuth, _plain_error
from blelock.service.api_models import (
    ErrorAnswer,
    ErrorView,
    GrantBody,
    GrantIdPath,
    HealthView,
    JobIdPath,
    JobView,
    LockIdPath,
    LockView,
    OperationBody,
    PendingLogs,
    PhoneKeyBody,
    PhoneRevokeBody,
    _error_view,
    _health_view,
    _job_view,
    _lock_view,
    body_model,
)
from blelock.service.runner import Job, LockBusy, Runner, ServiceStopping
from blelock.store.outbox import room_problem
from blelock.vendors.base import Facts, OperationSpec, OptionSpec, OptionValue, VendorContext

__all__ = ["create_app"]

BUSY_RETRY_AFTER_S = 5
"""What a busy answer suggests: about one unlock's time."""


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
