"""Pydantic models and client-side rules of the ASSA ABLOY Keyless Administration API v2.

The vendor document (``shared/vendor-docs/keyless-administration-api-v2.txt``) is the contract:
every number it states is a named constant in :class:`KeylessLimits` below, and every rule the
client checks before sending is a ``check_*`` function here raising :class:`UsageError` whose
message names the rule. Answers are read leniently (unknown fields ignored: minor versions add
fields, the document says so); requests are exactly what the document shows, in camelCase.

The ``Mobile*`` models belong to the operating-device routes under ``/mobile``: they are the
project's stand-in for the non-public Mobile API, not vendor facts. Their binary fields arrive as
base64 and are decoded here; private keys and access keys are secrets.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import re
import uuid
from typing import Annotated, Final, Generic, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretBytes,
    SecretStr,
)
from pydantic.alias_generators import to_camel

from blelock.errors import UsageError

__all__ = [
    "ActivationStatus",
    "AuditLogClient",
    "Certificate",
    "ClaimingStatus",
    "CreatedUser",
    "GatewayAssociation",
    "GatewayAuditLogEntry",
    "GatewayDevice",
    "GatewaySystemLogEntry",
    "InvitationDelivery",
    "InvitationFormat",
    "IssuedOfflineKey",
    "KeylessLimits",
    "LockingDevice",
    "LockingDeviceAuditLogEntry",
    "LockingDeviceSystemLogEntry",
    "MobileActivation",
    "MobileOfflineKey",
    "MobileOfflineKeyMaterial",
    "MobileOperatingKey",
    "MobileRevocations",
    "MobileUpload",
    "OfflineKeyDelivery",
    "OfflineKeyMetadata",
    "OfflineKeyValue",
    "OperatingDevice",
    "OperatingDeviceInvitation",
    "OperationType",
    "Page",
    "Permission",
    "PermissionType",
    "Problem",
    "RemoteCommand",
    "RemoteCommandAction",
    "Role",
    "SortDirection",
    "User",
    "format_duration",
    "parse_duration",
    "utc_text",
]


class KeylessLimits:
    """Every number the vendor document states, in one place (quoted where it says so)."""

    MEDIA_TYPE: Final = "application/vnd.assaabloy.keyless.administration-2+json"
    """"The media type for this API" — sent in ``Accept`` on every call."""
    TOKEN_LIFETIME: Final = dt.timedelta(hours=1)
    """"The token is valid for one hour from the time it was created"."""
    TOKEN_REFRESH_MARGIN: Final = dt.timedelta(seconds=60)
    """Ours, not the vendor's: log in again this long before the hour is up, so that a slow
    request does not reach the platform with a token that expired on the way."""
    PAGE_LIMIT_MIN: Final = 1
    PAGE_LIMIT_MAX: Final = 100
    PAGE_LIMIT_DEFAULT: Final = 50
    """``limit | integer [ 1 .. 100 ] Default: 50`` on every list."""
    LOCKING_DEVICE_NAME_MIN: Final = 1
    LOCKING_DEVICE_NAME_MAX: Final = 255
    """``name required | string [ 1 .. 255 ] characters``."""
    INVITATION_VALIDITY_DEFAULT: Final = dt.timedelta(hours=24)
    INVITATION_VALIDITY_MAX: Final = dt.timedelta(days=365)
    """"Must be greater than 0 seconds and less than or equal to 365 days"."""
    OPERATING_KEY_VALIDITY_MIN: Final = dt.timedelta(days=1)
    OPERATING_KEY_VALIDITY_MAX: Final = dt.timedelta(days=31)
    OPERATING_KEY_VALIDITY_DEFAULT: Final = dt.timedelta(days=8)
    """``operatingKeyValidityDuration`` "greater than or equal to 1 day and less than or equal
    to 31 days", default ``P8D``."""
    PERMISSION_RETENTION: Final = dt.timedelta(days=14)
    """"Past permissions are automatically removed 14 days after their expiration"."""
    OFFLINE_KEY_MAX_START_AHEAD: Final = dt.timedelta(days=30)
    """"The start date time cannot be more than 30 days in the future"."""
    OFFLINE_KEY_MAX_DURATION: Final = dt.timedelta(hours=24)
    """"The end date time cannot be more than 24 hours after start date time"."""
    APP_LINK_BASE_URL_MAX: Final = 42
    APP_LINK_BASE_URL_DEFAULT: Final = "https://keyless.assaabloy.com"
    ASSOCIATIONS_PER_GATEWAY_MAX: Final = 5
    """"Gateway device can be associated with a maximum of 5 locking devices at the same time".
    (A note on the same page says the platform "currently allows 6"; the documented maximum
    is the one a client can rely on.)"""
    REMOTE_COMMAND_VALIDITY: Final = dt.timedelta(minutes=5)
    """"Issues a remote command that is valid for 5 minutes"."""
    SEQUENCE_NUMBER_MIN: Final = 0
    """``sequence-number-greater-than | integer >= 0``."""
    E164_MAX_DIGITS: Final = 15
    """ITU-T E.164: at most 15 digits after the ``+``."""


# --- enums ----------------------------------------------------------------------------------


class Role(enum.StrEnum):
    USER = "USER"
    ADMIN = "ADMIN"


class ClaimingStatus(enum.StrEnum):
    UNCLAIMED = "UNCLAIMED"
    CLAIMED = "CLAIMED"


class OperationType(enum.StrEnum):
    OPEN = "OPEN"
    UPDATE_FIRMWARE = "UPDATE_FIRMWARE"
    UPDATE_TIME = "UPDATE_TIME"


class PermissionType(enum.StrEnum):
    """The excerpt shows only ``SINGLE_INTERVAL`` with its fields; it is the one we create."""

    SINGLE_INTERVAL = "SINGLE_INTERVAL"


class SortDirection(enum.StrEnum):
    ASC = "ASC"
    DESC = "DESC"


class InvitationDelivery(enum.StrEnum):
    """How the platform delivers an operating-device invitation. The document names ``NONE``
    and SMS with a ``phoneNumber``; e-mail delivery has no documented field, so it is absent."""

    NONE = "NONE"
    SMS = "SMS"


class InvitationFormat(enum.StrEnum):
    INVITATION_LINK = "INVITATION_LINK"
    INVITATION_CODE = "INVITATION_CODE"


class OfflineKeyDelivery(enum.StrEnum):
    NONE = "NONE"
    SMS_WITHOUT_APP_LINK = "SMS_WITHOUT_APP_LINK"
    SMS_WITH_APP_LINK = "SMS_WITH_APP_LINK"

    @property
    def by_sms(self) -> bool:
        return self is not OfflineKeyDelivery.NONE


class RemoteCommandAction(enum.StrEnum):
    OPEN = "OPEN"


class ActivationStatus(enum.StrEnum):
    """Kept as ``str`` on the models: the document spells the active state both ``ACTIVE``
    (prose) and ``ACTIVATED`` (examples)."""

    PENDING_ACTIVATION = "PENDING_ACTIVATION"
    ACTIVATED = "ACTIVATED"


# --- durations (ISO 8601, the subset without years and months) -------------------------------

_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)


def parse_duration(text: str) -> dt.timedelta:
    """``P8D``, ``PT24H``, ``P1DT12H``... Years and months have no fixed length: refused."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"not an ISO 8601 duration of weeks/days/hours/minutes/seconds: {text!r}")
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    return dt.timedelta(**parts)


def format_duration(value: dt.timedelta) -> str:
    """The shortest ISO 8601 form: ``P8D``, ``PT24H``, ``P1DT12H``, ``PT0.5S``."""
    if value <= dt.timedelta(0):
        raise ValueError("a duration here must be positive")
    days, rest = value.days, value - dt.timedelta(days=value.days)
    seconds_total = rest.total_seconds()
    hours, seconds_total = divmod(seconds_total, 3600)
    minutes, seconds = divmod(seconds_total, 60)
    text = f"P{days}D" if days else "P"
    clock = "".join(
        f"{amount:g}{unit}"
        for amount, unit in ((hours, "H"), (minutes, "M"), (seconds, "S"))
        if amount
    )
    return f"{text}T{clock}" if clock else text


def _duration_in(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(_duration_in),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


def utc_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


Instant = Annotated[dt.datetime, PlainSerializer(utc_text, return_type=str, when_used="json")]
"""A date-time sent as ISO 8601 in UTC with ``Z``, as the document's examples are written."""


def _b64(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64") from None
    return value


B64Bytes = Annotated[bytes, BeforeValidator(_b64)]
B64Secret = Annotated[SecretBytes, BeforeValidator(_b64)]


# --- shapes ---------------------------------------------------------------------------------


class _Answer(BaseModel):
    # defer_build: a model's validator is built when it first validates, not at import (an
    # unlock uses few of these models; building them all cost ~40 ms per process).
    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        defer_build=True,
    )


class _Request(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        defer_build=True,
    )

    def body(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


ItemT = TypeVar("ItemT")


class Page(_Answer, Generic[ItemT]):
    next_page_token: str | None = None
    items: list[ItemT] = Field(default_factory=list)


class Problem(_Answer):
    """RFC 7807 ``application/problem+json``: what every error answer carries."""

    type: str = "about:blank"
    title: str | None = None
    status: int | None = None
    detail: str | None = None


class Token(_Answer):
    token: SecretStr


class User(_Answer):
    id: str
    role: Role


class CreatedUser(User):
    access_key: SecretStr
    """Shown once, at creation: the user's API credential."""


class OperatingDeviceInvitation(_Answer):
    id: str
    expiration_datetime: dt.datetime
    invitation_code: SecretStr | None = None
    """With ``NONE`` delivery the integrator delivers the code itself; it activates a device."""


class OperatingDevice(_Answer):
    id: str
    user_id: str


class Certificate(_Answer):
    eligible_for_re_keying: bool = Field(alias="eligibleForReKeying")
    expiration_datetime: dt.datetime
    revoked: bool = False


class LockingDevice(_Answer):
    id: str
    name: str
    claiming_status: ClaimingStatus
    serial_number: str | None = None
    operational_certificate: Certificate | None = None
    manufacturing_certificate: Certificate | None = None
    hardware_model: str | None = None
    hardware_version: str | None = None
    firmware_version: str | None = None


class AuditLogClient(_Answer):
    """Who operated the lock: an operating device (with its user) or a gateway device."""

    type: str
    operating_device_id: str | None = None
    user_id: str | None = None
    gateway_device_id: str | None = None


class LockingDeviceSystemLogEntry(_Answer):
    id: str
    locking_device_id: str
    event_name: str
    occurrence_datetime: dt.datetime
    sequence_number: int


class LockingDeviceAuditLogEntry(LockingDeviceSystemLogEntry):
    client: AuditLogClient | None = None
    granted: bool


class Permission(_Answer):
    id: str
    permission_type: PermissionType
    user_id: str
    locking_device_id: str
    operation_type: OperationType
    operating_key_validity_duration: Duration = KeylessLimits.OPERATING_KEY_VALIDITY_DEFAULT
    start: dt.datetime
    end: dt.datetime


class OfflineKeyValue(_Answer):
    id: str
    value: SecretStr
    """The raw key value: with it, the operating device opens the lock. Never printed."""


class IssuedOfflineKey(_Answer):
    primary_key: OfflineKeyValue
    alternative_key: OfflineKeyValue | None = None
    """Issued while the platform does not know which certificate the lock uses (re-keying):
    hand both to the operating device."""
    start_datetime: dt.datetime
    end_datetime: dt.datetime


class OfflineKeyMetadata(_Answer):
    """An issued offline key as listed: no value, by design of the API."""

    id: str
    issuer_user_id: str | None = None
    operating_device_id: str
    locking_device_id: str
    start_datetime: dt.datetime
    end_datetime: dt.datetime
    issuance_datetime: dt.datetime | None = None
    delivery_mechanism: str | None = None
    """Free text: the document's example says ``SMS``, which the issue request does not offer."""


class GatewayDevice(_Answer):
    id: str
    serial_number: str | None = None
    activation_status: str
    creation_datetime: dt.datetime | None = None
    activation_datetime: dt.datetime | None = None
    hardware_model: str | None = None
    hardware_version: str | None = None
    firmware_version: str | None = None


class GatewaySystemLogEntry(_Answer):
    """Event-specific fields (bootReason, door states...) vary by ``event_name``: ignored."""

    sequence_number: int
    occurred_at: dt.datetime = Field(alias="datetime")
    event_name: str


class GatewayAuditLogEntry(_Answer):
    sequence_number: int
    occurred_at: dt.datetime = Field(alias="datetime")
    conversation_name: str
    locking_device_id: str
    remote_command_id: str | None = None


class GatewayAssociation(_Answer):
    id: str
    gateway_device_id: str
    locking_device_id: str
    creation_datetime: dt.datetime | None = None


class RemoteCommand(_Answer):
    id: str
    gateway_device_id: str
    locking_device_id: str
    action: str
    validity_start_datetime: dt.datetime
    validity_end_datetime: dt.datetime
    issuer_user_id: str | None = None
    issuance_datetime: dt.datetime | None = None
    acknowledgement_datetime: dt.datetime | None = None
    canceler_user_id: str | None = None
    cancellation_datetime: dt.datetime | None = None


class CreatedId(_Answer):
    id: str


# --- requests -------------------------------------------------------------------------------


class CreateUserRequest(_Request):
    role: Role


class InvitationRequest(_Request):
    user_id: str
    validity_duration: Duration | None = None
    delivery_mechanism: InvitationDelivery
    phone_number: str | None = None
    format: InvitationFormat | None = None


class CreateLockingDeviceRequest(_Request):
    name: str


class PermissionRequest(_Request):
    permission_type: PermissionType = PermissionType.SINGLE_INTERVAL
    user_id: str
    locking_device_id: str
    operation_type: OperationType
    operating_key_validity_duration: Duration
    start: Instant
    end: Instant


class OfflineKeyRequest(_Request):
    operating_device_id: str
    locking_device_id: str
    start_datetime: Instant
    end_datetime: Instant
    app_link_base_url: str | None = None
    delivery_mechanism: OfflineKeyDelivery
    phone_number: str | None = None


class ClaimGatewayRequest(_Request):
    claiming_code: str


class AssociationRequest(_Request):
    gateway_device_id: str
    locking_device_id: str


class RemoteCommandRequest(_Request):
    gateway_device_id: str
    locking_device_id: str
    action: RemoteCommandAction


# --- the /mobile stand-in (not the vendor's API) -------------------------------------------


class MobileActivation(_Answer):
    operating_device_id: str
    access_key: SecretStr


class MobileOperatingKey(_Answer):
    locking_device_id: str
    key_id: str
    grant: B64Bytes
    """The platform-signed grant (protocol.keyless encoding)."""
    not_after: dt.datetime
    certificate: B64Bytes
    """DER of the lock's current operational certificate."""


class MobileOfflineKeyMaterial(_Answer):
    grant: B64Bytes
    private_key: B64Secret
    """PKCS#8 DER of the key pair the grant is bound to: whoever holds it opens the lock."""


class MobileOfflineKey(_Answer):
    offline_key_id: str
    locking_device_id: str
    start: dt.datetime
    end: dt.datetime
    primary: MobileOfflineKeyMaterial
    alternative: MobileOfflineKeyMaterial | None = None


class MobileRevocations(_Answer):
    version: int
    signed_list: B64Bytes = Field(alias="list")


class MobileUpload(_Answer):
    accepted: int
    duplicates: int


class MobileCertificate(_Answer):
    certificate: B64Bytes


class MobileTimeStatement(_Answer):
    statement: B64Bytes
    """The platform's signed time, bound to the lock nonce it was asked for."""


class MobileItems(_Answer, Generic[ItemT]):
    items: list[ItemT] = Field(default_factory=list)


# --- client-side rules ----------------------------------------------------------------------
# Each raises UsageError naming the rule, before anything is sent.

_E164 = re.compile(rf"\+[1-9]\d{{1,{KeylessLimits.E164_MAX_DIGITS - 1}}}")


_EnumT = TypeVar("_EnumT", bound=enum.StrEnum)


def check_choice(kind: type[_EnumT], value: str, what: str) -> _EnumT:
    """One of the vendor's enumerated values (the enum itself, or its text)."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise UsageError(f"{what} must be one of {allowed} (got {value!r})") from None


def check_page_limit(limit: int) -> int:
    if not KeylessLimits.PAGE_LIMIT_MIN <= limit <= KeylessLimits.PAGE_LIMIT_MAX:
        raise UsageError(
            f"list: limit must be between {KeylessLimits.PAGE_LIMIT_MIN} and "
            f"{KeylessLimits.PAGE_LIMIT_MAX} items per page (got {limit})"
        )
    return limit


def check_id(value: str, what: str) -> str:
    """Identifiers go into the URL path: only a UUID may, nothing that could change the path."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise UsageError(f"{what}: the identifier must be a UUID (got {value!r})") from None


def check_aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise UsageError(f"{what} must carry a time zone (e.g. UTC), not a naive date-time")
    return value


def check_locking_device_name(name: str) -> str:
    if (
        not KeylessLimits.LOCKING_DEVICE_NAME_MIN
        <= len(name)
        <= KeylessLimits.LOCKING_DEVICE_NAME_MAX
    ):
        raise UsageError(
            f"locking device: name must be {KeylessLimits.LOCKING_DEVICE_NAME_MIN} to "
            f"{KeylessLimits.LOCKING_DEVICE_NAME_MAX} characters (got {len(name)})"
        )
    return name


def check_phone_number(phone_number: str | None, what: str, *, required: bool) -> None:
    if phone_number is None:
        if required:
            raise UsageError(f"{what}: SMS delivery needs a phone number")
        return
    if not _E164.fullmatch(phone_number):
        raise UsageError(
            f"{what}: the phone number must be in E.164 format (+ and up to "
            f"{KeylessLimits.E164_MAX_DIGITS} digits, e.g. +358501234567)"
        )


def check_invitation_validity(validity: dt.timedelta | None) -> None:
    if validity is None:
        return
    if not dt.timedelta(0) < validity <= KeylessLimits.INVITATION_VALIDITY_MAX:
        raise UsageError(
            "invitation: validity must be more than 0 seconds and at most "
            f"{KeylessLimits.INVITATION_VALIDITY_MAX.days} days"
        )


def check_permission(start: dt.datetime, end: dt.datetime, validity: dt.timedelta) -> None:
    check_aware(start, "permission: start")
    check_aware(end, "permission: end")
    if end <= start:
        raise UsageError("permission: end must be after start")
    low, high = KeylessLimits.OPERATING_KEY_VALIDITY_MIN, KeylessLimits.OPERATING_KEY_VALIDITY_MAX
    if not low <= validity <= high:
        raise UsageError(
            f"permission: operating key validity must be between {low.days} and {high.days} "
            f"days (got {format_duration(validity) if validity > dt.timedelta(0) else validity})"
        )


def check_offline_key(
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    delivery: OfflineKeyDelivery,
    phone_number: str | None,
    app_link_base_url: str | None,
) -> None:
    check_aware(start, "offline key: start")
    check_aware(end, "offline key: end")
    if end <= start:
        raise UsageError("offline key: end must be after start")
    if start > now + KeylessLimits.OFFLINE_KEY_MAX_START_AHEAD:
        raise UsageError(
            "offline key: start must be at most "
            f"{KeylessLimits.OFFLINE_KEY_MAX_START_AHEAD.days} days from now"
        )
    if end - start > KeylessLimits.OFFLINE_KEY_MAX_DURATION:
        hours = KeylessLimits.OFFLINE_KEY_MAX_DURATION // dt.timedelta(hours=1)
        raise UsageError(f"offline key: end must be at most {hours} h after start")
    check_phone_number(phone_number, "offline key", required=delivery.by_sms)
    if app_link_base_url is not None:
        if len(app_link_base_url) > KeylessLimits.APP_LINK_BASE_URL_MAX:
            raise UsageError(
                "offline key: appLinkBaseUrl must be at most "
                f"{KeylessLimits.APP_LINK_BASE_URL_MAX} characters (got {len(app_link_base_url)})"
            )
        if not re.fullmatch(r"https?://[^\s/?#]+[^\s?#]*", app_link_base_url):
            raise UsageError("offline key: appLinkBaseUrl must be an http(s) URL without query")


def check_sequence_number(value: int | None) -> None:
    if value is not None and value < KeylessLimits.SEQUENCE_NUMBER_MIN:
        raise UsageError(
            "log: sequence-number-greater-than must be at least "
            f"{KeylessLimits.SEQUENCE_NUMBER_MIN} (got {value})"
        )


def check_claiming_code(code: str) -> str:
    if not code.strip():
        raise UsageError("gateway: the claiming code (printed on the gateway's label) is empty")
    return code.strip()


def check_association_room(existing: int) -> None:
    if existing >= KeylessLimits.ASSOCIATIONS_PER_GATEWAY_MAX:
        raise UsageError(
            "gateway association: a gateway may be associated with at most "
            f"{KeylessLimits.ASSOCIATIONS_PER_GATEWAY_MAX} locking devices "
            f"(it has {existing}); delete one first"
        )
