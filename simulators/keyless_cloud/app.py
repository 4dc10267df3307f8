"""The simulated platform as a Starlette app: the route table, the checks every request goes
through (API key, media type, bearer token, injected faults) and :func:`keyless_app`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from simulators.keyless_cloud._http import (
    Call,
    Handler,
    Problem,
    _problem_response,
)
from simulators.keyless_cloud.admin import (
    _locking_device_logs,
    create_locking_device,
    create_permission,
    create_user,
    delete_locking_device,
    delete_operating_device,
    delete_permission,
    delete_user,
    get_locking_device,
    get_permission,
    get_user,
    initiate_re_key,
    invite_operating_device,
    issue_offline_key,
    list_locking_devices,
    list_offline_keys,
    list_operating_devices,
    list_permissions,
    list_users,
    login,
    patch_locking_device,
    revoke_invitation,
    update_permission,
)
from simulators.keyless_cloud.gateways import (
    _gateway_logs,
    cancel_remote_command,
    claim_gateway,
    create_association,
    delete_association,
    delete_gateway,
    get_association,
    get_gateway,
    get_remote_command,
    issue_remote_command,
    list_associations,
    list_gateways,
    list_remote_commands,
)
from simulators.keyless_cloud.mobile import (
    mobile_activation,
    mobile_audit_log,
    mobile_ca,
    mobile_certificate,
    mobile_csr,
    mobile_login,
    mobile_offline_keys,
    mobile_operating_keys,
    mobile_revocations,
    mobile_system_log,
    mobile_time_statement,
)
from simulators.keyless_cloud.state import (
    MEDIA_TYPE,
    KeylessPlatformState,
    Role,
    Session,
)
from simulators.round_trip import within_round_trip

# --- the app --------------------------------------------------------------------------------

ADMIN, LOGIN, MOBILE, MOBILE_OPEN = "admin", "login", "mobile", "mobile-open"

_ROUTES: Final[dict[str, dict[str, tuple[str, Handler]]]] = {
    "/login": {"POST": (LOGIN, login)},
    "/user": {"GET": (ADMIN, list_users), "POST": (ADMIN, create_user)},
    "/user/{user_id}": {"GET": (ADMIN, get_user), "DELETE": (ADMIN, delete_user)},
    "/operating-device-invitation": {"POST": (ADMIN, invite_operating_device)},
    "/operating-device-invitation/{invitation_id}": {"DELETE": (ADMIN, revoke_invitation)},
    "/operating-device": {"GET": (ADMIN, list_operating_devices)},
    "/operating-device/{operating_device_id}": {"DELETE": (ADMIN, delete_operating_device)},
    "/locking-device": {
        "GET": (ADMIN, list_locking_devices),
        "POST": (ADMIN, create_locking_device),
    },
    "/locking-device/{locking_device_id}": {
        "GET": (ADMIN, get_locking_device),
        "PATCH": (ADMIN, patch_locking_device),
        "DELETE": (ADMIN, delete_locking_device),
    },
    "/locking-device-system-log": {"GET": (ADMIN, _locking_device_logs(audit=False))},
    "/locking-device-audit-log": {"GET": (ADMIN, _locking_device_logs(audit=True))},
    "/permission": {"GET": (ADMIN, list_permissions), "POST": (ADMIN, create_permission)},
    "/permission/{permission_id}": {
        "GET": (ADMIN, get_permission),
        "PUT": (ADMIN, update_permission),
        "DELETE": (ADMIN, delete_permission),
    },
    "/offline-key": {"GET": (ADMIN, list_offline_keys), "POST": (ADMIN, issue_offline_key)},
    "/gateway-device": {"GET": (ADMIN, list_gateways), "POST": (ADMIN, claim_gateway)},
    "/gateway-device/{gateway_device_id}": {
        "GET": (ADMIN, get_gateway),
        "DELETE": (ADMIN, delete_gateway),
    },
    "/gateway-device-system-log": {"GET": (ADMIN, _gateway_logs(audit=False))},
    "/gateway-device-audit-log": {"GET": (ADMIN, _gateway_logs(audit=True))},
    "/gateway-device-association": {
        "GET": (ADMIN, list_associations),
        "POST": (ADMIN, create_association),
    },
    "/gateway-device-association/{association_id}": {
        "GET": (ADMIN, get_association),
        "DELETE": (ADMIN, delete_association),
    },
    "/remote-command": {
        "GET": (ADMIN, list_remote_commands),
        "POST": (ADMIN, issue_remote_command),
    },
    "/remote-command/{remote_command_id}": {"GET": (ADMIN, get_remote_command)},
    "/remote-command/{remote_command_id}/cancel": {"POST": (ADMIN, cancel_remote_command)},
    "/testing/locking-device/{locking_device_id}/re-key": {"POST": (ADMIN, initiate_re_key)},
    "/mobile/activation": {"POST": (MOBILE_OPEN, mobile_activation)},
    "/mobile/login": {"POST": (MOBILE_OPEN, mobile_login)},
    "/mobile/ca": {"GET": (MOBILE_OPEN, mobile_ca)},
    "/mobile/operating-keys": {"GET": (MOBILE, mobile_operating_keys)},
    "/mobile/offline-keys": {"GET": (MOBILE, mobile_offline_keys)},
    "/mobile/revocations": {"GET": (MOBILE, mobile_revocations)},
    "/mobile/locking-device/{locking_device_id}/audit-log": {"POST": (MOBILE, mobile_audit_log)},
    "/mobile/locking-device/{locking_device_id}/system-log": {"POST": (MOBILE, mobile_system_log)},
    "/mobile/locking-device/{locking_device_id}/csr": {"POST": (MOBILE, mobile_csr)},
    "/mobile/locking-device/{locking_device_id}/certificate": {"GET": (MOBILE, mobile_certificate)},
    "/mobile/locking-device/{locking_device_id}/time-statement": {
        "POST": (MOBILE, mobile_time_statement)
    },
}


def _accepts_media_type(accept: str) -> bool:
    return any(part.split(";")[0].strip().lower() == MEDIA_TYPE for part in accept.split(","))


def _session(state: KeylessPlatformState, request: Request, kind: str) -> Session:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "Authorization: Bearer <token> is required (POST /login gives one)")
    session = state.sessions.get(token)
    if session is None or session.kind != kind:
        raise Problem(401, "the access token is not valid")
    if state.now() >= session.expires_at:
        raise Problem(401, "the access token expired (a token is valid one hour from login)")
    return session


def _check_admin_headers(state: KeylessPlatformState, request: Request) -> None:
    api_key = request.headers.get("X-Api-Key", "")
    if not api_key or not hmac.compare_digest(api_key.encode(), state.api_key.encode()):
        raise Problem(403, "the X-Api-Key header is missing or the API key is invalid")
    if not _accepts_media_type(request.headers.get("Accept", "")):
        raise Problem(406, f"the Accept header must request the media type {MEDIA_TYPE}")


def keyless_app(
    state: KeylessPlatformState, *, extra_routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """The simulated platform over ``state``; ``extra_routes`` (a harness's introspection) are
    matched before the catch-all."""

    def endpoint(
        path: str, methods: dict[str, tuple[str, Handler]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            state.requests[f"{request.method} {path}"] += 1
            return await within_round_trip(
                state.faults.latency_s, lambda: answer(request), waits=state.modelled
            )

        async def answer(request: Request) -> Response:
            fault = state.faults.draw()
            if fault is not None:
                state.faulted[fault] += 1
                if fault == "rate_limit":
                    return _problem_response(
                        429,
                        "the rate limit of this API key is exceeded",
                        {"Retry-After": str(state.faults.retry_after_s)},
                    )
                return _problem_response(500, "injected failure")
            chosen = methods.get(request.method)
            if chosen is None:
                return _problem_response(
                    405, f"{request.method} is not allowed here (allowed: {', '.join(methods)})"
                )
            kind, handler = chosen
            try:
                session = None
                if kind in (ADMIN, LOGIN):
                    _check_admin_headers(state, request)
                if kind == ADMIN:
                    session = _session(state, request, "admin")
                    user = state.users.get(session.subject_id)
                    if user is None or user.role is not Role.ADMIN:
                        raise Problem(
                            403, "the Administration API is for users with the role ADMIN"
                        )
                elif kind == MOBILE:
                    session = _session(state, request, "mobile")
                call = Call(state, request, state.now(), session, f"{request.method} {path}")
                return await handler(call)
            except Problem as problem:
                return _problem_response(problem.status, problem.detail)

        return handle

    async def no_such_route(request: Request) -> Response:
        return _problem_response(404, f"no such resource: {request.url.path}")

    all_methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes: list[BaseRoute] = [
        Route(path, endpoint(path, methods), methods=all_methods)
        for path, methods in _ROUTES.items()
    ]
    routes.extend(extra_routes)
    routes.append(Route("/{path:path}", no_such_route, methods=all_methods))
    return Starlette(routes=routes)
