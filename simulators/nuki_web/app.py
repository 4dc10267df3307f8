"""The simulated Nuki Web API: a Starlette app over :class:`NukiWebState`, with its own request
schemas read from the vendor documents (``shared/vendor-docs/nuki-web-api-*.txt``, research
§B.3), not blelock's client models.

What it refuses, and how (the status codes are the documented ones; where the documents give
no code for a case, the choice is marked *ours*):

* no or wrong bearer token → 401; unknown smart lock or entry → 404;
* a parameter that is not valid → 400 ``{"detailMessage": "The supplied value 'X' for
  parameter 'Y' is not valid", …}`` (the shape and words users quote): an unknown ``type``,
  ``type`` 13 on a lock without a paired keypad, a keypad code that is not 6 digits 1-9 or
  starts with "12", a name over 32 (keypad code: 20) characters, no ``accountUserId`` /
  ``remoteAllowed`` for an app or fob authorization, a weekday mask over 127, a day time over
  1440, a log ``limit`` outside 1..50, a date without its zone;
* a time restriction (weekdays, day times, an end date) without ``allowedFromDate`` → 422 in
  the ``{code, description, homeRef, reasonPhrase}`` shape (Nuki staff: "at least the
  allowedFromDate has to be set"; *ours*: refusing rather than ignoring it), and so is half a
  day window;
* a keypad code equal to one the Web API lists for that lock → 409; a lock that holds 200
  authorizations or 100 keypad codes → 409 (*ours*);
* any change to a lock while an operation is pending on it → 423.

Quirks kept on purpose: a write answers 204 with no body and reaches the lock ``delay_s``
later (a new entry has no id until then); **an update that leaves out the time fields clears
them**; a lock action shows only in the lock's state and log once the lock has done it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, StrictBool, StrictInt, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from simulators.nuki_web.state import (
    KEYPAD_CODE,
    LOCK_STATE_AFTER,
    MOTOR_BLOCKED,
    Entry,
    ManualClock,
    NukiWebState,
    SimSmartLock,
)

__all__ = ["CONTROL_PATH", "nuki_web_app"]

CONTROL_PATH = "/_sim/nuki"
_M = TypeVar("_M", bound=BaseModel)
_CREATE_TYPES = (0, 2, KEYPAD_CODE)
_MAX_AUTHS = 200
_MAX_CODES = 100
_LOG_DEFAULT, _LOG_MAX = 20, 50
_REASONS = {
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Entity",
    423: "Locked",
}
_TIME_KEYS = {
    "allowedFromDate": "allowed_from_date",
    "allowedUntilDate": "allowed_until_date",
    "allowedWeekDays": "allowed_week_days",
    "allowedFromTime": "allowed_from_time",
    "allowedUntilTime": "allowed_until_time",
}


class _Refused(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def _status(status: int, description: str) -> _Refused:
    return _Refused(
        status,
        {
            "code": status,
            "description": description,
            "homeRef": "/",
            "reasonPhrase": _REASONS.get(status, ""),
        },
    )


def _bad_parameter(name: str, value: object) -> _Refused:
    shown = "null" if value is None else value if not isinstance(value, bool) else str(value)
    return _Refused(
        400,
        {
            "detailMessage": f"The supplied value '{shown}' for parameter '{name}' is not valid",
            "stackTrace": [],
            "suppressedExceptions": [],
        },
    )


# --- request schemas (the vendor's field names) ---------------------------------------------


class _AuthFields(BaseModel):
    """The vendor's field names, camelCase, as the documents spell them."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    type: StrictInt | None = None
    code: StrictInt | None = None
    enabled: StrictBool | None = None
    remoteAllowed: StrictBool | None = None
    smartActionsEnabled: StrictBool | None = None
    accountUserId: StrictInt | None = None
    allowedFromDate: AwareDatetime | None = None
    allowedUntilDate: AwareDatetime | None = None
    allowedWeekDays: StrictInt | None = None
    allowedFromTime: StrictInt | None = None
    allowedUntilTime: StrictInt | None = None


class _MultiCreate(_AuthFields):
    smartlockIds: list[StrictInt]


class _BulkUpdate(_AuthFields):
    id: str


class _Action(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action: StrictInt
    option: StrictInt = 0


class _NewUser(BaseModel):
    model_config = ConfigDict(extra="ignore")
    email: str
    name: str


def _parse(model: type[_M], raw: object) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][-1]) if first["loc"] else "body"
        raise _bad_parameter(name, first.get("input")) from None


async def _json(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise _bad_parameter("body", raw[:40].decode(errors="replace")) from None


# --- rules ----------------------------------------------------------------------------------


def _check_code(code: int | None) -> int:
    text = "" if code is None else str(code)
    if len(text) != 6 or "0" in text or text.startswith("12"):
        raise _bad_parameter("code", code)
    return int(text)


def _check_name(name: str | None, kind: int) -> str:
    limit = 20 if kind == KEYPAD_CODE else 32
    if name is None or not name.strip() or len(name) > limit:
        raise _bad_parameter("name", name)
    return name


def _check_window(fields: dict[str, Any]) -> None:
    week_days, start, end = (
        fields["allowed_week_days"],
        fields["allowed_from_time"],
        fields["allowed_until_time"],
    )
    if week_days is not None and not 0 <= week_days <= 127:
        raise _bad_parameter("allowedWeekDays", week_days)
    for key, value in (("allowedFromTime", start), ("allowedUntilTime", end)):
        if value is not None and not 0 <= value <= 1440:
            raise _bad_parameter(key, value)
    if (start is None) != (end is None):
        raise _status(422, "allowedFromTime and allowedUntilTime are set together")
    restricts = fields["allowed_until_date"] is not None or week_days or start is not None
    if restricts and fields["allowed_from_date"] is None:
        raise _status(422, "A time restriction needs allowedFromDate")


def _window_of(body: _AuthFields) -> dict[str, Any]:
    """The time fields as sent: a field left out is None, exactly like an explicit null."""
    fields = {attr: getattr(body, key) for key, attr in _TIME_KEYS.items()}
    _check_window(fields)
    return fields


def _codes(lock: SimSmartLock, skip: str | None = None) -> dict[int, Entry]:
    return {
        entry.code: entry
        for entry in lock.listed.values()
        if entry.type == KEYPAD_CODE and entry.code is not None and entry.id != skip
    }


class _Api:
    def __init__(self, state: NukiWebState) -> None:
        self.state = state

    # --- lookups --------------------------------------------------------------------------

    def lock(self, request: Request) -> SimSmartLock:
        raw = request.path_params["smartlock_id"]
        lock = self.state.locks.get(int(raw)) if raw.isdigit() else None
        if lock is None:
            raise _status(404, f"Smartlock {raw} not found")
        return lock

    def free(self, lock: SimSmartLock) -> SimSmartLock:
        if lock.pending is not None:
            raise _status(423, f"Smartlock {lock.smartlock_id} is locked for another operation")
        return lock

    def entry(self, lock: SimSmartLock, auth_id: str) -> Entry:
        entry = lock.listed.get(auth_id)
        if entry is None:
            raise _status(404, f"Smartlock auth {auth_id} not found")
        return entry

    def find_entry(self, auth_id: object) -> tuple[SimSmartLock, Entry]:
        for lock in self.state.locks.values():
            if isinstance(auth_id, str) and auth_id in lock.listed:
                return lock, lock.listed[auth_id]
        raise _bad_parameter("id", auth_id)

    def accepted(self, request: Request, body: object) -> Response:
        self.state.writes.append((request.method, request.url.path, body))
        return Response(status_code=204)

    # --- smart locks ----------------------------------------------------------------------

    async def smartlocks(self, request: Request) -> Response:
        return JSONResponse([lock.to_json() for lock in self.state.locks.values()])

    async def smartlock(self, request: Request) -> Response:
        return JSONResponse(self.lock(request).to_json())

    async def action(self, request: Request) -> Response:
        lock = self.free(self.lock(request))
        raw = await _json(request)
        body = _parse(_Action, raw)
        if body.action not in LOCK_STATE_AFTER:
            raise _bad_parameter("action", body.action)
        if body.option & ~0b110:
            raise _bad_parameter("option", body.option)

        def run(lock: SimSmartLock, now: dt.datetime) -> None:
            if lock.jammed:
                lock.state = 254
                self.state.log(lock, now, action=body.action, state=MOTOR_BLOCKED)
                return
            lock.state = LOCK_STATE_AFTER[body.action]
            self.state.log(lock, now, action=body.action)

        self.state.schedule(lock, "action", run)
        return self.accepted(request, raw)

    async def sync(self, request: Request) -> Response:
        lock = self.free(self.lock(request))
        self.state.schedule(lock, "sync", lambda lock, now: None)
        return self.accepted(request, None)

    # --- authorizations -------------------------------------------------------------------

    def _check_create(self, lock: SimSmartLock, body: _AuthFields) -> Callable[[], Entry]:
        kind = 0 if body.type is None else body.type
        if kind not in _CREATE_TYPES or (kind == KEYPAD_CODE and not lock.keypad_paired):
            raise _bad_parameter("type", kind)
        name = _check_name(body.name, kind)
        window = _window_of(body)
        code = None
        if kind == KEYPAD_CODE:
            code = _check_code(body.code)
            if code in _codes(lock):
                raise _status(409, "A keypad code with this code already exists")
            if len(_codes(lock)) >= _MAX_CODES:
                raise _status(409, "The keypad holds the maximum number of codes")
        else:
            if body.accountUserId not in self.state.users:
                raise _bad_parameter("accountUserId", body.accountUserId)
            if body.remoteAllowed is None:
                raise _bad_parameter("remoteAllowed", None)
            others = [entry for entry in lock.listed.values() if entry.type != KEYPAD_CODE]
            if len(others) >= _MAX_AUTHS:
                raise _status(409, "The smartlock holds the maximum number of authorizations")
        now = self.state.now()

        def make() -> Entry:
            entry = Entry(
                id=self.state.new_id(),
                smartlock_id=lock.smartlock_id,
                auth_id=lock.next_auth_id,
                type=kind,
                name=name,
                creation_date=now,
                update_date=now,
                enabled=True if body.enabled is None else body.enabled,
                remote_allowed=bool(body.remoteAllowed),
                smart_actions_enabled=bool(body.smartActionsEnabled),
                account_user_id=body.accountUserId,
                code=code,
            )
            if not self.state.faults.take("create_drops_window"):
                for attr, value in window.items():
                    setattr(entry, attr, value)
            return entry

        return make

    def _schedule_create(self, lock: SimSmartLock, make: Callable[[], Entry]) -> None:
        entry = make()
        if entry.type != KEYPAD_CODE and entry.account_user_id in self.state.users:
            user = self.state.users[entry.account_user_id]
            self.state.invites_sent.append((user.email, lock.smartlock_id, entry.name))

        def run(lock: SimSmartLock, now: dt.datetime) -> None:
            entry.auth_id = lock.next_auth_id
            lock.next_auth_id += 1
            lock.on_lock[entry.id] = entry

        self.state.schedule(lock, "create", run)

    async def create(self, request: Request) -> Response:
        lock = self.free(self.lock(request))
        raw = await _json(request)
        make = self._check_create(lock, _parse(_AuthFields, raw))
        self._schedule_create(lock, make)
        return self.accepted(request, raw)

    async def create_on(self, request: Request) -> Response:
        raw = await _json(request)
        body = _parse(_MultiCreate, raw)
        if not body.smartlockIds:
            raise _bad_parameter("smartlockIds", "[]")
        locks = []
        for smartlock_id in dict.fromkeys(body.smartlockIds):
            if smartlock_id not in self.state.locks:
                raise _bad_parameter("smartlockIds", smartlock_id)
            locks.append(self.free(self.state.locks[smartlock_id]))
        makers = [(lock, self._check_create(lock, body)) for lock in locks]
        for lock, make in makers:
            self._schedule_create(lock, make)
        return self.accepted(request, raw)

    def _check_update(
        self, lock: SimSmartLock, entry: Entry, body: _AuthFields
    ) -> Callable[[SimSmartLock, dt.datetime], None]:
        name = entry.name if body.name is None else _check_name(body.name, entry.type)
        window = _window_of(body)  # left out = cleared: the quirk users report
        code = entry.code
        if entry.type == KEYPAD_CODE and body.code is not None:
            code = _check_code(body.code)
            if code in _codes(lock, skip=entry.id):
                raise _status(409, "A keypad code with this code already exists")
        changes: dict[str, Any] = {"name": name, "code": code, **window}
        for key, attr in (
            ("enabled", "enabled"),
            ("remoteAllowed", "remote_allowed"),
            ("smartActionsEnabled", "smart_actions_enabled"),
        ):
            if getattr(body, key) is not None:
                changes[attr] = getattr(body, key)

        def run(lock: SimSmartLock, now: dt.datetime) -> None:
            held = lock.on_lock.get(entry.id)
            if held is not None:
                lock.on_lock[entry.id] = dataclasses.replace(held, **changes, update_date=now)

        return run

    async def update(self, request: Request) -> Response:
        lock = self.free(self.lock(request))
        entry = self.entry(lock, request.path_params["auth_id"])
        raw = await _json(request)
        run = self._check_update(lock, entry, _parse(_AuthFields, raw))
        self.state.schedule(lock, "update", run, frozenset({entry.id}))
        return self.accepted(request, raw)

    async def update_many(self, request: Request) -> Response:
        raw = await _json(request)
        if not isinstance(raw, list) or not raw:
            raise _bad_parameter("body", raw)
        planned: dict[int, list[tuple[Entry, Callable[[SimSmartLock, dt.datetime], None]]]] = {}
        for item in raw:
            body = _parse(_BulkUpdate, item)
            lock, entry = self.find_entry(body.id)
            self.free(lock)
            planned.setdefault(lock.smartlock_id, []).append(
                (entry, self._check_update(lock, entry, body))
            )
        for smartlock_id, runs in planned.items():
            self._schedule_all(self.state.locks[smartlock_id], "update", runs)
        return self.accepted(request, raw)

    def _schedule_all(
        self,
        lock: SimSmartLock,
        kind: str,
        runs: Sequence[tuple[Entry, Callable[[SimSmartLock, dt.datetime], None]]],
    ) -> None:
        def run(lock: SimSmartLock, now: dt.datetime) -> None:
            for _, one in runs:
                one(lock, now)

        self.state.schedule(lock, kind, run, frozenset(entry.id for entry, _ in runs))

    @staticmethod
    def _remover(entry_id: str) -> Callable[[SimSmartLock, dt.datetime], None]:
        return lambda lock, now: lock.on_lock.pop(entry_id, None) and None

    async def delete(self, request: Request) -> Response:
        lock = self.free(self.lock(request))
        entry = self.entry(lock, request.path_params["auth_id"])
        self.state.schedule(lock, "delete", self._remover(entry.id), frozenset({entry.id}))
        return self.accepted(request, None)

    async def delete_many(self, request: Request) -> Response:
        raw = await _json(request)
        if not isinstance(raw, list) or not raw:
            raise _bad_parameter("body", raw)
        planned: dict[int, list[tuple[Entry, Callable[[SimSmartLock, dt.datetime], None]]]] = {}
        for auth_id in raw:
            lock, entry = self.find_entry(auth_id)
            self.free(lock)
            planned.setdefault(lock.smartlock_id, []).append((entry, self._remover(entry.id)))
        for smartlock_id, runs in planned.items():
            self._schedule_all(self.state.locks[smartlock_id], "delete", runs)
        return self.accepted(request, raw)

    def _listing(self, locks: Sequence[SimSmartLock], request: Request) -> Response:
        types = _types(request.query_params.get("types"))
        user = request.query_params.get("accountUserId")
        entries = []
        for lock in locks:
            pending = lock.pending
            for entry in lock.listed.values():
                if types is not None and entry.type not in types:
                    continue
                if user is not None and str(entry.account_user_id) != user:
                    continue
                touched = pending is not None and entry.id in pending.entry_ids
                entries.append(entry.to_json(pending.id if pending and touched else None))
        return JSONResponse(entries)

    async def auths(self, request: Request) -> Response:
        return self._listing([self.lock(request)], request)

    async def all_auths(self, request: Request) -> Response:
        return self._listing(list(self.state.locks.values()), request)

    # --- account users --------------------------------------------------------------------

    async def users(self, request: Request) -> Response:
        return JSONResponse([user.to_json() for user in self.state.users.values()])

    async def create_user(self, request: Request) -> Response:
        body = _parse(_NewUser, await _json(request))
        if "@" not in body.email.strip("@ ") or " " in body.email.strip():
            raise _bad_parameter("email", body.email)
        if any(user.email.lower() == body.email.lower() for user in self.state.users.values()):
            raise _status(409, "An account user with this email already exists")
        user = self.state.add_user(body.email.strip(), body.name)
        return JSONResponse(user.to_json())

    async def delete_user(self, request: Request) -> Response:
        raw = request.path_params["user_id"]
        if not raw.isdigit() or int(raw) not in self.state.users:
            raise _status(404, f"Account user {raw} not found")
        del self.state.users[int(raw)]
        return self.accepted(request, None)

    # --- logs -----------------------------------------------------------------------------

    def _log_page(self, locks: Sequence[SimSmartLock], request: Request) -> Response:
        query = request.query_params
        raw_limit = query.get("limit", str(_LOG_DEFAULT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _LOG_MAX:
            raise _bad_parameter("limit", raw_limit)
        entries = sorted(
            (entry for lock in locks for entry in lock.logs), key=lambda e: e["id"], reverse=True
        )
        if (older_than := query.get("id")) is not None:
            entries = [entry for entry in entries if entry["id"] < older_than]
        if (action := query.get("action")) is not None:
            entries = [entry for entry in entries if str(entry["action"]) == action]
        return JSONResponse(entries[: int(raw_limit)])

    async def logs(self, request: Request) -> Response:
        return self._log_page([self.lock(request)], request)

    async def all_logs(self, request: Request) -> Response:
        return self._log_page(list(self.state.locks.values()), request)


def _types(raw: str | None) -> set[int] | None:
    if raw is None or not raw.strip():
        return None
    try:
        return {int(part) for part in raw.split(",")}
    except ValueError:
        raise _bad_parameter("types", raw) from None


def _control(state: NukiWebState) -> Callable[[Request], Awaitable[Response]]:
    """``GET``: pending operations; ``POST {"advance_s": N}`` moves a manual clock,
    ``{"complete": true}`` runs every pending operation now, ``{"delay_s": N}``,
    ``{"online": {"ID": false}}``, ``{"skip_fast_sync": N}``, ``{"create_drops_window": N}``."""

    async def control(request: Request) -> Response:
        if request.method == "POST":
            body = json.loads(await request.body() or b"{}")
            if "advance_s" in body:
                if not isinstance(state.clock, ManualClock):
                    return JSONResponse({"error": "the clock is the wall clock"}, 400)
                state.clock.advance(float(body["advance_s"]))
            if "delay_s" in body:
                state.delay_s = float(body["delay_s"])
            for smartlock_id, online in body.get("online", {}).items():
                state.locks[int(smartlock_id)].server_state = 0 if online else 4
            for fault in ("skip_fast_sync", "create_drops_window"):
                if fault in body:
                    setattr(state.faults, fault, int(body[fault]))
            if body.get("complete"):
                state.complete_pending()
        state.settle()
        return JSONResponse(
            {
                "now": state.now().isoformat(),
                "delay_s": state.delay_s,
                "pending": {
                    str(lock.smartlock_id): lock.pending.kind
                    for lock in state.locks.values()
                    if lock.pending is not None
                },
            }
        )

    return control


def nuki_web_app(state: NukiWebState, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The simulated Web API over ``state`` (serve it on 127.0.0.1, or through
    ``httpx.ASGITransport``)."""
    api = _Api(state)

    def endpoint(
        pattern: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            state.requests[f"{request.method} {pattern}"] += 1
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), state.api_token.encode()
            ):
                refusal = _status(401, "The request requires user authentication")
                return JSONResponse(refusal.body, refusal.status)
            state.settle()
            try:
                return await handler(request)
            except _Refused as refusal:
                return JSONResponse(refusal.body, refusal.status)

        return handle

    table: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
        ("GET", "/smartlock", api.smartlocks),
        ("GET", "/smartlock/auth", api.all_auths),
        ("PUT", "/smartlock/auth", api.create_on),
        ("POST", "/smartlock/auth", api.update_many),
        ("DELETE", "/smartlock/auth", api.delete_many),
        ("GET", "/smartlock/log", api.all_logs),
        ("GET", "/smartlock/{smartlock_id}", api.smartlock),
        ("POST", "/smartlock/{smartlock_id}/action", api.action),
        # The vendor's forum gives PUT; its Swagger is said to use POST: both are taken.
        ("PUT", "/smartlock/{smartlock_id}/sync", api.sync),
        ("POST", "/smartlock/{smartlock_id}/sync", api.sync),
        ("GET", "/smartlock/{smartlock_id}/auth", api.auths),
        ("PUT", "/smartlock/{smartlock_id}/auth", api.create),
        ("POST", "/smartlock/{smartlock_id}/auth/{auth_id}", api.update),
        ("DELETE", "/smartlock/{smartlock_id}/auth/{auth_id}", api.delete),
        ("GET", "/smartlock/{smartlock_id}/log", api.logs),
        ("GET", "/account/user", api.users),
        ("PUT", "/account/user", api.create_user),
        ("DELETE", "/account/user/{user_id}", api.delete_user),
    ]
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for method, pattern, handler in table:
        by_path.setdefault(pattern, {})[method] = endpoint(pattern, handler)

    def dispatch(
        methods: dict[str, Callable[[Request], Awaitable[Response]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            handler = methods.get(request.method)
            if handler is None:
                refusal = _status(405, f"{request.method} is not allowed here")
                return JSONResponse(refusal.body, refusal.status)
            return await handler(request)

        return route

    every = ["GET", "PUT", "POST", "DELETE", "PATCH"]
    routes: list[BaseRoute] = [
        Route(CONTROL_PATH, _control(state), methods=["GET", "POST"]),
        *extra_routes,
        *(Route(path, dispatch(methods), methods=every) for path, methods in by_path.items()),
    ]
    return Starlette(routes=routes)
