"""A simulated ASSA ABLOY Keyless platform: a Starlette app with its own reading of the vendor doc.

Served over real HTTP on 127.0.0.1 (uvicorn) for end-to-end runs, or through
``httpx.ASGITransport(app=keyless_app(state))`` in unit tests. It does not use blelock's client
models: it reads requests the way ``shared/vendor-docs/keyless-administration-api-v2.txt``
documents them, so a client that drifts from the document fails here.

Administration API v2 (public; the app's ``/`` is the API's ``/administration`` root)
-------------------------------------------------------------------------------------

* Every request carries ``X-Api-Key`` (wrong or missing → 403) and ``Accept:
  application/vnd.assaabloy.keyless.administration-2+json`` (anything else, ``*/*`` included,
  → 406: the document says the media type must be requested *explicitly*). Answers are in that
  media type; errors are ``application/problem+json`` with ``type``, ``title``, ``status`` and a
  ``detail`` that names the broken rule.
* ``POST /login`` trades ``userId`` + ``accessKey`` for a token valid one hour; every other route
  wants ``Authorization: Bearer <token>`` (missing, unknown or expired → 401) of a user whose role
  is ``ADMIN`` (a ``USER`` → 403).
* Lists page with ``limit`` (1..100, default 50; outside → 400) and ``next-page-token``: a token
  names the last item handed out, so paging survives creations and deletions in between, and it
  only works for the list (and filters) that issued it. ``nextPageToken`` is left out on the
  last page.
* Path identifiers must be UUIDs (else 400); unknown ones → 404, as do unknown identifiers
  named in a body (the vendor's mock answers 404 there too).
* Paths are singular nouns (``/user``, ``/locking-device``, ``/permission``...), as the vendor's
  ``curl`` example and the public mock spell them; paths the excerpt does not show are ours:
  ``/locking-device-system-log`` and ``/locking-device-audit-log`` (query
  ``locking-device-id``), ``/gateway-device-system-log`` / ``-audit-log`` (query
  ``gateway-device-id``), ``DELETE /operating-device-invitation/{id}`` (revoke),
  ``POST /remote-command/{id}/cancel`` and ``POST /testing/locking-device/{id}/re-key``.
* Status codes the excerpt leaves open are ours: creations 201, deletions/updates/revocations 204,
  conflicts with the resource's state (accepted invitation, full gateway, unclaimed lock...) 409.
* Invitations with ``deliveryMechanism: NONE`` answer the ``invitationCode`` (the document says
  integrators take the code from the ``NONE`` mechanism); SMS ones land in :attr:`sent_sms`.

Operating-device side: a stand-in, NOT the vendor's Mobile API (which is not public)
-----------------------------------------------------------------------------------

Plain ``application/json``; no ``X-Api-Key``; errors are problem+json. Grants, certificates,
revocation lists and audit entries are encoded by :mod:`blelock.protocol.keyless`.

* ``POST /mobile/activation`` ``{invitationCode, publicKey}`` (base64 65-byte P-256 point) →
  201 ``{operatingDeviceId, accessKey}``; the invitation must be pending and unexpired and its
  user must not have an operating device yet (one per user, as the document says).
* ``POST /mobile/login`` ``{operatingDeviceId, accessKey}`` → ``{token}``, valid one hour.
* ``GET /mobile/ca`` → ``{certificate}``: the platform CA (base64 DER) the companion pins.
* ``GET /mobile/operating-keys`` → one signed operating key per permission of the device's user
  that is valid now, on a claimed lock: valid until ``min(permission end, now +
  operatingKeyValidityDuration)``, bound to the lock's current operational key, with that
  certificate.
* ``GET /mobile/offline-keys`` → the values of the offline keys issued to this device (the
  Administration API lists their metadata only): a grant and its PKCS#8 private key each.
* ``GET /mobile/revocations`` → ``{version, list}``: the newest signed revocation list. Deleting a
  permission, operating device or user revokes the operating keys handed out for it (our choice:
  the vendor says revoking a permission does not touch downloaded keys; the stand-in lock can
  do better, so it does).
* ``POST /mobile/locking-device/{id}/audit-log`` and ``.../system-log`` ``{entries: [base64]}``
  → ``{accepted, duplicates}``: each entry is a lock-signed entry in the format of
  :func:`blelock.protocol.keyless.sign_audit_entry` (the protocol has no separate system-entry
  format yet, so the system log takes the same) and must verify against one of the lock's
  certificates (400 otherwise); idempotent by (lock, sequence). An entry signed by the key of
  the certificate a pending re-keying issued, or a successful ``INSTALL_CERTIFICATE``, proves
  the lock installed it: the re-keying completes.
* ``POST /mobile/locking-device/{id}/csr`` ``{csr}`` → 202: the platform issues the lock's next
  operational certificate (the device's user needs a permission on that lock: the document
  keeps certificate updates to the permission framework); ``GET .../certificate`` → it, or 404
  when none is pending.

While a re-keying is pending, an offline key comes as a primary bound to the new lock key and an
alternative bound to the current one, as the document's ``alternativeKey`` describes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import datetime as dt
import enum
import hmac
import json
import random
import re
import secrets
import struct
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from blelock.errors import ProtocolError
from blelock.protocol import keyless as kp

__all__ = [
    "KeylessPlatformState",
    "PlatformFaults",
    "keyless_app",
    "register_lock",
]

# --- the platform's limits: the simulator's own copy of the document's numbers ---------------

MEDIA_TYPE: Final = "application/vnd.assaabloy.keyless.administration-2+json"
PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
TOKEN_LIFETIME: Final = dt.timedelta(hours=1)
PAGE_LIMIT_MIN: Final = 1
PAGE_LIMIT_MAX: Final = 100
PAGE_LIMIT_DEFAULT: Final = 50
LOCKING_DEVICE_NAME_MIN: Final = 1
LOCKING_DEVICE_NAME_MAX: Final = 255
INVITATION_VALIDITY_DEFAULT: Final = dt.timedelta(hours=24)
INVITATION_VALIDITY_MAX: Final = dt.timedelta(days=365)
OPERATING_KEY_VALIDITY_MIN: Final = dt.timedelta(days=1)
OPERATING_KEY_VALIDITY_MAX: Final = dt.timedelta(days=31)
OPERATING_KEY_VALIDITY_DEFAULT: Final = dt.timedelta(days=8)
PERMISSION_RETENTION: Final = dt.timedelta(days=14)
OFFLINE_KEY_MAX_START_AHEAD: Final = dt.timedelta(days=30)
OFFLINE_KEY_MAX_DURATION: Final = dt.timedelta(hours=24)
APP_LINK_BASE_URL_MAX: Final = 42
APP_LINK_BASE_URL_DEFAULT: Final = "https://keyless.assaabloy.com"
ASSOCIATIONS_PER_GATEWAY_MAX: Final = 5
"""The documented maximum (a note on the same page says the platform "currently allows 6")."""
REMOTE_COMMAND_VALIDITY: Final = dt.timedelta(minutes=5)
E164_MAX_DIGITS: Final = 15
# Ours, not the vendor's (the stand-in side):
MOBILE_TOKEN_LIFETIME: Final = dt.timedelta(hours=1)
LOCK_CERTIFICATE_LIFETIME: Final = dt.timedelta(days=365)
RE_KEYING_WINDOW: Final = dt.timedelta(days=30)
"""A lock certificate expiring within this is eligible for re-keying."""
MANUFACTURING_CERTIFICATE_LIFETIME: Final = dt.timedelta(days=3650)
PLATFORM_CA_LIFETIME: Final = dt.timedelta(days=3650)
RETRY_AFTER_DEFAULT_S: Final = 2

Clock = Callable[[], dt.datetime]


def _system_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _whole_seconds(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def _iso(moment: dt.datetime) -> str:
    text = moment.astimezone(dt.UTC).isoformat()
    return text.replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- the world the platform knows -----------------------------------------------------------


class Role(enum.StrEnum):
    USER = "USER"
    ADMIN = "ADMIN"


class InvitationStatus(enum.StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REVOKED = "REVOKED"


@dataclass
class User:
    id: str
    role: Role
    access_key: str = field(repr=False)
    seq: int = 0


@dataclass
class Invitation:
    id: str
    user_id: str
    code: str = field(repr=False)
    expires_at: dt.datetime = field(default_factory=_system_now)
    delivery_mechanism: str = "NONE"
    phone_number: str | None = None
    format: str = "INVITATION_LINK"
    status: InvitationStatus = InvitationStatus.PENDING


@dataclass
class OperatingDevice:
    id: str
    user_id: str
    public_key: bytes
    """65-byte uncompressed P-256 point: operating keys are bound to it."""
    access_key: str = field(repr=False)
    invitation_id: str | None = None
    legacy: bool = False
    """Not invited through v2: the document says it can only go with its user."""
    seq: int = 0


@dataclass
class LockCertificate:
    der: bytes = field(repr=False)
    lock_key_id: bytes
    not_after: dt.datetime


@dataclass
class LockingDevice:
    id: str
    name: str
    seq: int = 0
    serial_number: str | None = None
    certificate: LockCertificate | None = None
    """The operational certificate the lock uses now (claimed locks only)."""
    pending_certificate: LockCertificate | None = None
    """Issued for a re-keying CSR, not yet known to be installed."""
    past_certificates: list[LockCertificate] = field(default_factory=list)
    re_keying_forced: bool = False
    manufacturing_expires_at: dt.datetime | None = None
    hardware_model: str = "PADLOCK"
    hardware_version: str = "1"
    firmware_version: str = "1.0.0"

    @property
    def claimed(self) -> bool:
        return self.certificate is not None

    def certificates(self) -> list[LockCertificate]:
        """Every certificate entries may be signed with, newest first."""
        chosen = [self.pending_certificate, self.certificate, *reversed(self.past_certificates)]
        return [cert for cert in chosen if cert is not None]


@dataclass
class Permission:
    id: str
    user_id: str
    locking_device_id: str
    operation_type: str
    permission_type: str
    validity: dt.timedelta
    start: dt.datetime
    end: dt.datetime
    seq: int = 0


@dataclass
class OfflineKeyValue:
    key_id: str
    grant: bytes
    private_key_der: bytes = field(repr=False)

    @property
    def value(self) -> str:
        """The "raw value" the Administration API answers: our encoding, base64 of
        ``u16 len(grant) || grant || PKCS#8 DER``."""
        return _b64(struct.pack(">H", len(self.grant)) + self.grant + self.private_key_der)


@dataclass
class OfflineKey:
    id: str
    issuer_user_id: str
    operating_device_id: str
    locking_device_id: str
    start: dt.datetime
    end: dt.datetime
    issued_at: dt.datetime
    delivery_mechanism: str
    primary: OfflineKeyValue
    alternative: OfflineKeyValue | None
    phone_number: str | None = None
    app_link_base_url: str = APP_LINK_BASE_URL_DEFAULT
    seq: int = 0


@dataclass
class GatewayDevice:
    id: str
    serial_number: str
    claiming_code: str = field(repr=False)
    created_at: dt.datetime
    activated_at: dt.datetime | None = None
    hardware_model: str = "BEAT_GW_A1"
    hardware_version: str = "1.0.0"
    firmware_version: str = "1.0.0"
    seq: int = 0


@dataclass
class Association:
    id: str
    gateway_device_id: str
    locking_device_id: str
    created_at: dt.datetime
    seq: int = 0


@dataclass
class RemoteCommand:
    id: str
    gateway_device_id: str
    locking_device_id: str
    action: str
    valid_from: dt.datetime
    valid_until: dt.datetime
    issuer_user_id: str
    issued_at: dt.datetime
    acknowledged_at: dt.datetime | None = None
    canceler_user_id: str | None = None
    canceled_at: dt.datetime | None = None
    seq: int = 0


@dataclass
class LogEntry:
    """A locking-device system or audit log entry as received from an operating device."""

    id: str
    locking_device_id: str
    event_name: str
    occurred_at: dt.datetime
    sequence_number: int
    client: dict[str, str] | None = None
    granted: bool | None = None
    """Audit entries only."""
    blob: bytes = field(default=b"", repr=False)
    """The lock-signed entry as submitted."""

    def sort_key(self) -> tuple[dt.datetime, str]:
        return (self.occurred_at, self.id)


@dataclass
class IssuedOperatingKey:
    key_id: str
    operating_device_id: str
    permission_id: str
    locking_device_id: str
    not_after: dt.datetime


@dataclass
class Session:
    kind: str
    """``"admin"`` (Administration API login) or ``"mobile"``."""
    subject_id: str
    expires_at: dt.datetime


@dataclass
class PlatformFaults:
    """Switches a test or benchmark flips; counts are "the next N requests", -1 = always."""

    rate_limit: int = 0
    retry_after_s: int = RETRY_AFTER_DEFAULT_S
    """The ``Retry-After`` (seconds) sent with an injected 429."""
    fail_with_500: int = 0
    latency_s: float = 0.0

    def draw(self) -> str | None:
        """Which fault (if any) answers this request; uses up one of its count."""
        for name in ("rate_limit", "fail_with_500"):
            left = getattr(self, name)
            if left != 0:
                setattr(self, name, left if left < 0 else left - 1)
                return name
        return None


@dataclass
class SentSms:
    phone_number: str
    text: str = field(repr=False)


@dataclass
class Submission:
    """One log entry as it arrived (duplicates included)."""

    locking_device_id: str
    log: str
    """``"audit"`` or ``"system"``."""
    sequence_number: int
    duplicate: bool


@dataclass
class KeylessPlatformState:
    """Everything the simulated platform knows. Build with :meth:`create`."""

    api_key: str
    admin_user_id: str
    admin_access_key: str = field(repr=False)
    ca_key: ec.EllipticCurvePrivateKey = field(repr=False)
    ca_certificate: x509.Certificate = field(repr=False)
    platform_key: ec.EllipticCurvePrivateKey = field(repr=False)
    """Signs grants and revocation lists: the CA key (the companion pins the CA)."""
    now: Clock = _system_now
    """Injectable: tests move it to expire tokens and keys."""
    faults: PlatformFaults = field(default_factory=PlatformFaults)
    testing_endpoints: bool = True
    """Whether ``/testing/...`` answers (it is "not available in production")."""
    rng: random.Random = field(default_factory=random.Random, repr=False)

    users: dict[str, User] = field(default_factory=dict)
    invitations: dict[str, Invitation] = field(default_factory=dict)
    operating_devices: dict[str, OperatingDevice] = field(default_factory=dict)
    locking_devices: dict[str, LockingDevice] = field(default_factory=dict)
    permissions: dict[str, Permission] = field(default_factory=dict)
    offline_keys: dict[str, OfflineKey] = field(default_factory=dict)
    gateway_hardware: dict[str, str] = field(default_factory=dict)
    """Claiming code → serial number of gateways that exist but are not claimed yet."""
    gateways: dict[str, GatewayDevice] = field(default_factory=dict)
    associations: dict[str, Association] = field(default_factory=dict)
    remote_commands: dict[str, RemoteCommand] = field(default_factory=dict)
    system_log: dict[tuple[str, int], LogEntry] = field(default_factory=dict)
    audit_log: dict[tuple[str, int], LogEntry] = field(default_factory=dict)
    gateway_system_log: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    gateway_audit_log: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    issued_operating_keys: dict[str, IssuedOperatingKey] = field(default_factory=dict)
    revoked_keys: dict[str, dt.datetime] = field(default_factory=dict)
    """Revoked key id → the end of its validity (after which the list no longer needs it)."""
    revocation_version: int = 0
    sessions: dict[str, Session] = field(default_factory=dict, repr=False)
    page_tokens: dict[str, tuple[str, Any]] = field(default_factory=dict, repr=False)
    sent_sms: list[SentSms] = field(default_factory=list)
    submissions: list[Submission] = field(default_factory=list)
    """Every log entry submitted by an operating device, duplicates included."""
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    """Requests per route name (``"GET /locking-device"``...), faulted ones included."""
    faulted: collections.Counter[str] = field(default_factory=collections.Counter)
    _seq: int = 0
    _certificate_serial: int = 1

    @classmethod
    def create(
        cls,
        *,
        api_key: str = "sim-keyless-api-key",
        now: Clock = _system_now,
        seed: int | None = None,
    ) -> KeylessPlatformState:
        """A platform with one ADMIN user (:attr:`admin_user_id` / :attr:`admin_access_key`)
        and a fresh CA. ``seed`` makes identifiers reproducible (keys stay random)."""
        rng = random.Random(seed)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        start = _whole_seconds(now()) - dt.timedelta(days=1)
        ca_certificate = kp.make_platform_ca(
            ca_key,
            name="blelock simulated Keyless platform CA",
            not_before=start,
            not_after=start + PLATFORM_CA_LIFETIME,
        )
        admin_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        state = cls(
            api_key=api_key,
            admin_user_id=admin_id,
            admin_access_key=_access_key(),
            ca_key=ca_key,
            ca_certificate=ca_certificate,
            platform_key=ca_key,
            now=now,
            rng=rng,
        )
        state.users[admin_id] = User(admin_id, Role.ADMIN, state.admin_access_key, state.next_seq())
        return state

    # -- identity and ordering

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- helpers for a world builder and tests

    def add_user(self, role: str = "USER") -> User:
        user = User(self.new_id(), Role(role), _access_key(), self.next_seq())
        self.users[user.id] = user
        return user

    def certify(self, csr_der: bytes, *, not_after: dt.datetime | None = None) -> LockCertificate:
        """An operational certificate for a lock's CSR, signed by the platform CA."""
        start = _whole_seconds(self.now()) - dt.timedelta(minutes=5)
        end = not_after if not_after is not None else start + LOCK_CERTIFICATE_LIFETIME
        self._certificate_serial += 1
        der = kp.issue_certificate(
            csr_der,
            self.ca_key,
            self.ca_certificate,
            serial=self._certificate_serial,
            not_before=start,
            not_after=_whole_seconds(end),
        )
        return _lock_certificate(der)

    def complete_re_keying(self, locking_device_id: str) -> None:
        """The lock installed its pending certificate (normally learnt from its signed logs)."""
        lock = self.locking_devices[locking_device_id]
        if lock.pending_certificate is None:
            return
        if lock.certificate is not None:
            lock.past_certificates.append(lock.certificate)
        lock.certificate, lock.pending_certificate = lock.pending_certificate, None
        lock.re_keying_forced = False

    def add_gateway_hardware(self, claiming_code: str, serial_number: str) -> None:
        """A physical gateway an administrator can claim with its printed code."""
        self.gateway_hardware[claiming_code] = serial_number

    def activate_gateway(self, gateway_device_id: str) -> None:
        """The claimed gateway powered on and activated itself."""
        self.gateways[gateway_device_id].activated_at = self.now()

    def acknowledge_remote_command(self, remote_command_id: str) -> None:
        self.remote_commands[remote_command_id].acknowledged_at = self.now()

    def revoke_keys(self, key_ids: Iterable[tuple[str, dt.datetime]]) -> None:
        """Put (key id, valid until) on the revocation list (a new version if any is new)."""
        fresh = {key_id: until for key_id, until in key_ids if key_id not in self.revoked_keys}
        if fresh:
            self.revoked_keys.update(fresh)
            self.revocation_version += 1

    def revocation_list(self) -> kp.RevocationList:
        """The current list: revoked keys that have not expired anyway."""
        now = self.now()
        alive = frozenset(key for key, until in self.revoked_keys.items() if until > now)
        return kp.RevocationList(self.revocation_version, alive)

    # -- introspection

    def audit_entries(self, locking_device_id: str) -> list[LogEntry]:
        return sorted(
            (entry for (lock, _), entry in self.audit_log.items() if lock == locking_device_id),
            key=lambda entry: entry.sequence_number,
        )

    def system_entries(self, locking_device_id: str) -> list[LogEntry]:
        return sorted(
            (entry for (lock, _), entry in self.system_log.items() if lock == locking_device_id),
            key=lambda entry: entry.sequence_number,
        )

    @property
    def duplicate_submissions(self) -> int:
        return sum(1 for submission in self.submissions if submission.duplicate)

    # -- internal bookkeeping

    def _revoke_operating_keys(self, matches: Callable[[IssuedOperatingKey], bool]) -> None:
        now = self.now()
        self.revoke_keys(
            (key.key_id, key.not_after)
            for key in self.issued_operating_keys.values()
            if matches(key) and key.not_after > now
        )

    def _delete_permission(self, permission_id: str) -> None:
        self.permissions.pop(permission_id, None)
        self._revoke_operating_keys(lambda key: key.permission_id == permission_id)

    def _delete_operating_device(self, device_id: str) -> None:
        self.operating_devices.pop(device_id, None)
        self._revoke_operating_keys(lambda key: key.operating_device_id == device_id)
        for offline_key in [
            k for k in self.offline_keys.values() if k.operating_device_id == device_id
        ]:
            self.revoke_keys((key_id, offline_key.end) for key_id in _offline_key_ids(offline_key))

    def _delete_user(self, user_id: str) -> None:
        self.users.pop(user_id, None)
        for permission in [p for p in self.permissions.values() if p.user_id == user_id]:
            self._delete_permission(permission.id)
        for device in [d for d in self.operating_devices.values() if d.user_id == user_id]:
            self._delete_operating_device(device.id)
        for invitation in [i for i in self.invitations.values() if i.user_id == user_id]:
            del self.invitations[invitation.id]

    def _delete_locking_device(self, lock_id: str) -> None:
        """ "Any entities associated with the deleted locking device will be removed"."""
        self.locking_devices.pop(lock_id, None)
        for permission in [p for p in self.permissions.values() if p.locking_device_id == lock_id]:
            self._delete_permission(permission.id)
        for offline_key in [
            k for k in self.offline_keys.values() if k.locking_device_id == lock_id
        ]:
            del self.offline_keys[offline_key.id]
        for association in [
            a for a in self.associations.values() if a.locking_device_id == lock_id
        ]:
            del self.associations[association.id]
        for command in [c for c in self.remote_commands.values() if c.locking_device_id == lock_id]:
            del self.remote_commands[command.id]
        for log in (self.system_log, self.audit_log):
            for key in [key for key in log if key[0] == lock_id]:
                del log[key]

    def _purge_expired_permissions(self) -> None:
        """ "Past permissions are automatically removed 14 days after their expiration"."""
        cutoff = self.now() - PERMISSION_RETENTION
        for permission in [p for p in self.permissions.values() if p.end < cutoff]:
            del self.permissions[permission.id]


def _access_key() -> str:
    return _b64(secrets.token_bytes(32))


def _lock_certificate(der: bytes) -> LockCertificate:
    certificate = x509.load_der_x509_certificate(der)
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ValueError("a lock certificate must carry a P-256 key")
    return LockCertificate(der, kp.key_id_of(public_key), certificate.not_valid_after_utc)


def _offline_key_ids(offline_key: OfflineKey) -> list[str]:
    values = [offline_key.primary, offline_key.alternative]
    return [value.key_id for value in values if value is not None]


def register_lock(
    state: KeylessPlatformState,
    locking_device_id: str,
    certificate_der: bytes,
    serial_number: str,
    *,
    name: str | None = None,
    hardware_model: str = "PADLOCK",
    hardware_version: str = "1",
    firmware_version: str = "1.0.0",
) -> LockingDevice:
    """A claimed locking device for a simulated lock with its operational certificate (the
    world's stand-in for claiming through the Mobile API). Claims an existing unclaimed
    placeholder with that id, or creates the device."""
    lock = state.locking_devices.get(locking_device_id)
    if lock is None:
        lock = LockingDevice(locking_device_id, name or serial_number, state.next_seq())
        state.locking_devices[locking_device_id] = lock
    elif name is not None:
        lock.name = name
    lock.serial_number = serial_number
    lock.certificate = _lock_certificate(certificate_der)
    lock.pending_certificate = None
    lock.manufacturing_expires_at = _whole_seconds(state.now()) + MANUFACTURING_CERTIFICATE_LIFETIME
    lock.hardware_model = hardware_model
    lock.hardware_version = hardware_version
    lock.firmware_version = firmware_version
    return lock


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


# --- Administration API handlers ------------------------------------------------------------


_T = TypeVar("_T")


def _find(table: dict[str, _T], identifier: str, what: str) -> _T:
    found = table.get(identifier)
    if found is None:
        raise _not_found(what, identifier)
    return found


async def login(call: Call) -> Response:
    body = _parse(LoginBody, await call.body())
    user_id = _uuid(body.user_id, "userId")
    user = call.state.users.get(user_id)
    if user is None or not hmac.compare_digest(user.access_key.encode(), body.access_key.encode()):
        raise Problem(401, "userId and accessKey do not match a user's API credentials")
    return _ok({"token": _new_session(call.state, "admin", user.id, TOKEN_LIFETIME)})


def _new_session(
    state: KeylessPlatformState, kind: str, subject: str, lifetime: dt.timedelta
) -> str:
    token = secrets.token_urlsafe(32)
    state.sessions[token] = Session(kind, subject, state.now() + lifetime)
    return token


async def list_users(call: Call) -> Response:
    return _page(call, [(user.seq, _user_json(user)) for user in call.state.users.values()])


async def create_user(call: Call) -> Response:
    body = _parse(CreateUserBody, await call.body())
    user = call.state.add_user(body.role.value)
    return _ok({**_user_json(user), "accessKey": user.access_key}, 201)


async def get_user(call: Call) -> Response:
    return _ok(_user_json(_find(call.state.users, call.path_id("user_id"), "user")))


async def delete_user(call: Call) -> Response:
    user = _find(call.state.users, call.path_id("user_id"), "user")
    call.state._delete_user(user.id)
    return _no_content()


async def invite_operating_device(call: Call) -> Response:
    body = _parse(InvitationBody, await call.body())
    user = _find(call.state.users, _uuid(body.user_id, "userId"), "user")
    validity = INVITATION_VALIDITY_DEFAULT
    if body.validity_duration is not None:
        validity = _duration(body.validity_duration, "validityDuration")
        if not dt.timedelta(0) < validity <= INVITATION_VALIDITY_MAX:
            raise Problem(
                400,
                "validityDuration must be greater than 0 seconds and less than or equal to "
                f"{INVITATION_VALIDITY_MAX.days} days (got {body.validity_duration})",
            )
    phone = None
    if body.delivery_mechanism is InvitationDelivery.SMS:
        phone = _check_phone(body.phone_number, "SMS")
    invitation = Invitation(
        id=call.state.new_id(),
        user_id=user.id,
        code=_b64(secrets.token_bytes(18)),
        expires_at=_whole_seconds(call.now + validity),
        delivery_mechanism=body.delivery_mechanism.value,
        phone_number=phone,
        format=body.format.value,
    )
    call.state.invitations[invitation.id] = invitation
    answer = {"id": invitation.id, "expirationDatetime": _iso(invitation.expires_at)}
    if phone is not None:
        text = (
            f"https://keyless.assaabloy.com/?invitation={invitation.code}"
            if body.format is InvitationFormat.INVITATION_LINK
            else invitation.code
        )
        call.state.sent_sms.append(SentSms(phone, text))
    else:
        answer["invitationCode"] = invitation.code
    return _ok(answer, 201)


async def revoke_invitation(call: Call) -> Response:
    invitation = _find(call.state.invitations, call.path_id("invitation_id"), "invitation")
    if invitation.status is InvitationStatus.ACCEPTED:
        raise Problem(409, "accepted invitations can't be revoked")
    invitation.status = InvitationStatus.REVOKED
    return _no_content()


async def list_operating_devices(call: Call) -> Response:
    wanted = call.query("user-id")
    if wanted is not None:
        wanted = _uuid(wanted, "user-id")
    return _page(
        call,
        [
            (device.seq, {"id": device.id, "userId": device.user_id})
            for device in call.state.operating_devices.values()
            if wanted is None or device.user_id == wanted
        ],
    )


async def delete_operating_device(call: Call) -> Response:
    device = _find(
        call.state.operating_devices, call.path_id("operating_device_id"), "operating device"
    )
    if device.legacy:
        raise Problem(
            409,
            "a legacy operating device (not invited through API v2) can't be deleted on its "
            "own: delete its user instead",
        )
    call.state._delete_operating_device(device.id)
    return _no_content()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not (
        LOCKING_DEVICE_NAME_MIN <= len(name) <= LOCKING_DEVICE_NAME_MAX
    ):
        raise Problem(
            400,
            f"name must be a string of {LOCKING_DEVICE_NAME_MIN} to {LOCKING_DEVICE_NAME_MAX} "
            "characters",
        )
    return name


async def list_locking_devices(call: Call) -> Response:
    status = call.query("claiming-status")
    if status is not None and status not in ("UNCLAIMED", "CLAIMED"):
        raise Problem(400, f"claiming-status must be UNCLAIMED or CLAIMED (got {status!r})")
    serial = call.query("serial-number")
    chosen = [
        lock
        for lock in call.state.locking_devices.values()
        if (status is None or (lock.claimed == (status == "CLAIMED")))
        and (serial is None or lock.serial_number == serial)
    ]
    return _page(call, [(lock.seq, _lock_json(lock, call.now)) for lock in chosen])


async def create_locking_device(call: Call) -> Response:
    body = _parse(CreateLockingDeviceBody, await call.body())
    lock = LockingDevice(call.state.new_id(), _check_name(body.name), call.state.next_seq())
    call.state.locking_devices[lock.id] = lock
    return _ok(_lock_json(lock, call.now), 201)


async def get_locking_device(call: Call) -> Response:
    lock = _find(call.state.locking_devices, call.path_id("locking_device_id"), "locking device")
    return _ok(_lock_json(lock, call.now))


async def patch_locking_device(call: Call) -> Response:
    lock = _find(call.state.locking_devices, call.path_id("locking_device_id"), "locking device")
    operations = await call.body()
    if not isinstance(operations, list) or not operations:
        raise Problem(400, "the body must be a JSON Patch: a non-empty array of operations")
    name = lock.name
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict) or not {"op", "path", "value"} <= operation.keys():
            raise Problem(400, f"operation {index}: op, path and value are required")
        op, path = operation["op"], operation["path"]
        if op not in ("add", "replace", "test"):
            raise Problem(400, f"operation {index}: op must be add, replace or test (got {op!r})")
        if path != "/name" or op == "add":
            raise Problem(
                400,
                f"operation {index}: only the field name can be changed, with operation "
                "replace (or checked with test)",
            )
        if op == "test":
            if operation["value"] != name:
                raise Problem(
                    409, f"operation {index}: test failed: /name is not {operation['value']!r}"
                )
            continue
        name = _check_name(operation["value"])
    lock.name = name
    return _no_content()


async def delete_locking_device(call: Call) -> Response:
    lock = _find(call.state.locking_devices, call.path_id("locking_device_id"), "locking device")
    call.state._delete_locking_device(lock.id)
    return _no_content()


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


def _locking_device_logs(audit: bool) -> Handler:
    async def handle(call: Call) -> Response:
        lock_id = call.query("locking-device-id")
        if lock_id is not None:
            lock_id = _find(
                call.state.locking_devices, _uuid(lock_id, "locking-device-id"), "locking device"
            ).id
        sequence, after, descending = _log_filters(call)
        log = call.state.audit_log if audit else call.state.system_log
        chosen = [
            entry
            for entry in log.values()
            if (lock_id is None or entry.locking_device_id == lock_id)
            and (sequence is None or entry.sequence_number > sequence)
            and (after is None or entry.occurred_at > after)
        ]
        return _page(
            call,
            [(entry.sort_key(), _log_json(entry, audit=audit)) for entry in chosen],
            descending=descending,
        )

    return handle


def _gateway_logs(audit: bool) -> Handler:
    async def handle(call: Call) -> Response:
        gateway_text = call.query("gateway-device-id")
        if gateway_text is None:
            raise Problem(400, "gateway-device-id is required")
        gateway = _find(
            call.state.gateways, _uuid(gateway_text, "gateway-device-id"), "gateway device"
        )
        sequence, _, descending = _log_filters(call)
        log = call.state.gateway_audit_log if audit else call.state.gateway_system_log
        chosen = [
            entry
            for entry in log.get(gateway.id, [])
            if sequence is None or int(entry["sequenceNumber"]) > sequence
        ]
        return _page(
            call,
            [((entry["datetime"], int(entry["sequenceNumber"])), entry) for entry in chosen],
            descending=descending,
        )

    return handle


def _permission_from(call: Call, body: PermissionBody) -> Permission:
    user = _find(call.state.users, _uuid(body.user_id, "userId"), "user")
    lock = _find(
        call.state.locking_devices,
        _uuid(body.locking_device_id, "lockingDeviceId"),
        "locking device",
    )
    if body.permission_type is not PermissionType.SINGLE_INTERVAL:
        raise Problem(
            400,
            f"permissionType {body.permission_type.value}: the simulator knows the fields of "
            "SINGLE_INTERVAL only (start, end)",
        )
    validity = OPERATING_KEY_VALIDITY_DEFAULT
    if body.operating_key_validity_duration is not None:
        validity = _duration(body.operating_key_validity_duration, "operatingKeyValidityDuration")
        if not OPERATING_KEY_VALIDITY_MIN <= validity <= OPERATING_KEY_VALIDITY_MAX:
            raise Problem(
                400,
                "operatingKeyValidityDuration must be greater than or equal to 1 day and less "
                f"than or equal to 31 days (got {body.operating_key_validity_duration})",
            )
    if body.end <= body.start:
        raise Problem(400, "end must be after start")
    return Permission(
        id="",
        user_id=user.id,
        locking_device_id=lock.id,
        operation_type=body.operation_type.value,
        permission_type=body.permission_type.value,
        validity=validity,
        start=body.start.astimezone(dt.UTC),
        end=body.end.astimezone(dt.UTC),
    )


async def create_permission(call: Call) -> Response:
    permission = _permission_from(call, _parse(PermissionBody, await call.body()))
    permission.id = call.state.new_id()
    permission.seq = call.state.next_seq()
    call.state.permissions[permission.id] = permission
    return _ok({"id": permission.id}, 201)


async def list_permissions(call: Call) -> Response:
    call.state._purge_expired_permissions()
    return _page(call, [(p.seq, _permission_json(p)) for p in call.state.permissions.values()])


async def get_permission(call: Call) -> Response:
    call.state._purge_expired_permissions()
    permission = _find(call.state.permissions, call.path_id("permission_id"), "permission")
    return _ok(_permission_json(permission))


async def update_permission(call: Call) -> Response:
    old = _find(call.state.permissions, call.path_id("permission_id"), "permission")
    new = _permission_from(call, _parse(PermissionBody, await call.body()))
    new.id, new.seq = old.id, old.seq
    # The keys handed out under the old terms no longer hold.
    call.state._delete_permission(old.id)
    call.state.permissions[new.id] = new
    return _no_content()


async def delete_permission(call: Call) -> Response:
    permission = _find(call.state.permissions, call.path_id("permission_id"), "permission")
    call.state._delete_permission(permission.id)
    return _no_content()


def _offline_value(
    state: KeylessPlatformState,
    lock: LockingDevice,
    cert: LockCertificate,
    start: dt.datetime,
    end: dt.datetime,
) -> OfflineKeyValue:
    holder = ec.generate_private_key(ec.SECP256R1())
    key_id = state.new_id()
    grant = kp.Grant(
        key_id=key_id,
        kind=kp.GrantKind.OFFLINE,
        operating_device_id=None,
        locking_device_id=lock.id,
        operations=frozenset({kp.Operation.OPEN}),
        not_before=start,
        not_after=end,
        lock_key_id=cert.lock_key_id,
        holder_public_key=kp.public_key_bytes(holder.public_key()),
    )
    private_der = holder.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return OfflineKeyValue(key_id, kp.sign_grant(grant, state.platform_key), private_der)


async def issue_offline_key(call: Call) -> Response:
    body = _parse(OfflineKeyBody, await call.body())
    state = call.state
    device = _find(
        state.operating_devices,
        _uuid(body.operating_device_id, "operatingDeviceId"),
        "operating device",
    )
    lock = _find(
        state.locking_devices, _uuid(body.locking_device_id, "lockingDeviceId"), "locking device"
    )
    start = _whole_seconds(body.start_datetime)
    end = _whole_seconds(body.end_datetime)
    if start > call.now + OFFLINE_KEY_MAX_START_AHEAD:
        raise Problem(400, "startDatetime cannot be more than 30 days in the future")
    if end <= start:
        raise Problem(400, "endDatetime must be after startDatetime")
    if end - start > OFFLINE_KEY_MAX_DURATION:
        raise Problem(400, "endDatetime cannot be more than 24 hours after startDatetime")
    if end <= call.now:
        raise Problem(400, "endDatetime is in the past: the key would be expired")
    base_url = body.app_link_base_url
    if base_url is not None:
        if len(base_url) > APP_LINK_BASE_URL_MAX:
            raise Problem(
                400,
                f"appLinkBaseUrl must be at most {APP_LINK_BASE_URL_MAX} characters "
                f"(got {len(base_url)})",
            )
        if not re.fullmatch(r"https?://[^\s/?#]+[^\s?#]*", base_url):
            raise Problem(400, f"appLinkBaseUrl must be a valid URL (got {base_url!r})")
    phone = None
    if body.delivery_mechanism is not OfflineKeyDelivery.NONE:
        phone = _check_phone(body.phone_number, body.delivery_mechanism.value)
    if lock.certificate is None:
        raise Problem(409, "the locking device is not claimed yet: no lock key to bind the key to")
    if lock.pending_certificate is not None:
        primary = _offline_value(state, lock, lock.pending_certificate, start, end)
        alternative: OfflineKeyValue | None = _offline_value(
            state, lock, lock.certificate, start, end
        )
    else:
        primary, alternative = _offline_value(state, lock, lock.certificate, start, end), None
    offline_key = OfflineKey(
        id=primary.key_id,
        issuer_user_id=call.caller_id,
        operating_device_id=device.id,
        locking_device_id=lock.id,
        start=start,
        end=end,
        issued_at=call.now,
        delivery_mechanism=body.delivery_mechanism.value,
        primary=primary,
        alternative=alternative,
        phone_number=phone,
        app_link_base_url=base_url or APP_LINK_BASE_URL_DEFAULT,
        seq=state.next_seq(),
    )
    state.offline_keys[offline_key.id] = offline_key
    values = [primary] + ([alternative] if alternative is not None else [])
    if phone is not None:
        if body.delivery_mechanism is OfflineKeyDelivery.SMS_WITH_APP_LINK:
            text = " ".join(f"{offline_key.app_link_base_url}?eo={v.value}" for v in values)
        else:
            text = " ".join(v.value for v in values)
        state.sent_sms.append(SentSms(phone, text))
    answer: dict[str, Any] = {"primaryKey": {"id": primary.key_id, "value": primary.value}}
    if alternative is not None:
        answer["alternativeKey"] = {"id": alternative.key_id, "value": alternative.value}
    answer["startDatetime"] = _iso(start)
    answer["endDatetime"] = _iso(end)
    return _ok(answer, 201)


async def list_offline_keys(call: Call) -> Response:
    return _page(
        call, [(key.seq, _offline_key_json(key)) for key in call.state.offline_keys.values()]
    )


async def claim_gateway(call: Call) -> Response:
    body = _parse(ClaimGatewayBody, await call.body())
    state = call.state
    if any(gateway.claiming_code == body.claiming_code for gateway in state.gateways.values()):
        raise Problem(409, "this gateway device is already claimed")
    serial = state.gateway_hardware.get(body.claiming_code)
    if serial is None:
        raise Problem(404, "no gateway device has this claiming code")
    gateway = GatewayDevice(
        id=state.new_id(),
        serial_number=serial,
        claiming_code=body.claiming_code,
        created_at=call.now,
        seq=state.next_seq(),
    )
    state.gateways[gateway.id] = gateway
    return _ok(_gateway_json(gateway), 201)


async def list_gateways(call: Call) -> Response:
    return _page(call, [(g.seq, _gateway_json(g)) for g in call.state.gateways.values()])


async def get_gateway(call: Call) -> Response:
    gateway = _find(call.state.gateways, call.path_id("gateway_device_id"), "gateway device")
    return _ok(_gateway_json(gateway))


async def delete_gateway(call: Call) -> Response:
    gateway = _find(call.state.gateways, call.path_id("gateway_device_id"), "gateway device")
    del call.state.gateways[gateway.id]
    for association in [
        a for a in call.state.associations.values() if a.gateway_device_id == gateway.id
    ]:
        del call.state.associations[association.id]
    return _no_content()


async def create_association(call: Call) -> Response:
    body = _parse(AssociationBody, await call.body())
    state = call.state
    gateway = _find(
        state.gateways, _uuid(body.gateway_device_id, "gatewayDeviceId"), "gateway device"
    )
    lock = _find(
        state.locking_devices, _uuid(body.locking_device_id, "lockingDeviceId"), "locking device"
    )
    existing = [a for a in state.associations.values() if a.gateway_device_id == gateway.id]
    if any(a.locking_device_id == lock.id for a in existing):
        raise Problem(409, "the locking device is already associated with this gateway device")
    if len(existing) >= ASSOCIATIONS_PER_GATEWAY_MAX:
        raise Problem(
            409,
            f"a gateway device can be associated with a maximum of {ASSOCIATIONS_PER_GATEWAY_MAX} "
            "locking devices at the same time",
        )
    association = Association(state.new_id(), gateway.id, lock.id, call.now, state.next_seq())
    state.associations[association.id] = association
    return _ok(_association_json(association), 201)


async def list_associations(call: Call) -> Response:
    wanted = call.query("gateway-device-id")
    if wanted is not None:
        wanted = _uuid(wanted, "gateway-device-id")
    return _page(
        call,
        [
            (a.seq, _association_json(a))
            for a in call.state.associations.values()
            if wanted is None or a.gateway_device_id == wanted
        ],
    )


async def get_association(call: Call) -> Response:
    association = _find(
        call.state.associations, call.path_id("association_id"), "gateway device association"
    )
    return _ok(_association_json(association))


async def delete_association(call: Call) -> Response:
    association = _find(
        call.state.associations, call.path_id("association_id"), "gateway device association"
    )
    del call.state.associations[association.id]
    return _no_content()


async def issue_remote_command(call: Call) -> Response:
    body = _parse(RemoteCommandBody, await call.body())
    state = call.state
    gateway = _find(
        state.gateways, _uuid(body.gateway_device_id, "gatewayDeviceId"), "gateway device"
    )
    lock = _find(
        state.locking_devices, _uuid(body.locking_device_id, "lockingDeviceId"), "locking device"
    )
    if not any(
        a.gateway_device_id == gateway.id and a.locking_device_id == lock.id
        for a in state.associations.values()
    ):
        raise Problem(
            409,
            "a remote command can only target a locking device associated with the gateway device",
        )
    if gateway.activated_at is None:
        raise Problem(409, "the gateway device must be activated")
    if not lock.claimed:
        raise Problem(409, "the locking device must be claimed")
    command = RemoteCommand(
        id=state.new_id(),
        gateway_device_id=gateway.id,
        locking_device_id=lock.id,
        action=body.action.value,
        valid_from=call.now,
        valid_until=call.now + REMOTE_COMMAND_VALIDITY,
        issuer_user_id=call.caller_id,
        issued_at=call.now,
        seq=state.next_seq(),
    )
    state.remote_commands[command.id] = command
    return _ok(_remote_command_json(command), 201)


async def list_remote_commands(call: Call) -> Response:
    wanted = call.query("gateway-device-id")
    if wanted is not None:
        wanted = _uuid(wanted, "gateway-device-id")
    return _page(
        call,
        [
            (c.seq, _remote_command_json(c))
            for c in call.state.remote_commands.values()
            if wanted is None or c.gateway_device_id == wanted
        ],
    )


async def get_remote_command(call: Call) -> Response:
    command = _find(call.state.remote_commands, call.path_id("remote_command_id"), "remote command")
    return _ok(_remote_command_json(command))


async def cancel_remote_command(call: Call) -> Response:
    command = _find(call.state.remote_commands, call.path_id("remote_command_id"), "remote command")
    if command.acknowledged_at is not None:
        raise Problem(
            409, "cancellation is only possible if the remote command has not been acknowledged"
        )
    if command.canceled_at is not None:
        raise Problem(
            409, "cancellation is only possible if the remote command has not been canceled"
        )
    command.canceled_at = call.now
    command.canceler_user_id = call.caller_id
    return _no_content()


async def initiate_re_key(call: Call) -> Response:
    if not call.state.testing_endpoints:
        raise Problem(403, "This action is not available in this environment.")
    lock = _find(call.state.locking_devices, call.path_id("locking_device_id"), "locking device")
    if not lock.claimed:
        raise Problem(409, "the locking device is not claimed: it has no certificate to re-key")
    lock.re_keying_forced = True
    return _no_content()


# --- the operating-device stand-in ----------------------------------------------------------


async def mobile_activation(call: Call) -> Response:
    body = _parse(ActivationBody, await call.body())
    state = call.state
    invitation = next(
        (
            i
            for i in state.invitations.values()
            if hmac.compare_digest(i.code, body.invitation_code)
        ),
        None,
    )
    if invitation is None:
        raise Problem(404, "no invitation has this invitationCode")
    if invitation.status is InvitationStatus.REVOKED:
        raise Problem(409, "the invitation was revoked: a revoked invitation can't be accepted")
    if invitation.status is InvitationStatus.ACCEPTED:
        raise Problem(409, "the invitation was already accepted")
    if call.now >= invitation.expires_at:
        raise Problem(409, "the invitation has expired")
    if any(d.user_id == invitation.user_id for d in state.operating_devices.values()):
        raise Problem(409, "the user already has an operating device (a user may have only one)")
    try:
        point = base64.b64decode(body.public_key, validate=True)
        kp.load_public_key_bytes(point)
    except (binascii.Error, ValueError, ProtocolError):
        raise Problem(
            400, "publicKey must be base64 of a 65-byte uncompressed P-256 point"
        ) from None
    device = OperatingDevice(
        id=state.new_id(),
        user_id=invitation.user_id,
        public_key=point,
        access_key=_access_key(),
        invitation_id=invitation.id,
        seq=state.next_seq(),
    )
    state.operating_devices[device.id] = device
    invitation.status = InvitationStatus.ACCEPTED
    return _mobile_ok({"operatingDeviceId": device.id, "accessKey": device.access_key}, 201)


async def mobile_login(call: Call) -> Response:
    body = _parse(MobileLoginBody, await call.body())
    device = call.state.operating_devices.get(_uuid(body.operating_device_id, "operatingDeviceId"))
    if device is None or not hmac.compare_digest(
        device.access_key.encode(), body.access_key.encode()
    ):
        raise Problem(401, "operatingDeviceId and accessKey do not match an operating device")
    return _mobile_ok(
        {"token": _new_session(call.state, "mobile", device.id, MOBILE_TOKEN_LIFETIME)}
    )


async def mobile_ca(call: Call) -> Response:
    der = call.state.ca_certificate.public_bytes(serialization.Encoding.DER)
    return _mobile_ok({"certificate": _b64(der)})


async def mobile_operating_keys(call: Call) -> Response:
    state = call.state
    device = call.operating_device()
    now = _whole_seconds(call.now)
    items = []
    for permission in state.permissions.values():
        if permission.user_id != device.user_id or not permission.start <= now < permission.end:
            continue
        lock = state.locking_devices.get(permission.locking_device_id)
        if lock is None or lock.certificate is None:
            continue
        not_after = _whole_seconds(min(permission.end, now + permission.validity))
        # While a re-keying is pending the platform cannot know which key the lock runs on:
        # one key per generation, and the lock takes the one bound to its own (as with the
        # primary and alternative offline keys).
        generations = [lock.certificate]
        if lock.pending_certificate is not None:
            generations.append(lock.pending_certificate)
        for certificate in generations:
            grant = kp.Grant(
                key_id=state.new_id(),
                kind=kp.GrantKind.OPERATING,
                operating_device_id=device.id,
                locking_device_id=lock.id,
                operations=frozenset({kp.Operation(permission.operation_type)}),
                not_before=_whole_seconds(permission.start),
                not_after=not_after,
                lock_key_id=certificate.lock_key_id,
                holder_public_key=device.public_key,
            )
            state.issued_operating_keys[grant.key_id] = IssuedOperatingKey(
                grant.key_id, device.id, permission.id, lock.id, not_after
            )
            items.append(
                {
                    "lockingDeviceId": lock.id,
                    "keyId": grant.key_id,
                    "grant": _b64(kp.sign_grant(grant, state.platform_key)),
                    "notAfter": _iso(not_after),
                    "certificate": _b64(lock.certificate.der),
                }
            )
    return _mobile_ok({"items": items})


def _material(value: OfflineKeyValue | None) -> dict[str, str] | None:
    if value is None:
        return None
    return {"grant": _b64(value.grant), "privateKey": _b64(value.private_key_der)}


async def mobile_offline_keys(call: Call) -> Response:
    device = call.operating_device()
    items = [
        {
            "offlineKeyId": key.id,
            "lockingDeviceId": key.locking_device_id,
            "start": _iso(key.start),
            "end": _iso(key.end),
            "primary": _material(key.primary),
            "alternative": _material(key.alternative),
        }
        for key in call.state.offline_keys.values()
        if key.operating_device_id == device.id and key.end > call.now
    ]
    return _mobile_ok({"items": items})


async def mobile_revocations(call: Call) -> Response:
    call.operating_device()
    state = call.state
    revocations = state.revocation_list()
    blob = kp.sign_revocation_list(revocations, state.platform_key)
    return _mobile_ok({"version": revocations.version, "list": _b64(blob)})


def _submitted_lock(call: Call) -> LockingDevice:
    call.operating_device()
    lock = _find(call.state.locking_devices, call.path_id("locking_device_id"), "locking device")
    if not lock.claimed:
        raise Problem(409, "the locking device is not claimed: it has no certificate yet")
    return lock


def _decode_entries(body: EntriesBody) -> list[bytes]:
    blobs = []
    for index, text in enumerate(body.entries):
        try:
            blobs.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise Problem(400, f"entries.{index}: not base64") from None
    return blobs


def _verified(
    state: KeylessPlatformState, lock: LockingDevice, blob: bytes, index: int
) -> kp.AuditEntry:
    """The entry, verified against one of the lock's certificates. An entry signed by the key of
    the pending certificate, or a successful INSTALL_CERTIFICATE, proves the lock installed it."""
    for cert in lock.certificates():
        try:
            entry = kp.verify_audit_entry(blob, x509.load_der_x509_certificate(cert.der))
        except ProtocolError:
            continue
        installed = (
            entry.operation is kp.Command.INSTALL_CERTIFICATE and entry.result is kp.ResultCode.OK
        )
        if cert is lock.pending_certificate or installed:
            state.complete_re_keying(lock.id)
        return entry
    raise Problem(
        400, f"entries.{index}: the signature does not verify against the lock's certificates"
    )


def _client_of(
    state: KeylessPlatformState, operating_device_id: str | None, key_id: str | None
) -> dict[str, str]:
    if operating_device_id is None:
        client = {"type": "OFFLINE_KEY"}
        if key_id is not None:
            client["offlineKeyId"] = key_id
        return client
    device = state.operating_devices.get(operating_device_id)
    client = {"type": "OPERATING_DEVICE", "operatingDeviceId": operating_device_id}
    if device is not None:
        client["userId"] = device.user_id
    return client


async def mobile_audit_log(call: Call) -> Response:
    lock = _submitted_lock(call)
    blobs = _decode_entries(_parse(EntriesBody, await call.body()))
    state = call.state
    entries = [_verified(state, lock, blob, index) for index, blob in enumerate(blobs)]
    accepted = duplicates = 0
    for blob, entry in zip(blobs, entries, strict=True):
        key = (lock.id, entry.sequence)
        duplicate = key in state.audit_log
        state.submissions.append(Submission(lock.id, "audit", entry.sequence, duplicate))
        if duplicate:
            duplicates += 1
            continue
        accepted += 1
        state.audit_log[key] = LogEntry(
            id=state.new_id(),
            locking_device_id=lock.id,
            event_name=entry.operation.name.lower(),
            occurred_at=entry.occurred_at,
            sequence_number=entry.sequence,
            client=_client_of(state, entry.operating_device_id, entry.key_id),
            granted=entry.result is kp.ResultCode.OK,
            blob=blob,
        )
    return _mobile_ok({"accepted": accepted, "duplicates": duplicates})


async def mobile_system_log(call: Call) -> Response:
    lock = _submitted_lock(call)
    blobs = _decode_entries(_parse(EntriesBody, await call.body()))
    state = call.state
    entries = [_verified(state, lock, blob, index) for index, blob in enumerate(blobs)]
    accepted = duplicates = 0
    for blob, entry in zip(blobs, entries, strict=True):
        key = (lock.id, entry.sequence)
        duplicate = key in state.system_log
        state.submissions.append(Submission(lock.id, "system", entry.sequence, duplicate))
        if duplicate:
            duplicates += 1
            continue
        accepted += 1
        state.system_log[key] = LogEntry(
            id=state.new_id(),
            locking_device_id=lock.id,
            event_name=entry.operation.name.lower(),
            occurred_at=entry.occurred_at,
            sequence_number=entry.sequence,
            blob=blob,
        )
    return _mobile_ok({"accepted": accepted, "duplicates": duplicates})


async def mobile_csr(call: Call) -> Response:
    device = call.operating_device()
    lock = _submitted_lock(call)
    state = call.state
    if not any(
        p.user_id == device.user_id
        and p.locking_device_id == lock.id
        and p.start <= call.now < p.end
        for p in state.permissions.values()
    ):
        raise Problem(
            403,
            "certificate updates need a permission on the locking device (offline keys do not "
            "allow them)",
        )
    try:
        csr_der = base64.b64decode(_parse(CsrBody, await call.body()).csr, validate=True)
        csr = x509.load_der_x509_csr(csr_der)
    except (binascii.Error, ValueError):
        raise Problem(400, "csr must be base64 of a DER PKCS#10 request") from None
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != lock.id:
        raise Problem(400, "csr: the subject CN must be the lockingDeviceId")
    try:
        lock.pending_certificate = state.certify(csr_der)
    except (ProtocolError, ValueError):
        raise Problem(400, "csr: the request's signature does not verify") from None
    return _mobile_ok({}, 202)


async def mobile_certificate(call: Call) -> Response:
    call.operating_device()
    lock = _find(call.state.locking_devices, call.path_id("locking_device_id"), "locking device")
    if lock.pending_certificate is None:
        raise Problem(404, "no certificate is pending for this locking device")
    return _mobile_ok({"certificate": _b64(lock.pending_certificate.der)})


# --- the app --------------------------------------------------------------------------------

Handler = Callable[[Call], Awaitable[Response]]

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
            name = f"{request.method} {path}"
            state.requests[name] += 1
            if state.faults.latency_s > 0:
                await asyncio.sleep(state.faults.latency_s)
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
                call = Call(state, request, state.now(), session, name)
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
