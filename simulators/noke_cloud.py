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
import collections
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from blelock.errors import ProtocolError
from blelock.vendors.noke.protocol import (
    OFFLINE_SLOTS,
    RecordType,
    cloud_command_string,
    offline_grant_material,
    open_server_packet,
)
from simulators.round_trip import within_round_trip

if TYPE_CHECKING:
    from simulators.noke_activity import ActivityEntry
    from simulators.noke_quick_clicks import QuickClick

__all__ = [
    "CloudFaults",
    "IssuedCommands",
    "NokeCloudState",
    "RegisteredLock",
    "UploadedRecord",
    "create_app",
]

_MAC = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
_HEX40 = r"^[0-9A-Fa-f]{40}$"
_OK_MESSAGE = "Command successfully completed"


# --- the world the cloud knows --------------------------------------------------------------


@dataclass
class RegisteredLock:
    mac: str
    """``AA:BB:CC:DD:EE:FF``."""
    key: bytes
    """The lock's 16-byte base key, shared with the simulated lock."""
    hw_version: str
    fw_version: str
    serial: str
    setup_pending: bool = True
    """A new lock is set up by its first online unlock."""
    created_by: str = "blelock simulator"
    created_date: str = "2018-04-04T16:00:00Z"
    setup_count: int = 0
    internal_battery: int = 0
    external_battery: int = 0
    offline_keys: dict[str, OfflineKey] = field(default_factory=dict)
    """Active offline keys by tracking key."""
    revoked_slots: set[int] = field(default_factory=set)
    """Revoked here; sent to the lock in every online command string until it confirms."""
    confirmed_revocations: set[int] = field(default_factory=set)
    """Revocations the lock has executed (seen in an uploaded record of the session they
    were sent in)."""
    slot_holders: dict[int, str] = field(default_factory=dict)
    """Tracking key each offline slot was issued to (revoked ones too: activity names them)."""
    quick_clicks: dict[str, QuickClick] = field(default_factory=dict)
    """By code, in the order issued: pending, on the lock, or revoked and not yet removed."""
    contacts: list[tuple[int, str]] = field(default_factory=list)
    """(Unix time, session) of every command batch and record: activity's date ranges."""

    @property
    def flags(self) -> list[str]:
        """What waits for an online unlock to carry it to the lock."""
        flags = ["setup"] if self.setup_pending else []
        if self.revocations_to_send:
            flags.append("keys")
        if any(qc.pending or qc.revoked for qc in self.quick_clicks.values()):
            flags.append("quick_clicks")
        return flags

    def issue_offline_key(self, tracking_key: str) -> OfflineKey:
        """The tracking key's active key, or a new one in the lowest never-used slot."""
        if (existing := self.offline_keys.get(tracking_key)) is not None:
            return existing
        used = {key.slot for key in self.offline_keys.values()} | self.revoked_slots
        slot = next((n for n in range(OFFLINE_SLOTS) if n not in used), None)
        if slot is None:
            raise _Refusal(3, f"Offline key pool of {OFFLINE_SLOTS} is full for {self.mac}")
        offline_key, unlock_command = offline_grant_material(self.key, slot)
        issued = OfflineKey(tracking_key, slot, offline_key.hex(), unlock_command.hex())
        self.offline_keys[tracking_key] = issued
        self.slot_holders[slot] = tracking_key
        return issued

    def revoke_offline_key(self, tracking_key: str) -> None:
        if (revoked := self.offline_keys.pop(tracking_key, None)) is not None:
            self.revoked_slots.add(revoked.slot)

    @property
    def revocations_to_send(self) -> list[int]:
        return sorted(self.revoked_slots - self.confirmed_revocations)


@dataclass(frozen=True)
class OfflineKey:
    tracking_key: str
    slot: int
    offline_key: str
    """Hex, as /keys/ hands it out."""
    unlock_command: str


@dataclass
class CloudFaults:
    """Switches a test or benchmark flips; counts are "the next N requests", -1 = always."""

    fail_with_500: int = 0
    garbage_json: int = 0
    rate_limit: int = 0
    retry_after_s: int = 2
    """The ``Retry-After`` (seconds) sent with an injected 429."""
    latency_s: float = 0.0
    """Added to every request; part of the benchmark's latency model."""

    @staticmethod
    def _take(count: int) -> tuple[bool, int]:
        if count == 0:
            return False, 0
        return True, count if count < 0 else count - 1

    def draw(self) -> str | None:
        """Which fault (if any) answers this request; uses up one of its count."""
        for name in ("rate_limit", "fail_with_500", "garbage_json"):
            hit, left = self._take(getattr(self, name))
            if hit:
                setattr(self, name, left)
                return name
        return None


@dataclass(frozen=True)
class IssuedCommands:
    """One command batch the cloud handed out."""

    mac: str
    action: str
    session: str
    """Lower-case hex."""
    tracking_key: str | None
    batch_id: int
    setup: bool
    unix_time: int
    commands: str
    revoked_slots: tuple[int, ...] = ()
    quick_clicks_removed: tuple[str, ...] = ()
    quick_clicks_added: tuple[str, ...] = ()


@dataclass(frozen=True)
class UploadedRecord:
    mac: str
    """Upper-case."""
    session: str
    """Lower-case hex."""
    response: str
    """The 0x50 packet, lower-case hex."""
    received_time: int


@dataclass
class NokeCloudState:
    locks: dict[str, RegisteredLock] = field(default_factory=dict)
    """By upper-case MAC."""
    api_key: str = "sim-noke-api-key"
    mobile_key: str = "sim-noke-mobile-key"
    faults: CloudFaults = field(default_factory=CloudFaults)

    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    """Requests received per route (``"unlock"``, …), faulted ones included."""
    faulted: collections.Counter[str] = field(default_factory=collections.Counter)
    """Requests answered by an injected fault, per fault name."""
    commands_issued: list[IssuedCommands] = field(default_factory=list)
    uploaded: dict[tuple[str, str, str], UploadedRecord] = field(default_factory=dict)
    """Distinct records, by (mac, session, response)."""
    records_received: int = 0
    """Every record in every accepted upload, duplicates included."""
    records_duplicate: int = 0
    revocations_sent: dict[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    """Revoked slots carried by the commands issued for (mac, session)."""
    upload_keys: dict[str, str] = field(default_factory=dict)
    """Idempotency-Key of each upload already processed → SHA-256 of its body."""
    uploads_replayed: int = 0
    """Uploads answered from ``upload_keys`` without being processed again."""
    batches: dict[tuple[str, str], IssuedCommands] = field(default_factory=dict)
    """The latest command batch issued per (mac, session)."""
    activity: list[ActivityEntry] = field(default_factory=list)
    """Built from the records received, oldest first (see :mod:`simulators.noke_activity`)."""
    _batch_id: int = 0

    def __post_init__(self) -> None:
        self.locks = {mac.upper(): lock for mac, lock in self.locks.items()}

    def add_lock(self, lock: RegisteredLock) -> RegisteredLock:
        self.locks[lock.mac.upper()] = lock
        return lock

    def find_lock(self, mac: str) -> RegisteredLock | None:
        return self.locks.get(mac.upper())

    def next_batch_id(self) -> int:
        self._batch_id = self._batch_id % 255 + 1
        return self._batch_id

    def record_uploaded(self, record: UploadedRecord) -> None:
        """Read what the lock reported: a key record acknowledges setup; any authentic record
        from a session confirms the revocations that session's commands carried."""
        lock = self.find_lock(record.mac)
        if lock is None:
            return
        try:
            opened = open_server_packet(
                lock.key, bytes.fromhex(record.session), bytes.fromhex(record.response)
            )
        except ProtocolError:
            return  # kept as received, but it proves nothing
        from simulators.noke_activity import note_contact, record_activity
        from simulators.noke_quick_clicks import confirm_quick_clicks

        record_activity(self, lock, record, opened)
        note_contact(lock, record.received_time, record.session)
        lock.internal_battery = opened.battery_mv
        if opened.record_type == RecordType.KEY and lock.setup_pending:
            lock.setup_pending = False
            lock.setup_count += 1
        if opened.record_type == RecordType.UNLOCK:
            # The lock ran the action, so it ran the REMOVE packets sent before it in that
            # string (a setup record alone proves nothing: the link may have dropped after it).
            sent = self.revocations_sent.get((lock.mac.upper(), record.session), ())
            lock.confirmed_revocations.update(sent)
            batch = self.batches.get((lock.mac.upper(), record.session))
            if batch is not None:
                confirm_quick_clicks(lock, batch.quick_clicks_removed, batch.quick_clicks_added)


# --- server-side schemas, from the vendor documentation -------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


_SchemaT = TypeVar("_SchemaT", bound=BaseModel)

Mac = Annotated[str, Field(pattern=_MAC)]
Hex40 = Annotated[str, Field(pattern=_HEX40)]


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


def _envelope(
    request: str,
    *,
    data: Any = None,
    error_code: int = 0,
    message: str = _OK_MESSAGE,
    status: int = 200,
    **extra: Any,
) -> JSONResponse:
    body = {
        "result": "success" if error_code == 0 else "failure",
        "message": message,
        "error_code": error_code,
        "data": {} if data is None else data,
        "request": request,
        **extra,
    }
    return JSONResponse(body, status_code=status)


class _Refusal(Exception):
    """An API-level error: answered as the envelope with this error_code."""

    def __init__(self, error_code: int, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status


def _parse(schema: type[_SchemaT], raw: bytes, *, empty_ok: bool = False) -> _SchemaT:
    if empty_ok and not raw.strip():
        raw = b"{}"
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise _Refusal(3, f"Invalid input: {where}: {first['msg']}") from None


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
            text = json.dumps(entries, ensure_ascii=False, separators=(",", ":"))[1:-1]
            yield (b"," if start else b"") + text.encode()
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
        from simulators.noke_activity import note_contact
        from simulators.noke_quick_clicks import carried_quick_clicks

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
            return await within_round_trip(state.faults.latency_s, lambda: answer(request))

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
    from simulators.noke_activity import handle_activity
    from simulators.noke_quick_clicks import handle_qc

    handlers = _ROUTES | {"qc": handle_qc, "activity": handle_activity}
    routes: list[BaseRoute] = [
        Route(path, endpoint(name, handler), methods=methods)
        for name, handler in handlers.items()
        for path in (f"/{name}/", f"/{name}")
    ]
    routes.extend(extra_routes)
    routes.append(Route("/{path:path}", no_such_endpoint, methods=methods))
    return Starlette(routes=routes)
