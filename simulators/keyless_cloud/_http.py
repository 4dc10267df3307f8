"""What every handler of the simulated platform shares: problem+json answers, the request
bodies as the vendor document describes them, parsing and validation, one :class:`Call`,
paging, and the JSON views of the platform's resources.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulators.keyless_cloud.state import (
    E164_MAX_DIGITS,
    MEDIA_TYPE,
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    PAGE_LIMIT_MIN,
    PROBLEM_MEDIA_TYPE,
    RE_KEYING_WINDOW,
    Association,
    GatewayDevice,
    KeylessPlatformState,
    LockCertificate,
    LockingDevice,
    LogEntry,
    OfflineKey,
    OperatingDevice,
    Permission,
    RemoteCommand,
    Role,
    Session,
    User,
    _b64,
    _iso,
)

# --- problems -------------------------------------------------------------------------------

_TITLES: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


class Problem(Exception):
    """Answered as ``application/problem+json``; ``detail`` names the rule that was broken."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _problem_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _not_found(what: str, identifier: str) -> Problem:
    return Problem(404, f"{what} {identifier} not found")


# --- server-side schemas, from the vendor document ------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)


_SchemaT = TypeVar("_SchemaT", bound=BaseModel)


class LoginBody(_Body):
    user_id: str
    access_key: str


class CreateUserBody(_Body):
    role: Role


class InvitationDelivery(enum.StrEnum):
    NONE = "NONE"
    SMS = "SMS"


class InvitationFormat(enum.StrEnum):
    INVITATION_LINK = "INVITATION_LINK"
    INVITATION_CODE = "INVITATION_CODE"


class InvitationBody(_Body):
    user_id: str
    validity_duration: str | None = None
    delivery_mechanism: InvitationDelivery
    phone_number: str | None = None
    format: InvitationFormat = InvitationFormat.INVITATION_LINK


class CreateLockingDeviceBody(_Body):
    name: str


class OperationType(enum.StrEnum):
    OPEN = "OPEN"
    UPDATE_FIRMWARE = "UPDATE_FIRMWARE"
    UPDATE_TIME = "UPDATE_TIME"


class PermissionType(enum.StrEnum):
    SINGLE_INTERVAL = "SINGLE_INTERVAL"
    MULTIPLE_INTERVALS = "MULTIPLE_INTERVALS"
    RECURRING = "RECURRING"


class PermissionBody(_Body):
    user_id: str
    locking_device_id: str
    operation_type: OperationType
    permission_type: PermissionType
    operating_key_validity_duration: str | None = None
    start: AwareDatetime
    end: AwareDatetime


class OfflineKeyDelivery(enum.StrEnum):
    NONE = "NONE"
    SMS_WITHOUT_APP_LINK = "SMS_WITHOUT_APP_LINK"
    SMS_WITH_APP_LINK = "SMS_WITH_APP_LINK"


class OfflineKeyBody(_Body):
    operating_device_id: str
    locking_device_id: str
    start_datetime: AwareDatetime
    end_datetime: AwareDatetime
    app_link_base_url: str | None = None
    delivery_mechanism: OfflineKeyDelivery
    phone_number: str | None = None


class ClaimGatewayBody(_Body):
    claiming_code: str


class AssociationBody(_Body):
    gateway_device_id: str
    locking_device_id: str


class RemoteCommandAction(enum.StrEnum):
    OPEN = "OPEN"


class RemoteCommandBody(_Body):
    gateway_device_id: str
    locking_device_id: str
    action: RemoteCommandAction


class ActivationBody(_Body):
    invitation_code: str
    public_key: str


class MobileLoginBody(_Body):
    operating_device_id: str
    access_key: str


class EntriesBody(_Body):
    entries: list[str]


class CsrBody(_Body):
    csr: str
    endorsement: str = ""
    """The lock's current key's signature over the CSR (checked; empty is refused)."""


class TimeStatementBody(_Body):
    nonce: str
    """Base64 of the nonce the lock just issued."""


def _parse(schema: type[_SchemaT], raw: Any) -> _SchemaT:
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise Problem(400, f"{where}: {first['msg']}") from None


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise Problem(400, f"{what} must be a UUID (got {value!r})") from None


_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)


def _duration(text: str, what: str) -> dt.timedelta:
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise Problem(
            400,
            f"{what} must be an ISO 8601 duration in weeks, days, hours, minutes or seconds "
            f"(e.g. P8D, PT24H; got {text!r})",
        )
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    return dt.timedelta(**parts)


_E164 = re.compile(rf"\+[1-9]\d{{1,{E164_MAX_DIGITS - 1}}}")


def _check_phone(phone_number: str | None, what: str) -> str:
    if phone_number is None:
        raise Problem(400, f"phoneNumber is required for {what} delivery")
    if not _E164.fullmatch(phone_number):
        raise Problem(400, f"phoneNumber must be in E.164 format (got {phone_number!r})")
    return phone_number


# --- one call -------------------------------------------------------------------------------


@dataclass
class Call:
    state: KeylessPlatformState
    request: Request
    now: dt.datetime
    session: Session | None
    route: str

    def path_id(self, name: str) -> str:
        return _uuid(str(self.request.path_params[name]), name.replace("_", "-"))

    async def body(self) -> Any:
        raw = await self.request.body()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Problem(400, "the request body must be JSON") from None

    @property
    def caller_id(self) -> str:
        assert self.session is not None
        return self.session.subject_id

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def operating_device(self) -> OperatingDevice:
        device = self.state.operating_devices.get(self.caller_id)
        if device is None:
            raise Problem(401, "the operating device of this token no longer exists")
        return device


Handler = Callable[[Call], Awaitable[Response]]


def _new_session(
    state: KeylessPlatformState, kind: str, subject: str, lifetime: dt.timedelta
) -> str:
    token = secrets.token_urlsafe(32)
    state.sessions[token] = Session(kind, subject, state.now() + lifetime)
    return token


_T = TypeVar("_T")


def _find(table: dict[str, _T], identifier: str, what: str) -> _T:
    found = table.get(identifier)
    if found is None:
        raise _not_found(what, identifier)
    return found


def _ok(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def _mobile_ok(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


def _no_content() -> Response:
    return Response(status_code=204)


def _page(
    call: Call, items: Sequence[tuple[Any, dict[str, Any]]], *, descending: bool = False
) -> Response:
    """One page of ``items`` ((sort key, json) pairs, any order) after the page token's cursor."""
    limit_text = call.query("limit")
    limit = PAGE_LIMIT_DEFAULT
    if limit_text is not None:
        try:
            limit = int(limit_text)
        except ValueError:
            limit = 0
        if not PAGE_LIMIT_MIN <= limit <= PAGE_LIMIT_MAX:
            raise Problem(
                400,
                f"limit must be an integer between {PAGE_LIMIT_MIN} and {PAGE_LIMIT_MAX} "
                f"(got {limit_text!r})",
            )
    scope = (
        call.route
        + "?"
        + "&".join(
            f"{name}={value}"
            for name, value in sorted(call.request.query_params.multi_items())
            if name not in ("limit", "next-page-token")
        )
    )
    ordered = sorted(items, key=lambda pair: pair[0], reverse=descending)
    token = call.query("next-page-token")
    if token is not None:
        known = call.state.page_tokens.get(token)
        if known is None or known[0] != scope:
            raise Problem(
                400, "next-page-token must be a token this list (with these filters) returned"
            )
        cursor = known[1]
        ordered = [
            pair for pair in ordered if (pair[0] < cursor if descending else pair[0] > cursor)
        ]
    body: dict[str, Any] = {"items": [item for _, item in ordered[:limit]]}
    if len(ordered) > limit:
        next_token = _b64(secrets.token_bytes(24))
        call.state.page_tokens[next_token] = (scope, ordered[limit - 1][0])
        body = {"nextPageToken": next_token, **body}
    return _ok(body)


def _log_filters(call: Call) -> tuple[int | None, dt.datetime | None, bool]:
    greater = call.query("sequence-number-greater-than")
    sequence: int | None = None
    if greater is not None:
        try:
            sequence = int(greater)
        except ValueError:
            sequence = -1
        if sequence < 0:
            raise Problem(
                400, f"sequence-number-greater-than must be an integer >= 0 (got {greater!r})"
            )
    after_text = call.query("after-datetime")
    after: dt.datetime | None = None
    if after_text is not None:
        try:
            after = dt.datetime.fromisoformat(after_text)
        except ValueError:
            after = None
        if after is None or after.tzinfo is None:
            raise Problem(
                400,
                "after-datetime must be an ISO 8601 date-time with a time zone "
                f"(got {after_text!r})",
            )
    direction = call.query("sort-direction") or "ASC"
    if direction not in ("ASC", "DESC"):
        raise Problem(400, f"sort-direction must be ASC or DESC (got {direction!r})")
    return sequence, after, direction == "DESC"


# --- JSON views -----------------------------------------------------------------------------


def _user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "role": user.role.value}


def _certificate_json(
    lock: LockingDevice, cert: LockCertificate, now: dt.datetime
) -> dict[str, Any]:
    eligible = (
        lock.re_keying_forced
        or lock.pending_certificate is not None
        or (cert.not_after - now <= RE_KEYING_WINDOW)
    )
    return {
        "eligibleForReKeying": eligible,
        "expirationDatetime": _iso(cert.not_after),
        "revoked": False,
    }


def _lock_json(lock: LockingDevice, now: dt.datetime) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": lock.id,
        "name": lock.name,
        "claimingStatus": "CLAIMED" if lock.claimed else "UNCLAIMED",
    }
    if lock.certificate is None:
        return body
    body["serialNumber"] = lock.serial_number
    body["operationalCertificate"] = _certificate_json(lock, lock.certificate, now)
    manufacturing = lock.manufacturing_expires_at or lock.certificate.not_after
    body["manufacturingCertificate"] = {
        "eligibleForReKeying": False,
        "expirationDatetime": _iso(manufacturing),
        "revoked": False,
    }
    body["hardwareModel"] = lock.hardware_model
    body["hardwareVersion"] = lock.hardware_version
    body["firmwareVersion"] = lock.firmware_version
    return body


def _permission_json(permission: Permission) -> dict[str, Any]:
    return {
        "id": permission.id,
        "permissionType": permission.permission_type,
        "userId": permission.user_id,
        "lockingDeviceId": permission.locking_device_id,
        "operationType": permission.operation_type,
        "operatingKeyValidityDuration": f"P{permission.validity.days}D"
        if permission.validity == dt.timedelta(days=permission.validity.days)
        else f"PT{int(permission.validity.total_seconds())}S",
        "start": _iso(permission.start),
        "end": _iso(permission.end),
    }


def _offline_key_json(key: OfflineKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "issuerUserId": key.issuer_user_id,
        "operatingDeviceId": key.operating_device_id,
        "lockingDeviceId": key.locking_device_id,
        "startDatetime": _iso(key.start),
        "endDatetime": _iso(key.end),
        "issuanceDatetime": _iso(key.issued_at),
        "deliveryMechanism": key.delivery_mechanism,
    }


def _gateway_json(gateway: GatewayDevice) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": gateway.id,
        "serialNumber": gateway.serial_number,
        "activationStatus": "ACTIVATED" if gateway.activated_at else "PENDING_ACTIVATION",
        "creationDatetime": _iso(gateway.created_at),
    }
    if gateway.activated_at is not None:
        body["activationDatetime"] = _iso(gateway.activated_at)
        body["hardwareModel"] = gateway.hardware_model
        body["hardwareVersion"] = gateway.hardware_version
        body["firmwareVersion"] = gateway.firmware_version
    return body


def _association_json(association: Association) -> dict[str, Any]:
    return {
        "id": association.id,
        "gatewayDeviceId": association.gateway_device_id,
        "lockingDeviceId": association.locking_device_id,
        "creationDatetime": _iso(association.created_at),
    }


def _remote_command_json(command: RemoteCommand) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": command.id,
        "gatewayDeviceId": command.gateway_device_id,
        "lockingDeviceId": command.locking_device_id,
        "action": command.action,
        "validityStartDatetime": _iso(command.valid_from),
        "validityEndDatetime": _iso(command.valid_until),
        "issuerUserId": command.issuer_user_id,
        "issuanceDatetime": _iso(command.issued_at),
    }
    if command.acknowledged_at is not None:
        body["acknowledgementDatetime"] = _iso(command.acknowledged_at)
    if command.canceled_at is not None:
        body["cancelerUserId"] = command.canceler_user_id
        body["cancellationDatetime"] = _iso(command.canceled_at)
    return body


def _log_json(entry: LogEntry, *, audit: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": entry.id,
        "lockingDeviceId": entry.locking_device_id,
        "eventName": entry.event_name,
        "occurrenceDatetime": _iso(entry.occurred_at),
        "sequenceNumber": entry.sequence_number,
    }
    if audit:
        if entry.client is not None:
            body["client"] = entry.client
        body["granted"] = bool(entry.granted)
    return body
