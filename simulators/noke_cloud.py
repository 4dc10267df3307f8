"""A simulated Nokē Core API: a Starlette app with its own server-side schemas from the vendor doc.

It is served over real HTTP on 127.0.0.1 (uvicorn) for end-to-end runs, or through
``httpx.ASGITransport(app=create_app(state))`` in unit tests. It does not use blelock's client
models: it reads requests the way the vendor documents them (``shared/vendor-docs``, noke.md §7,
§9), so a client that drifts from the documentation fails here.

Rules (what is public is followed; the rest is marked as our choice):

* Every route is ``POST`` with a JSON body, with or without its trailing slash.
* ``Authorization: Bearer <api key>``; ``/upload/`` takes the *mobile* key instead. A wrong or
  missing key → HTTP 401 with the envelope, ``error_code`` 2.
* API-level errors are HTTP 200 with ``result: "failure"`` and the documented ``error_code``
  (3 malformed input, 4 wrong method, 5 no such endpoint, 7 lock not found); HTTP status codes
  for API errors are not public (noke.md §9.5), so 429 / 500 are kept for injected faults.
* ``/unlock/`` and ``/unshackle/`` answer ``data.commands`` sealed for the lock's key and the
  session by :func:`blelock.vendors.noke.protocol.cloud_command_string`, with a setup command
  first while the lock is ``setup_pending``.
* ``/qc/`` (:mod:`simulators.noke_quick_clicks`) enforces the seed doc's quick-click rules;
  quick clicks ride in the next online unlock's command string. ``/activity/``
  (:mod:`simulators.noke_activity`) is built from the records received.
* ``/lock/`` reports the battery of the lock's latest record and, in ``flags``, what waits for
  an online unlock (``setup``, ``keys``, ``quick_clicks``).
* ``/upload/`` de-duplicates records on (mac, session, response) so at-least-once delivery is
  safe (our choice, noke.md §7.6) and hands each new record to
  :meth:`NokeCloudState.record_uploaded`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from pydantic import StrictInt
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from blelock.vendors.noke.protocol import cloud_command_string
from simulators.noke_activity import handle_activity
from simulators.noke_cloud_http import _OK_MESSAGE, Hex40, Mac, _Body, _envelope, _parse, _Refusal
from simulators.noke_cloud_state import (
    CloudFaults,
    IssuedCommands,
    NokeCloudState,
    RegisteredLock,
    UploadedRecord,
    note_contact,
)
from simulators.noke_quick_clicks import carried_quick_clicks, handle_qc
from simulators.round_trip import within_round_trip

__all__ = ["create_app"]


# --- server-side schemas, from the vendor documentation -------------------------------------


class LockQuery(_Body):
    macs: list[Mac] | None = None
    serials: list[str] | None = None


class CommandRequest(_Body):
    mac: Mac
    session: Hex40
    tracking_key: str | None = None


class UploadEntry(_Body):
    session: Hex40
    mac: Mac
    received_time: StrictInt
    """An integer (the vendor's 2018 fix turned a string into an int, noke.md §7.1)."""
    responses: list[Hex40]


class UploadBody(_Body):
    logs: list[UploadEntry]


class KeyScope(_Body):
    macs: list[Mac] | None = None
    tracking_keys: list[str] | None = None


class KeysBody(_Body):
    """/keys/: issue, display and revoke ride in the body (noke.md §9.3)."""

    issue: list[KeyScope] | None = None
    display: KeyScope | None = None
    revoke: list[KeyScope] | None = None


# --- the app --------------------------------------------------------------------------------


Handler = Callable[[NokeCloudState, bytes, Callable[[], int]], Awaitable[Response]]


_LISTING_PIECE = 1000
"""Locks a streamed whole-company listing encodes at a time."""


def _lock_entry(lock: RegisteredLock) -> dict[str, Any]:
    return {
        "mac": lock.mac.upper(),
        "created_by": lock.created_by,
        "created_date": lock.created_date,
        "setup_count": lock.setup_count,
        "hw_version": lock.hw_version,
        "fw_version": lock.fw_version,
        "serial": lock.serial,
        "internal_battery": lock.internal_battery,
        "external_battery": lock.external_battery,
        "status": "awaiting setup" if lock.setup_pending else "ready",
        "flags": lock.flags,
    }


def _streamed_listing(locks: list[RegisteredLock]) -> Response:
    """The whole company's ``/lock/`` answer, the same JSON as :func:`_envelope` would give, sent
    as it is encoded (chunked, as a web server streams a large answer) instead of encoded whole
    first: the client starts reading while the rest is still being written."""

    async def pieces() -> AsyncIterator[bytes]:
        message = json.dumps(_OK_MESSAGE)
        yield f'{{"result":"success","message":{message},"error_code":0,"data":{{"locks":['.encode()
        for start in range(0, len(locks), _LISTING_PIECE):
            entries = [_lock_entry(lock) for lock in locks[start : start + _LISTING_PIECE]]
            yield (b"," if start else b"") + to_json(entries)[1:-1]
            await asyncio.sleep(0)  # other requests are served meanwhile, as by a real server
        yield b']},"request":"lock"}'

    return StreamingResponse(pieces(), media_type="application/json")


async def _lock(state: NokeCloudState, raw: bytes, clock: Callable[[], int]) -> Response:
    query = _parse(LockQuery, raw, empty_ok=True)
    if query.macs is None and query.serials is None:
        # The snapshot of which locks the company has is taken now; their entries as sent.
        return _streamed_listing(list(state.locks.values()))
    # A client syncing a fleet asks for a chunk of locks at a time: each is looked up by
    # its MAC (not by a walk over the fleet), answered once, in the order asked.
    wanted = list(dict.fromkeys(mac.upper() for mac in query.macs or ()))
    missing = sorted(mac for mac in wanted if mac not in state.locks)
    if missing:
        raise _Refusal(7, f"Lock not found: {', '.join(missing[:5])}")
    picked = {mac: state.locks[mac] for mac in wanted}
    if query.serials:
        serials = set(query.serials)
        picked |= {m: lock for m, lock in state.locks.items() if lock.serial in serials}
    chosen = list(picked.values())
    return _envelope("lock", data={"locks": [_lock_entry(lock) for lock in chosen]})


def _commands(action: str) -> Handler:
    async def handle(state: NokeCloudState, raw: bytes, clock: Callable[[], int]) -> JSONResponse:
        body = _parse(CommandRequest, raw)
        lock = state.find_lock(body.mac)
        if lock is None:
            raise _Refusal(7, f"Lock not found: {body.mac.upper()}")
        # Quick clicks are synced by an online unlock (doc); a firmware update carries none.
        removes, adds = carried_quick_clicks(lock) if action != "fwupdate" else ((), ())
        batch = IssuedCommands(
            mac=lock.mac.upper(),
            action=action,
            session=body.session.lower(),
            tracking_key=body.tracking_key,
            batch_id=state.next_batch_id(),
            setup=lock.setup_pending,
            unix_time=clock(),
            commands="",
            revoked_slots=tuple(lock.revocations_to_send),
            quick_clicks_removed=removes,
            quick_clicks_added=tuple(code for code, _ in adds),
        )
        commands = cloud_command_string(
            lock.key,
            bytes.fromhex(body.session),
            action,
            unix_time=batch.unix_time,
            batch_id=batch.batch_id,
            setup=batch.setup,
            revoke_slots=batch.revoked_slots,
            remove_quick_clicks=removes,
            add_quick_clicks=adds,
        )
        issued = dataclasses.replace(batch, commands=commands)
        state.commands_issued.append(issued)
        state.batches[(batch.mac, batch.session)] = issued
        note_contact(lock, batch.unix_time, batch.session)
        if batch.revoked_slots:
            state.revocations_sent[(batch.mac, batch.session)] = batch.revoked_slots
        return _envelope(action, data={"commands": commands}, token=secrets.token_hex(16))

    return handle


def _locks_in(state: NokeCloudState, macs: list[str] | None) -> list[RegisteredLock]:
    if macs is None:
        return list(state.locks.values())
    wanted = dict.fromkeys(mac.upper() for mac in macs)  # each lock once, in the order asked
    missing = sorted(wanted.keys() - state.locks.keys())
    if missing:
        raise _Refusal(7, f"Lock not found: {', '.join(missing[:5])}")
    return [state.locks[mac] for mac in wanted]


def _key_listing(locks: list[RegisteredLock], tracking_keys: list[str] | None) -> dict[str, Any]:
    wanted = None if tracking_keys is None else set(tracking_keys)
    return {
        "locks": [
            {
                "mac": lock.mac.upper(),
                "keys": [
                    {
                        "tracking_key": key.tracking_key,
                        "offline_key": key.offline_key,
                        "unlock_command": key.unlock_command,
                    }
                    for key in lock.offline_keys.values()
                    if wanted is None or key.tracking_key in wanted
                ],
            }
            for lock in locks
        ]
    }


async def _keys(state: NokeCloudState, raw: bytes, clock: Callable[[], int]) -> JSONResponse:
    body = _parse(KeysBody, raw, empty_ok=True)
    touched: dict[str, RegisteredLock] = {}
    for scope in body.issue or ():
        if not scope.macs or not scope.tracking_keys:
            raise _Refusal(3, "Invalid input: issue needs macs and tracking_keys")
        for lock in _locks_in(state, scope.macs):
            for tracking_key in scope.tracking_keys:
                lock.issue_offline_key(tracking_key)
            touched[lock.mac] = lock
    for scope in body.revoke or ():
        if scope.macs is None and scope.tracking_keys is None:
            raise _Refusal(3, "Invalid input: revoke needs macs or tracking_keys")
        for lock in _locks_in(state, scope.macs):
            for tracking_key in scope.tracking_keys or list(lock.offline_keys):
                lock.revoke_offline_key(tracking_key)
            if scope.macs is not None or any(lock.offline_keys):
                touched[lock.mac] = lock
    if body.issue is not None or body.revoke is not None:
        return _envelope("keys", data=_key_listing(list(touched.values()), None))
    display = body.display or KeyScope()
    return _envelope(
        "keys", data=_key_listing(_locks_in(state, display.macs), display.tracking_keys)
    )


async def _upload(state: NokeCloudState, raw: bytes, clock: Callable[[], int]) -> JSONResponse:
    body = _parse(UploadBody, raw)
    for entry in body.logs:
        for response in entry.responses:
            record = UploadedRecord(
                mac=entry.mac.upper(),
                session=entry.session.lower(),
                response=response.lower(),
                received_time=entry.received_time,
            )
            state.records_received += 1
            key = (record.mac, record.session, record.response)
            if key in state.uploaded:
                state.records_duplicate += 1
                continue
            state.uploaded[key] = record
            state.record_uploaded(record)
    return _envelope("upload")


_ROUTES: dict[str, Handler] = {
    "lock": _lock,
    "unlock": _commands("unlock"),
    "unshackle": _commands("unshackle"),
    "fwupdate": _commands("fwupdate"),
    "upload": _upload,
    "keys": _keys,
}


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _fault_response(fault: str, name: str, faults: CloudFaults) -> Response:
    if fault == "rate_limit":
        return PlainTextResponse(
            "Too Many Requests",
            status_code=429,
            headers={"Retry-After": str(faults.retry_after_s)},
        )
    if fault == "fail_with_500":
        return _envelope(name, error_code=1, message="Internal server error", status=500)
    return PlainTextResponse("<html><body>502 Bad Gateway</body></html>", media_type="text/html")


def create_app(
    state: NokeCloudState,
    *,
    clock: Callable[[], int] = lambda: int(time.time()),
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The simulated Core API over ``state``; ``clock`` stamps the commands it issues.
    ``extra_routes`` (the harness's introspection) are matched before the catch-all."""

    def endpoint(name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            state.requests[name] += 1
            return await within_round_trip(
                state.faults.latency_s, lambda: answer(request), waits=state.modelled
            )

        async def answer(request: Request) -> Response:
            if (fault := state.faults.draw()) is not None:
                state.faulted[fault] += 1
                return _fault_response(fault, name, state.faults)
            if request.method != "POST":
                return _envelope(name, error_code=4, message="Wrong method: use POST")
            expected = state.mobile_key if name == "upload" else state.api_key
            given = _bearer(request)
            if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
                return _envelope(
                    name, error_code=2, message="API key invalid or missing", status=401
                )
            raw = await request.body()
            idempotency_key = request.headers.get("Idempotency-Key")
            if name == "upload" and idempotency_key in state.upload_keys:
                if state.upload_keys[idempotency_key] != hashlib.sha256(raw).hexdigest():
                    return _envelope(
                        name,
                        error_code=3,
                        message="Idempotency-Key reused with a different body",
                        status=409,
                    )
                state.uploads_replayed += 1
                return _envelope(name)
            try:
                response = await handler(state, raw, clock)
                if name == "upload" and idempotency_key:
                    state.upload_keys[idempotency_key] = hashlib.sha256(raw).hexdigest()
                return response
            except _Refusal as refusal:
                return _envelope(
                    name,
                    error_code=refusal.error_code,
                    message=refusal.message,
                    status=refusal.status,
                )

        return handle

    async def no_such_endpoint(request: Request) -> Response:
        return _envelope("unknown", error_code=5, message="Invalid endpoint")

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    handlers = _ROUTES | {"qc": handle_qc, "activity": handle_activity}
    routes: list[BaseRoute] = [
        Route(path, endpoint(name, handler), methods=methods)
        for name, handler in handlers.items()
        for path in (f"/{name}/", f"/{name}")
    ]
    routes.extend(extra_routes)
    routes.append(Route("/{path:path}", no_such_endpoint, methods=methods))
    return Starlette(routes=routes)
