"""Keys and signed objects of the Keyless stand-in (ECDSA P-256, domain-separated signatures):
key ids, the platform CA, lock CSRs and operational certificates, grants and credentials,
revocation lists, and the lock's signed audit entries.
"""

from __future__ import annotations

import enum
import hashlib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from blelock.errors import LocalProtocolError, RemoteProtocolError
from blelock.vendors.keyless.protocol._codes import AuditKind, Command, ResultCode, _command
from blelock.vendors.keyless.protocol._fields import (
    _moment,
    _Reader,
    _seconds,
    _signed_blob,
    _split_signed,
    _uuid_bytes,
    _uuid_text,
)
from blelock.vendors.keyless.protocol._limits import LIMITS

# === identifiers, keys, certificates ============================================================

_SIGNATURE_HASH = hashes.SHA256()
_CURVE = ec.SECP256R1()
_POINT_SIZE = 65
_KEY_ID_SIZE = 32


class Operation(enum.StrEnum):
    OPEN = "OPEN"
    UPDATE_FIRMWARE = "UPDATE_FIRMWARE"
    UPDATE_TIME = "UPDATE_TIME"


class GrantKind(enum.StrEnum):
    OPERATING = "OPERATING"
    OFFLINE = "OFFLINE"


_OPERATION_BITS = {Operation.OPEN: 1, Operation.UPDATE_FIRMWARE: 2, Operation.UPDATE_TIME: 4}
_KIND_CODES = {GrantKind.OPERATING: 1, GrantKind.OFFLINE: 2}


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(_CURVE)


def public_key_bytes(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The 65-byte uncompressed point."""
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def load_public_key_bytes(data: bytes) -> ec.EllipticCurvePublicKey:
    if len(data) != _POINT_SIZE:
        raise RemoteProtocolError(f"a P-256 public key is 65 bytes, not {len(data)}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, bytes(data))
    except ValueError:
        raise RemoteProtocolError("the public key is not a point on P-256") from None


def key_id_of(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """SHA-256 of the uncompressed point: names one lock key generation."""
    return hashlib.sha256(public_key_bytes(public_key)).digest()


def _sign(key: ec.EllipticCurvePrivateKey, domain: bytes, body: bytes) -> bytes:
    return key.sign(domain + body, ec.ECDSA(_SIGNATURE_HASH))


def _valid(
    public_key: ec.EllipticCurvePublicKey, signature: bytes, domain: bytes, data: bytes
) -> bool:
    try:
        public_key.verify(signature, domain + data, ec.ECDSA(_SIGNATURE_HASH))
    except InvalidSignature:
        return False
    return True


def make_platform_ca(
    key: ec.EllipticCurvePrivateKey, *, name: str, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, _SIGNATURE_HASH)
    )


_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def make_csr(lock_key: ec.EllipticCurvePrivateKey, locking_device_id: str) -> bytes:
    """DER PKCS#10 with CN = the lockingDeviceId."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, locking_device_id)]))
        .sign(lock_key, _SIGNATURE_HASH)
    )
    return csr.public_bytes(serialization.Encoding.DER)


def issue_certificate(
    csr_der: bytes,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> bytes:
    """The platform signs a lock's CSR (after checking the CSR's own signature)."""
    try:
        csr = x509.load_der_x509_csr(bytes(csr_der))
        signed = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):
        raise RemoteProtocolError("the CSR is not DER PKCS#10") from None
    if not signed:
        raise RemoteProtocolError("the CSR's signature does not hold")
    if (
        not isinstance(public_key, ec.EllipticCurvePublicKey)
        or public_key.curve.name != "secp256r1"
    ):
        raise RemoteProtocolError("the CSR's key is not ECDSA P-256")
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_KEY_USAGE, critical=True)
        .sign(ca_key, _SIGNATURE_HASH)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _check_ca(ca_cert: x509.Certificate, at: datetime) -> None:
    """The pinned CA itself: a CA (basicConstraints ca=True, keyCertSign) valid ``at``."""
    if not ca_cert.not_valid_before_utc <= at <= ca_cert.not_valid_after_utc:
        raise RemoteProtocolError("the platform CA certificate is outside its validity period")
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise RemoteProtocolError("the platform CA lacks basicConstraints or keyUsage") from None
    if not constraints.ca or not usage.key_cert_sign:
        raise RemoteProtocolError("the platform CA certificate is not a CA")


def _check_leaf(cert: x509.Certificate) -> None:
    """A lock's operational certificate: ca=False and keyUsage digitalSignature only, so a lock
    certificate can never sign certificates and no CA certificate can pass as a lock's."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise RemoteProtocolError(
            "the lock certificate lacks basicConstraints or keyUsage"
        ) from None
    if constraints.ca:
        raise RemoteProtocolError("the lock certificate claims to be a CA")
    if not usage.digital_signature or usage.key_cert_sign or usage.crl_sign:
        raise RemoteProtocolError("the lock certificate's keyUsage is not digitalSignature")


def load_certificate(der: bytes, what: str) -> x509.Certificate:
    """DER X.509 that RFC 5280 allows, or RemoteProtocolError naming ``what``. cryptography
    only warns today about some violations (a serial that is not positive) and will raise on
    them later: both are refused here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(bytes(der))
            _ = cert.version  # parsed lazily: an invalid version must be refused here, not later
    except (ValueError, TypeError, x509.InvalidVersion, CryptographyDeprecationWarning):
        raise RemoteProtocolError(f"{what} is not DER X.509 as RFC 5280 allows") from None
    return cert


def verify_lock_certificate(
    cert_der: bytes, ca_cert: x509.Certificate, *, at: datetime
) -> x509.Certificate:
    """The lock's operational certificate, checked to be issued by ``ca_cert`` (itself a CA
    valid ``at``), valid ``at``, a leaf (ca=False, keyUsage digitalSignature) and carrying a
    P-256 key. RemoteProtocolError otherwise (an impostor or a broken lock)."""
    cert = load_certificate(cert_der, "the lock certificate")
    _check_ca(ca_cert, at)
    try:
        cert.verify_directly_issued_by(ca_cert)
        valid = cert.not_valid_before_utc <= at <= cert.not_valid_after_utc
        key = cert.public_key()
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm, x509.InvalidVersion):
        raise RemoteProtocolError(
            "the lock certificate does not chain to the platform CA"
        ) from None
    if not valid:
        raise RemoteProtocolError("the lock certificate is outside its validity period")
    _check_leaf(cert)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise RemoteProtocolError("the lock certificate does not carry a P-256 key")
    return cert


def certificate_lock_id(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _cert_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise RemoteProtocolError("the certificate does not carry an EC key")
    return key


# === re-keying: the CSR endorsed by the lock's current key =====================================

_CSR_ENDORSEMENT_DOMAIN = b"keyless-standin/rekey-csr/v1\x00"


def _endorsement_payload(locking_device_id: str, csr_der: bytes) -> bytes:
    return _uuid_bytes(locking_device_id) + hashlib.sha256(bytes(csr_der)).digest()


def endorse_csr(
    current_key: ec.EllipticCurvePrivateKey, locking_device_id: str, csr_der: bytes
) -> bytes:
    """The lock's *current* key signs (domain, lock id, SHA-256 of the CSR): only the lock that
    holds the certified key can ask for its successor (answers the re-key takeover)."""
    return _sign(
        current_key, _CSR_ENDORSEMENT_DOMAIN, _endorsement_payload(locking_device_id, csr_der)
    )


def verify_csr_endorsement(
    csr_der: bytes, endorsement: bytes, *, locking_device_id: str, current: x509.Certificate
) -> x509.CertificateSigningRequest:
    """The CSR, if it is well formed (own signature, CN = the lock id, a P-256 key other than
    the current one) and ``endorsement`` is the signature of the key of ``current`` (the lock's
    certificate now) over it. RemoteProtocolError otherwise."""
    try:
        csr = x509.load_der_x509_csr(bytes(csr_der))
    except ValueError:
        raise RemoteProtocolError("the CSR is not DER PKCS#10") from None
    if not csr.is_signature_valid:
        raise RemoteProtocolError("the CSR's signature does not hold")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != locking_device_id:
        raise RemoteProtocolError("the CSR's subject CN is not the lockingDeviceId")
    new_key = csr.public_key()
    if not isinstance(new_key, ec.EllipticCurvePublicKey) or new_key.curve.name != "secp256r1":
        raise RemoteProtocolError("the CSR's key is not ECDSA P-256")
    current_key = _cert_key(current)
    if key_id_of(new_key) == key_id_of(current_key):
        raise RemoteProtocolError("the CSR asks to certify the lock's current key again")
    if not 8 <= len(endorsement) <= LIMITS.max_signature_size or not _valid(
        current_key,
        bytes(endorsement),
        _CSR_ENDORSEMENT_DOMAIN,
        _endorsement_payload(locking_device_id, csr_der),
    ):
        raise RemoteProtocolError("the CSR is not endorsed by the lock's current key")
    return csr


# === grants =====================================================================================

_GRANT_DOMAIN = b"keyless-standin/grant/v1\x00"
_GRANT_MAGIC = b"KLG1"


@dataclass(frozen=True, slots=True)
class Grant:
    """What the platform signs: an operating key or an offline key."""

    key_id: str
    kind: GrantKind
    operating_device_id: str | None
    locking_device_id: str
    operations: frozenset[Operation]
    not_before: datetime
    not_after: datetime
    lock_key_id: bytes
    holder_public_key: bytes


def _encode_grant(grant: Grant) -> bytes:
    if len(grant.lock_key_id) != _KEY_ID_SIZE or len(grant.holder_public_key) != _POINT_SIZE:
        raise LocalProtocolError("a grant needs a 32-byte lock key id and a 65-byte holder key")
    device = grant.operating_device_id
    mask = sum(_OPERATION_BITS[op] for op in grant.operations)
    return b"".join(
        (
            _GRANT_MAGIC,
            bytes([_KIND_CODES[grant.kind]]),
            _uuid_bytes(grant.key_id),
            b"\x01" + _uuid_bytes(device) if device is not None else b"\x00" + bytes(16),
            _uuid_bytes(grant.locking_device_id),
            bytes([mask]),
            _seconds(grant.not_before).to_bytes(8, "big", signed=True),
            _seconds(grant.not_after).to_bytes(8, "big", signed=True),
            grant.lock_key_id,
            grant.holder_public_key,
        )
    )


def _decode_grant(body: bytes) -> Grant:
    reader = _Reader(body, "grant")
    if reader.take(4) != _GRANT_MAGIC:
        raise RemoteProtocolError("grant: unknown format")
    kinds = {code: kind for kind, code in _KIND_CODES.items()}
    kind = kinds.get(reader.uint(1))
    if kind is None:
        raise RemoteProtocolError("grant: unknown kind")
    key_id = _uuid_text(reader.take(16))
    has_device = reader.uint(1)
    device = reader.take(16)
    if has_device not in (0, 1):
        raise RemoteProtocolError("grant: bad device flag")
    lock = _uuid_text(reader.take(16))
    mask = reader.uint(1)
    if mask & ~0b111:
        raise RemoteProtocolError("grant: unknown operation bits")
    operations = frozenset(op for op, bit in _OPERATION_BITS.items() if mask & bit)
    not_before = _moment(reader.sint(8))
    not_after = _moment(reader.sint(8))
    lock_key_id = reader.take(_KEY_ID_SIZE)
    holder = reader.take(_POINT_SIZE)
    reader.end()
    return Grant(
        key_id=key_id,
        kind=kind,
        operating_device_id=_uuid_text(device) if has_device else None,
        locking_device_id=lock,
        operations=operations,
        not_before=not_before,
        not_after=not_after,
        lock_key_id=lock_key_id,
        holder_public_key=holder,
    )


def sign_grant(grant: Grant, platform_key: ec.EllipticCurvePrivateKey) -> bytes:
    """``u16 length || deterministic body || DER ECDSA signature`` (the blob the holder gets)."""
    body = _encode_grant(grant)
    return _signed_blob(body, _sign(platform_key, _GRANT_DOMAIN, body))


def verify_grant(blob: bytes, platform_public_key: ec.EllipticCurvePublicKey) -> Grant:
    """The grant, if the platform signed exactly these bytes; RemoteProtocolError otherwise."""
    if len(blob) > LIMITS.max_grant_size:
        raise RemoteProtocolError("grant: too long")
    body, signature = _split_signed(blob, "grant")
    if not _valid(platform_public_key, signature, _GRANT_DOMAIN, body):
        raise RemoteProtocolError("grant: the platform's signature does not hold")
    return _decode_grant(body)


@dataclass(frozen=True, slots=True)
class Credential:
    """An operating key or one half of an offline key: the signed grant and the holder's key."""

    grant: bytes
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)


# === revocation lists ===========================================================================

_REVOCATION_DOMAIN = b"keyless-standin/revocations/v1\x00"


_NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""The expiry of a revoked key listed without one: kept for good."""


@dataclass(frozen=True, slots=True)
class RevocationList:
    """Revoked key ids, each with the end of its grant's validity (``expires``; a key without
    one never expires): a lock keeps each until its *own* clock passes that end plus the
    tolerance, whatever later lists say (answers revocation undone by pruning)."""

    version: int
    key_ids: frozenset[str]
    expires: Mapping[str, datetime] = field(default_factory=dict)

    def expiry(self, key_id: str) -> datetime:
        return self.expires.get(key_id, _NEVER)

    def merged(self, newer: RevocationList, *, now: datetime) -> RevocationList:
        """This list and a newer one: the union (latest expiry wins), pruned by ``now`` (the
        lock's own clock) of keys a grant could not pass anyway (past expiry + tolerance)."""
        tolerance = timedelta(seconds=LIMITS.clock_tolerance_s)
        expires = {key: self.expiry(key) for key in self.key_ids}
        for key in newer.key_ids:
            expires[key] = max(expires.get(key, newer.expiry(key)), newer.expiry(key))
        alive = {key: until for key, until in expires.items() if until >= now - tolerance}
        dated = {key: until for key, until in alive.items() if until != _NEVER}
        return RevocationList(max(self.version, newer.version), frozenset(alive), dated)


def sign_revocation_list(
    revocations: RevocationList, platform_key: ec.EllipticCurvePrivateKey
) -> bytes:
    """``version u32 | count u16 | (key_id 16 | not_after i64) x count``, signed."""
    if len(revocations.key_ids) > LIMITS.max_revoked_keys:
        raise LocalProtocolError(f"at most {LIMITS.max_revoked_keys} revoked keys per list")
    body = revocations.version.to_bytes(4, "big") + len(revocations.key_ids).to_bytes(2, "big")
    body += b"".join(
        _uuid_bytes(key) + _seconds(revocations.expiry(key)).to_bytes(8, "big", signed=True)
        for key in sorted(revocations.key_ids)
    )
    return _signed_blob(body, _sign(platform_key, _REVOCATION_DOMAIN, body))


def verify_revocation_list(
    blob: bytes, platform_public_key: ec.EllipticCurvePublicKey
) -> RevocationList:
    body, signature = _split_signed(blob, "revocation list")
    if not _valid(platform_public_key, signature, _REVOCATION_DOMAIN, body):
        raise RemoteProtocolError("revocation list: the platform's signature does not hold")
    reader = _Reader(body, "revocation list")
    version = reader.uint(4)
    count = reader.uint(2)
    if count > LIMITS.max_revoked_keys:
        raise RemoteProtocolError("revocation list: too many keys")
    keys: set[str] = set()
    expires: dict[str, datetime] = {}
    for _ in range(count):
        key, until = _uuid_text(reader.take(16)), _moment(reader.sint(8))
        keys.add(key)
        if until != _NEVER:
            expires[key] = until
    reader.end()
    return RevocationList(version, frozenset(keys), expires)


# === time statements: the platform's time, bound to one lock nonce =============================

_TIME_DOMAIN = b"keyless-standin/time/v1\x00"
_TIME_MAGIC = b"KLT1"


@dataclass(frozen=True, slots=True)
class TimeStatement:
    """The platform says "it is ``time``" to the lock ``locking_device_id`` that issued
    ``nonce``: the only thing that lets a lock's clock go back more than the tolerance (answers
    clock rollback; the nonce makes it good for one request)."""

    locking_device_id: str
    nonce: bytes
    time: datetime


def sign_time_statement(
    statement: TimeStatement, platform_key: ec.EllipticCurvePrivateKey
) -> bytes:
    if len(statement.nonce) != LIMITS.nonce_size:
        raise LocalProtocolError(f"a time statement binds a {LIMITS.nonce_size}-byte nonce")
    body = b"".join(
        (
            _TIME_MAGIC,
            _uuid_bytes(statement.locking_device_id),
            statement.nonce,
            _seconds(statement.time).to_bytes(8, "big", signed=True),
        )
    )
    return _signed_blob(body, _sign(platform_key, _TIME_DOMAIN, body))


def verify_time_statement(
    blob: bytes, platform_public_key: ec.EllipticCurvePublicKey
) -> TimeStatement:
    body, signature = _split_signed(blob, "time statement")
    if not _valid(platform_public_key, signature, _TIME_DOMAIN, body):
        raise RemoteProtocolError("time statement: the platform's signature does not hold")
    reader = _Reader(body, "time statement")
    if reader.take(4) != _TIME_MAGIC:
        raise RemoteProtocolError("time statement: unknown format")
    lock = _uuid_text(reader.take(16))
    nonce = reader.take(LIMITS.nonce_size)
    moment = _moment(reader.sint(8))
    reader.end()
    return TimeStatement(lock, nonce, moment)


# === audit entries ==============================================================================

_AUDIT_DOMAIN = b"keyless-standin/audit/v2\x00"
_AUDIT_MAGIC = b"KLA2"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    sequence: int
    occurred_at: datetime
    operation: Command | None
    """None for an UNAUTHENTICATED or DROPPED summary."""
    operating_device_id: str | None
    """Only once the holder's proof verified (a replayed grant never blames its holder)."""
    key_id: str | None
    result: ResultCode
    blob: bytes = field(default=b"", repr=False, compare=False)
    """The signed bytes, as the companion uploads them."""
    kind: AuditKind = AuditKind.REQUEST
    count: int = 1
    """REQUEST: 1; UNAUTHENTICATED: refusals counted; DROPPED: sequence numbers dropped."""


def audit_entry_body(entry: AuditEntry, signer_key_id: bytes) -> bytes:
    def optional(value: str | None) -> bytes:
        return b"\x01" + _uuid_bytes(value) if value is not None else bytes(17)

    if (entry.operation is None) != (entry.kind is not AuditKind.REQUEST):
        raise LocalProtocolError("a REQUEST entry names its command; a summary names none")
    return b"".join(
        (
            _AUDIT_MAGIC,
            signer_key_id,
            entry.sequence.to_bytes(4, "big"),
            _seconds(entry.occurred_at).to_bytes(8, "big", signed=True),
            bytes([entry.kind, entry.operation or 0, entry.result]),
            optional(entry.operating_device_id),
            optional(entry.key_id),
            entry.count.to_bytes(4, "big"),
        )
    )


def sign_audit_entry(entry: AuditEntry, lock_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The lock signs each entry when it appends it, naming the key generation that signed."""
    body = audit_entry_body(entry, key_id_of(lock_key.public_key()))
    return _signed_blob(body, _sign(lock_key, _AUDIT_DOMAIN, body))


def verify_audit_entry(
    blob: bytes, lock_cert: x509.Certificate | Iterable[x509.Certificate]
) -> AuditEntry:
    """The entry, if signed by the key of ``lock_cert`` (or of the one among several certificates
    of the same lock whose key generation signed it, e.g. across a re-keying)."""
    certs = [lock_cert] if isinstance(lock_cert, x509.Certificate) else list(lock_cert)
    body, signature = _split_signed(blob, "audit entry")
    reader = _Reader(body, "audit entry")
    if reader.take(4) != _AUDIT_MAGIC:
        raise RemoteProtocolError("audit entry: unknown format")
    signer = reader.take(_KEY_ID_SIZE)
    keys = {key_id_of(_cert_key(cert)): _cert_key(cert) for cert in certs}
    key = keys.get(signer)
    if key is None:
        raise RemoteProtocolError("audit entry: signed by a lock key we hold no certificate for")
    if not _valid(key, signature, _AUDIT_DOMAIN, body):
        raise RemoteProtocolError("audit entry: the lock's signature does not hold")
    sequence = reader.uint(4)
    occurred_at = _moment(reader.sint(8))
    try:
        kind = AuditKind(reader.uint(1))
    except ValueError:
        raise RemoteProtocolError("audit entry: unknown kind") from None
    raw_operation = reader.uint(1)
    operation = _command(raw_operation) if kind is AuditKind.REQUEST else None
    if kind is not AuditKind.REQUEST and raw_operation:
        raise RemoteProtocolError("audit entry: a summary names a command")
    result = ResultCode(reader.uint(1))
    values: list[str | None] = []
    for _ in range(2):
        present, raw = reader.uint(1), reader.take(16)
        values.append(_uuid_text(raw) if present else None)
    count = reader.uint(4)
    reader.end()
    return AuditEntry(
        sequence, occurred_at, operation, values[0], values[1], result, bytes(blob), kind, count
    )
