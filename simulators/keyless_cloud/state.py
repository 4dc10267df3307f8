"""The simulated Keyless platform's world: its limits, what it knows, and how a test or a
world builder seeds it (:class:`KeylessPlatformState`, :func:`register_lock`).
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import enum
import random
import secrets
import struct
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from blelock.vendors.keyless import protocol as kp
from simulators.round_trip import ModelledWaits

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
    audit_gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Per lock: the runs of audit sequence numbers missing below the highest one held (a
    DROPPED entry from the lock explains some; the rest is a lock or companion losing data)."""
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    """Requests per route name (``"GET /locking-device"``...), faulted ones included."""
    modelled: ModelledWaits = field(default_factory=ModelledWaits)
    """The latency charged (``faults.latency_s`` a request), overlapping round trips once."""
    faulted: collections.Counter[str] = field(default_factory=collections.Counter)
    _seq: int = 0
    _certificate_serial: int = 1
    _published_revocations: frozenset[str] = frozenset()

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
            self.revocation_list()  # a new version now

    def revocation_list(self) -> kp.RevocationList:
        """The current list: revoked keys until their not_after + the lock's clock tolerance +
        the maximum drift a lock's clock may have (a slow lock still judges by its own clock).
        Whenever the content changes, pruning included, the version goes up: one version is
        one list."""
        now = self.now()
        margin = dt.timedelta(seconds=kp.LIMITS.clock_tolerance_s + kp.LIMITS.max_clock_drift_s)
        alive = {key: until for key, until in self.revoked_keys.items() if until + margin > now}
        if frozenset(alive) != self._published_revocations:
            self._published_revocations = frozenset(alive)
            self.revocation_version += 1
        return kp.RevocationList(self.revocation_version, frozenset(alive), alive)

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
