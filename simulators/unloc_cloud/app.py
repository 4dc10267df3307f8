"""The simulated Unloc API v2 as a Starlette app over :class:`UnlocState`.

Errors are problem-style JSON (``title``, ``detail``, ``status``, ``invalidParams`` on 400) as
DriftIQ saw them; a bad token is 401 with ``errorDescription``. ``/_sim/clock`` (GET; POST
``{"at": ISO}`` or ``{"advance_s": S}``) and ``/_sim/faults`` (POST ``{"outcome": ..., "count":
N, "forget_tokens": true}``) are the simulator's own switches.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.unloc_cloud.state import (
    Conflict,
    Gone,
    Invalid,
    JobOutcome,
    UnlocState,
    WallClock,
)

__all__ = ["unloc_app"]

Handler = Callable[[Request], Awaitable[Response]]


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"title": title, "detail": detail, "status": status, **extra}, status)


def _invalid(exc: Invalid) -> JSONResponse:
    params = [{"name": name, "reason": reason} for name, reason in exc.params.items()]
    return _problem(400, "Bad Request", exc.detail, invalidParams=params)


async def _json(request: Request) -> object:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise Invalid({"body": "must be JSON"}) from None


def unloc_app(state: UnlocState, clock: WallClock | None = None) -> Starlette:
    """The API; ``clock`` (the process's wall clock with an offset) enables ``/_sim/clock``."""

    def guarded(handler: Handler) -> Handler:
        async def call(request: Request) -> Response:
            state.requests[handler.__name__] += 1  # what a benchmark counts
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not state.token_valid(token.strip()):
                return JSONResponse(
                    {"error": "invalid_token", "errorDescription": "the access token is not valid"},
                    401,
                )
            if request.path_params.get("project_id") != state.project_id:
                return _problem(403, "Forbidden", "the token does not reach that project")
            try:
                return await handler(request)
            except Invalid as exc:
                return _invalid(exc)
            except Gone as exc:
                return _problem(404, "Not Found", str(exc))
            except Conflict as exc:
                return _problem(409, "Conflict", str(exc))

        return call

    async def token(request: Request) -> Response:
        try:
            body = await _json(request)
            if not isinstance(body, dict):
                raise Invalid({"body": "must be an object"})
            return JSONResponse(state.issue_token(body))
        except Invalid as exc:
            return _invalid(exc)
        except PermissionError as exc:
            return JSONResponse({"error": "invalid_client", "error_description": str(exc)}, 401)

    async def locks(request: Request) -> Response:
        return JSONResponse({"locks": [state.lock_view(lock) for lock in state.locks.values()]})

    async def create_keys(request: Request) -> Response:
        job = state.create_keys(await _json(request))
        return JSONResponse({"jobRef": {"id": job.id}}, 202)

    async def list_keys(request: Request) -> Response:
        return JSONResponse({"keys": state.list_keys(dict(request.query_params))})

    async def get_key(request: Request) -> Response:
        key = state.keys.get(request.path_params["key_id"])
        if key is None:
            raise Gone(f"no key {request.path_params['key_id']}")
        return JSONResponse({"key": state.key_view(key)})

    async def revoke_key(request: Request) -> Response:
        state.revoke(request.path_params["key_id"])
        return Response(status_code=204)

    async def revoke_shared(request: Request) -> Response:
        query = request.query_params
        # The answer's shape is not documented: this simulator names what it revoked.
        revoked = state.revoke_matching(query.get("appUserId"), query.get("lockId"))
        return JSONResponse({"revokedKeys": [{"id": key_id} for key_id in revoked]})

    async def get_job(request: Request) -> Response:
        job = state.jobs.get(request.path_params["job_id"])
        if job is None:
            raise Gone(f"no job {request.path_params['job_id']}")
        return JSONResponse({"job": state.job_view(job)})

    async def refresh(request: Request) -> Response:
        job = state.refresh_connection(request.path_params["connection_id"])
        return JSONResponse({"jobRef": {"id": job.id}}, 202)

    async def sim_clock(request: Request) -> Response:
        if clock is None:
            return _problem(404, "Not Found", "this simulator's clock is the test's")
        if request.method == "POST":
            body = await request.json()
            if "at" in body:
                clock.set(dt.datetime.fromisoformat(body["at"].replace("Z", "+00:00")))
            if "advance_s" in body:
                clock.offset += dt.timedelta(seconds=float(body["advance_s"]))
        return JSONResponse({"now": state.now().isoformat()})

    async def sim_faults(request: Request) -> Response:
        body = await request.json()
        if "outcome" in body:
            state.faults.outcome = JobOutcome(body["outcome"])
            state.faults.count = int(body.get("count", 1))
        if body.get("forget_tokens"):
            state.forget_tokens()
        return JSONResponse({"outcome": state.faults.outcome.value, "count": state.faults.count})

    project = "/v2/projects/{project_id}"
    routes = [
        Route("/v2/auth/token/", token, methods=["POST"]),
        Route(f"{project}/locks", guarded(locks), methods=["GET"]),
        Route(f"{project}/keys", guarded(create_keys), methods=["POST"]),
        Route(f"{project}/keys", guarded(list_keys), methods=["GET"]),
        Route(f"{project}/keys/{{key_id}}", guarded(get_key), methods=["GET"]),
        Route(f"{project}/keys/{{key_id}}", guarded(revoke_key), methods=["DELETE"]),
        Route(f"{project}/shared-keys", guarded(revoke_shared), methods=["DELETE"]),
        Route(f"{project}/jobs/{{job_id}}", guarded(get_job), methods=["GET"]),
        Route(
            f"{project}/lock-connections/{{connection_id}}/refresh",
            guarded(refresh),
            methods=["PUT"],
        ),
        Route("/_sim/clock", sim_clock, methods=["GET", "POST"]),
        Route("/_sim/faults", sim_faults, methods=["POST"]),
    ]
    return Starlette(routes=routes)
