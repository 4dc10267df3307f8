"""ASSA ABLOY Keyless BLE *stand-in* protocol, sans-I/O, both roles.

The vendor's BLE protocol and Mobile API are not public. Everything here is invented for blelock
and its simulators, and documented in ``docs/keyless-ble-standin.md``; it is **not** the vendor's
protocol. What it keeps honest is the security model of issue 4: a platform CA certifies each
lock's operational key (X.509, ECDSA P-256), the platform signs grants (operating and offline
keys) bound to one lock key generation, the lock challenges with a fresh nonce, the companion
proves possession of the grant's holder key, the lock checks everything against its own clock
and revocation list and answers with a result signed by its operational key. Audit entries are
signed by the lock and numbered without gaps; re-keying takes two offline visits (CSR out,
certificate in).

Every invented number lives in :data:`LIMITS` (the block just below), and nowhere else.

Companion side: :class:`KeylessConversation` says what to write and what to wait for (like
``DfuSession``); the lead's async driver runs it over a link. Lock side: the message codecs and
:func:`check_request` (the acceptance rules, in order); ``simulators.keyless_lock`` holds the state.
"""

from __future__ import annotations

import enum
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from blelock.errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [
    "COMPANY_ID",
    "LIMITS",
    "NOTIFY_UUID",
    "REFUSAL_RULES",
    "SERVICE_UUID",
    "WRITE_UUID",
    "Action",
    "AuditEntries",
    "AuditEntry",
    "AwaitNotification",
    "CertificateInstalled",
    "Challenge",
    "CollectAudit",
    "Command",
    "Credential",
    "CsrReady",
    "Event",
    "FirmwareUpdateAccepted",
    "Grant",
    "GrantKind",
    "Hello",
    "Identified",
    "InstallCertificate",
    "KeylessAdvert",
    "KeylessConversation",
    "KeylessLimits",
    "LockView",
    "Malformed",
    "Open",
    "Opened",
    "Operation",
    "Reassembler",
    "Refused",
    "Request",
    "Result",
    "ResultCode",
    "RevocationList",
    "SetTime",
    "StartRekey",
    "Step",
    "TimeSet",
    "UpdateFirmware",
    "Write",
    "audit_entry_body",
    "certificate_lock_id",
    "check_request",
    "decode_audit_page",
    "decode_lock_message",
    "decode_request",
    "encode_advert",
    "encode_audit_page",
    "encode_challenge",
    "encode_hello",
    "encode_malformed",
    "encode_request",
    "encode_result",
    "fragment",
    "generate_key",
    "issue_certificate",
    "key_id_of",
    "load_public_key_bytes",
    "local_name_for",
    "make_csr",
    "make_platform_ca",
    "parse_keyless_advert",
    "parse_time_argument",
    "proof_payload",
    "public_key_bytes",
    "sign_audit_entry",
    "sign_grant",
    "sign_revocation_list",
    "time_argument",
    "verify_audit_entry",
    "verify_grant",
    "verify_lock_certificate",
    "verify_revocation_list",
]


# === INVENTED NUMBERS: every one of them, in this one place =====================================


@dataclass(frozen=True, slots=True)
class KeylessLimits:
    att_payload: int = 20
    """Bytes per write / notification: the default ATT MTU (23) minus the ATT header."""
    max_message_size: int = 4096
    """Largest envelope (type + length + body) either side reassembles; a bigger one is refused."""
    nonce_size: int = 16
    clock_tolerance_s: int = 300
    """How far outside a grant's window the lock still accepts it (lock clocks drift)."""
    audit_page_size: int = 8
    """Entries per READ_AUDIT answer (8 signed entries fit well under max_message_size)."""
    audit_capacity: int = 4096
    """Entries a lock keeps; the oldest are dropped beyond that (the companion sees a gap)."""
    max_revoked_keys: int = 128
    """Key ids in one revocation list (128 x 16 bytes keeps the request under max_message_size)."""
    answer_timeout_s: float = 10.0
    """How long the companion waits for the lock's answer to one message."""
    max_grant_size: int = 512
    max_signature_size: int = 72
    """A DER ECDSA P-256 signature is at most 72 bytes."""


LIMITS = KeylessLimits()

# === GATT and advertising (invented UUIDs; 0xFFFF is the SIG's company id for testing) ==========

SERVICE_UUID = "4b4c5300-0001-4000-8000-7374616e6469"
"""INVENTED ("KLS" ... "standi"): not the vendor's service."""
WRITE_UUID = "4b4c5300-0002-4000-8000-7374616e6469"
"""Companion → lock fragments, write without response."""
NOTIFY_UUID = "4b4c5300-0003-4000-8000-7374616e6469"
"""Lock → companion fragments, notify."""
COMPANY_ID = 0xFFFF
ADVERT_VERSION = 1
_LOCAL_NAME = re.compile(r"KLS-(?P<short>[0-9A-F]{8})")

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
    except ValueError:
        raise RemoteProtocolError("the CSR is not DER PKCS#10") from None
    if not csr.is_signature_valid:
        raise RemoteProtocolError("the CSR's signature does not hold")
    public_key = csr.public_key()
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
        .sign(ca_key, _SIGNATURE_HASH)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def verify_lock_certificate(
    cert_der: bytes, ca_cert: x509.Certificate, *, at: datetime
) -> x509.Certificate:
    """The lock's operational certificate, checked to be issued by ``ca_cert``, valid ``at``,
    and carrying a P-256 key. RemoteProtocolError otherwise (an impostor or a broken lock)."""
    try:
        cert = x509.load_der_x509_certificate(bytes(cert_der))
    except ValueError:
        raise RemoteProtocolError("the lock certificate is not DER X.509") from None
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise RemoteProtocolError(
            "the lock certificate does not chain to the platform CA"
        ) from None
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise RemoteProtocolError("the lock certificate is outside its validity period")
    key = cert.public_key()
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


# === byte helpers ===============================================================================


class _Reader:
    """Bounds-checked reads; every failure is a RemoteProtocolError naming ``what``."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = bytes(data)
        self._at = 0
        self._what = what

    def take(self, size: int) -> bytes:
        if self._at + size > len(self._data):
            raise RemoteProtocolError(f"{self._what} is truncated")
        chunk = self._data[self._at : self._at + size]
        self._at += size
        return chunk

    @property
    def position(self) -> int:
        return self._at

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def sint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big", signed=True)

    def blob(self) -> bytes:
        return self.take(self.uint(2))

    def end(self) -> None:
        if self._at != len(self._data):
            raise RemoteProtocolError(f"{self._what} has {len(self._data) - self._at} extra bytes")


def _blob(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise LocalProtocolError("a field is longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def _uuid_bytes(text: str) -> bytes:
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        raise LocalProtocolError(f"{text!r} is not a UUID") from None


def _uuid_text(data: bytes) -> str:
    return str(uuid.UUID(bytes=data))


def _seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise LocalProtocolError("times on the wire are aware UTC datetimes")
    return int(moment.timestamp())


def _moment(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise RemoteProtocolError(f"time {seconds} is out of range") from None


def _signed_blob(body: bytes, signature: bytes) -> bytes:
    return _blob(body) + signature


def _split_signed(blob: bytes, what: str) -> tuple[bytes, bytes]:
    reader = _Reader(blob, what)
    body = reader.blob()
    signature = reader.take(len(blob) - 2 - len(body))
    if not 8 <= len(signature) <= LIMITS.max_signature_size:
        raise RemoteProtocolError(f"{what}: the signature is {len(signature)} bytes")
    return body, signature


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


@dataclass(frozen=True, slots=True)
class RevocationList:
    version: int
    key_ids: frozenset[str]


def sign_revocation_list(
    revocations: RevocationList, platform_key: ec.EllipticCurvePrivateKey
) -> bytes:
    if len(revocations.key_ids) > LIMITS.max_revoked_keys:
        raise LocalProtocolError(f"at most {LIMITS.max_revoked_keys} revoked keys per list")
    body = revocations.version.to_bytes(4, "big") + len(revocations.key_ids).to_bytes(2, "big")
    body += b"".join(_uuid_bytes(key) for key in sorted(revocations.key_ids))
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
    keys = frozenset(_uuid_text(reader.take(16)) for _ in range(count))
    reader.end()
    return RevocationList(version, keys)


# === result codes and commands ==================================================================


class ResultCode(enum.IntEnum):
    """The lock's answer; one code per refusal reason. Unknown values stay readable."""

    OK = 0x00
    MALFORMED = 0x01
    STALE_NONCE = 0x02
    BAD_SIGNATURE = 0x03
    WRONG_LOCK = 0x04
    WRONG_LOCK_KEY = 0x05
    BAD_PROOF = 0x06
    REVOKED = 0x07
    NOT_YET_VALID = 0x08
    EXPIRED = 0x09
    WRONG_OPERATION = 0x0A
    BAD_REVOCATION_LIST = 0x0B
    NO_PENDING_KEY = 0x0C
    CERTIFICATE_MISMATCH = 0x0D
    TIME_REFUSED = 0x0E

    @classmethod
    def _missing_(cls, value: object) -> ResultCode | None:
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_0x{value:02X}"
        member._value_ = value
        return member


REFUSAL_RULES: tuple[tuple[str, ResultCode], ...] = (
    ("the request does not decode", ResultCode.MALFORMED),
    (
        "an attached revocation list is not signed by the platform CA",
        ResultCode.BAD_REVOCATION_LIST,
    ),
    ("the nonce is not the one the lock issued last, or was used already", ResultCode.STALE_NONCE),
    ("the grant is not signed by the platform CA (tampered)", ResultCode.BAD_SIGNATURE),
    ("the grant is for another locking device", ResultCode.WRONG_LOCK),
    ("the grant is bound to another key generation of this lock", ResultCode.WRONG_LOCK_KEY),
    ("the proof is not the grant holder's signature over this request", ResultCode.BAD_PROOF),
    ("the grant's key id is on the lock's revocation list", ResultCode.REVOKED),
    (
        "validity: lock clock (UPDATE_TIME: the new time) before not_before",
        ResultCode.NOT_YET_VALID,
    ),
    ("validity: lock clock (UPDATE_TIME: the new time) after not_after", ResultCode.EXPIRED),
    ("the command needs an operation the grant does not allow", ResultCode.WRONG_OPERATION),
    ("UPDATE_TIME: the new time is before the lock's trusted floor", ResultCode.TIME_REFUSED),
    ("INSTALL_CERTIFICATE: no re-keying is pending", ResultCode.NO_PENDING_KEY),
    (
        "INSTALL_CERTIFICATE: not the pending key, or not from the CA",
        ResultCode.CERTIFICATE_MISMATCH,
    ),
)
"""The lock's acceptance rules, in the order it checks them (validity uses the tolerance)."""


class Command(enum.IntEnum):
    OPEN = 0x01
    UPDATE_FIRMWARE = 0x02
    UPDATE_TIME = 0x03
    READ_AUDIT = 0x10
    START_REKEY = 0x20
    INSTALL_CERTIFICATE = 0x21


_NEEDS: dict[Command, Operation | None] = {
    Command.OPEN: Operation.OPEN,
    Command.UPDATE_FIRMWARE: Operation.UPDATE_FIRMWARE,
    Command.UPDATE_TIME: Operation.UPDATE_TIME,
    Command.READ_AUDIT: None,
    Command.START_REKEY: None,
    Command.INSTALL_CERTIFICATE: None,
}
"""Maintenance commands need any grant that passes every other check."""


def _command(value: int) -> Command:
    try:
        return Command(value)
    except ValueError:
        raise RemoteProtocolError(f"unknown command 0x{value:02X}") from None


# === framing: 20-byte fragments of one envelope =================================================

_FIRST = 0x80
_LAST = 0x40
_INDEX = 0x3F


def fragment(message: bytes) -> list[bytes]:
    """Split one envelope into ATT-sized fragments: ``[flags|index] || up to 19 bytes``."""
    if not 3 <= len(message) <= LIMITS.max_message_size:
        raise LocalProtocolError(f"a message is 3..{LIMITS.max_message_size} bytes")
    size = LIMITS.att_payload - 1
    chunks = [message[i : i + size] for i in range(0, len(message), size)]
    out = []
    for index, chunk in enumerate(chunks):
        flags = (_FIRST if index == 0 else 0) | (_LAST if index == len(chunks) - 1 else 0)
        out.append(bytes([flags | (index & _INDEX)]) + chunk)
    return out


class Reassembler:
    """Fragments in, whole envelopes out. Bounded: refuses anything past ``max_message_size``.
    On a bad fragment it forgets the partial message and raises RemoteProtocolError."""

    def __init__(self) -> None:
        self._parts: list[bytes] | None = None
        self._size = 0

    @property
    def idle(self) -> bool:
        return self._parts is None

    def feed(self, data: bytes) -> bytes | None:
        data = bytes(data)
        try:
            return self._feed(data)
        except RemoteProtocolError:
            self._parts, self._size = None, 0
            raise

    def _feed(self, data: bytes) -> bytes | None:
        if not 2 <= len(data) <= LIMITS.att_payload:
            raise RemoteProtocolError(f"a fragment is 2..{LIMITS.att_payload} bytes")
        header, chunk = data[0], data[1:]
        if header & _FIRST:
            if self._parts is not None:
                raise RemoteProtocolError("a new message began before the last one ended")
            if header & _INDEX:
                raise RemoteProtocolError("a first fragment has index 0")
            self._parts, self._size = [], 0
        elif self._parts is None:
            raise RemoteProtocolError("a continuation fragment with no message begun")
        elif header & _INDEX != len(self._parts) & _INDEX:
            raise RemoteProtocolError("a fragment is missing or out of order")
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > LIMITS.max_message_size:
            raise RemoteProtocolError("the message is longer than the lock's limit")
        if not header & _LAST:
            return None
        message = b"".join(self._parts)
        self._parts, self._size = None, 0
        _unwrap(message)  # refuse a broken envelope now, not in the caller
        return message


def _envelope(kind: int, body: bytes) -> bytes:
    message = bytes([kind]) + len(body).to_bytes(2, "big") + body
    if len(message) > LIMITS.max_message_size:
        raise LocalProtocolError(f"the message is over {LIMITS.max_message_size} bytes")
    return message


def _unwrap(message: bytes) -> tuple[int, bytes]:
    reader = _Reader(message, "envelope")
    kind = reader.uint(1)
    body = reader.blob()
    reader.end()
    return kind, body


class _Type(enum.IntEnum):
    HELLO = 0x01
    REQUEST = 0x02
    CHALLENGE = 0x81
    RESULT = 0x82
    MALFORMED = 0x8F


# === messages ===================================================================================

_PROOF_DOMAIN = b"keyless-standin/proof/v1\x00"
_RESULT_DOMAIN = b"keyless-standin/result/v1\x00"


@dataclass(frozen=True, slots=True)
class Hello:
    """Companion → lock: "give me a nonce"."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """Lock → companion. Unsigned: the nonce matters only to the lock; the certificate is
    checked against the pinned CA; ``lock_time`` etc. are informational."""

    nonce: bytes
    lock_time: datetime
    audit_last_sequence: int
    revocation_version: int
    certificate: bytes


@dataclass(frozen=True, slots=True)
class Request:
    command: Command
    nonce: bytes
    grant: bytes
    argument: bytes
    revocations: bytes
    proof: bytes


@dataclass(frozen=True, slots=True)
class Result:
    """Lock → companion, signed by the lock's operational key (INSTALL_CERTIFICATE: the new)."""

    command: Command
    code: ResultCode
    request_nonce: bytes
    next_nonce: bytes
    lock_time: datetime
    payload: bytes
    signature: bytes
    signed: bytes = field(repr=False, default=b"")


@dataclass(frozen=True, slots=True)
class Malformed:
    """Lock → companion, unsigned: the lock could not decode what it got."""


def encode_hello() -> bytes:
    return _envelope(_Type.HELLO, b"")


def encode_challenge(
    nonce: bytes,
    *,
    lock_time: datetime,
    audit_last_sequence: int,
    revocation_version: int,
    certificate: bytes,
) -> bytes:
    body = nonce + _seconds(lock_time).to_bytes(8, "big", signed=True)
    body += audit_last_sequence.to_bytes(4, "big") + revocation_version.to_bytes(4, "big")
    return _envelope(_Type.CHALLENGE, body + _blob(certificate))


def proof_payload(
    *,
    nonce: bytes,
    locking_device_id: str,
    command: Command,
    key_id: str,
    argument: bytes,
    revocations: bytes,
) -> bytes:
    """What the holder signs: binds the proof to this nonce, lock, command, grant and data."""
    return b"".join(
        (
            nonce,
            _uuid_bytes(locking_device_id),
            bytes([command]),
            _uuid_bytes(key_id),
            hashlib.sha256(argument).digest(),
            hashlib.sha256(revocations).digest(),
        )
    )


def encode_request(
    credential: Credential,
    grant: Grant,
    *,
    command: Command,
    nonce: bytes,
    argument: bytes = b"",
    revocations: bytes = b"",
) -> bytes:
    payload = proof_payload(
        nonce=nonce,
        locking_device_id=grant.locking_device_id,
        command=command,
        key_id=grant.key_id,
        argument=argument,
        revocations=revocations,
    )
    proof = _sign(credential.private_key, _PROOF_DOMAIN, payload)
    body = bytes([command]) + nonce + _blob(credential.grant) + _blob(argument)
    return _envelope(_Type.REQUEST, body + _blob(revocations) + _blob(proof))


def decode_request(message: bytes) -> Hello | Request:
    """Lock side: a reassembled envelope from the companion."""
    kind, body = _unwrap(message)
    reader = _Reader(body, "request")
    if kind == _Type.HELLO:
        reader.end()
        return Hello()
    if kind != _Type.REQUEST:
        raise RemoteProtocolError(f"unknown message type 0x{kind:02X} from the companion")
    request = Request(
        command=_command(reader.uint(1)),
        nonce=reader.take(LIMITS.nonce_size),
        grant=reader.blob(),
        argument=reader.blob(),
        revocations=reader.blob(),
        proof=reader.blob(),
    )
    reader.end()
    return request


def _result_body(
    command: Command,
    code: ResultCode,
    request_nonce: bytes,
    next_nonce: bytes,
    lock_time: datetime,
    payload: bytes,
) -> bytes:
    return b"".join(
        (
            bytes([command, code]),
            request_nonce,
            next_nonce,
            _seconds(lock_time).to_bytes(8, "big", signed=True),
            _blob(payload),
        )
    )


def encode_result(
    key: ec.EllipticCurvePrivateKey,
    *,
    command: Command,
    code: ResultCode,
    request_nonce: bytes,
    next_nonce: bytes,
    lock_time: datetime,
    payload: bytes = b"",
) -> bytes:
    body = _result_body(command, code, request_nonce, next_nonce, lock_time, payload)
    return _envelope(_Type.RESULT, body + _blob(_sign(key, _RESULT_DOMAIN, body)))


def encode_malformed() -> bytes:
    return _envelope(_Type.MALFORMED, b"")


def decode_lock_message(message: bytes) -> Challenge | Result | Malformed:
    """Companion side: a reassembled envelope from the lock (signatures are not checked here)."""
    kind, body = _unwrap(message)
    reader = _Reader(body, "lock message")
    decoded: Challenge | Result | Malformed
    if kind == _Type.CHALLENGE:
        decoded = Challenge(
            nonce=reader.take(LIMITS.nonce_size),
            lock_time=_moment(reader.sint(8)),
            audit_last_sequence=reader.uint(4),
            revocation_version=reader.uint(4),
            certificate=reader.blob(),
        )
    elif kind == _Type.RESULT:
        command = _command(reader.uint(1))
        code = ResultCode(reader.uint(1))
        request_nonce = reader.take(LIMITS.nonce_size)
        next_nonce = reader.take(LIMITS.nonce_size)
        lock_time = _moment(reader.sint(8))
        payload = reader.blob()
        signed = body[: reader.position]
        decoded = Result(
            command, code, request_nonce, next_nonce, lock_time, payload, reader.blob(), signed
        )
    elif kind == _Type.MALFORMED:
        decoded = Malformed()
    else:
        raise RemoteProtocolError(f"unknown message type 0x{kind:02X} from the lock")
    reader.end()
    return decoded


def time_argument(moment: datetime) -> bytes:
    """UPDATE_TIME's argument: the new time, i64 big-endian Unix seconds."""
    return _seconds(moment).to_bytes(8, "big", signed=True)


def parse_time_argument(argument: bytes) -> datetime:
    reader = _Reader(argument, "time argument")
    moment = _moment(reader.sint(8))
    reader.end()
    return moment


# === the lock's acceptance rules ================================================================


@dataclass(frozen=True, slots=True)
class LockView:
    """What the lock knows when it judges a request."""

    locking_device_id: str
    lock_key_id: bytes
    platform_public_key: ec.EllipticCurvePublicKey
    now: datetime
    """The lock's own clock (drift included)."""
    expected_nonce: bytes | None
    """The nonce the lock issued last and that is still unused."""
    revoked: frozenset[str]
    time_floor: datetime
    """UPDATE_TIME never sets the clock before this (see the docs)."""


def check_request(request: Request, view: LockView) -> tuple[ResultCode, Grant | None]:
    """Apply :data:`REFUSAL_RULES` from the nonce on (the caller has decoded the message and
    installed any attached revocation list). Returns the first rule broken, and the grant once
    its signature held (for the audit entry)."""
    if view.expected_nonce is None or request.nonce != view.expected_nonce:
        return ResultCode.STALE_NONCE, None
    try:
        grant = verify_grant(request.grant, view.platform_public_key)
    except ProtocolError:
        return ResultCode.BAD_SIGNATURE, None
    if grant.locking_device_id != view.locking_device_id:
        return ResultCode.WRONG_LOCK, grant
    if grant.lock_key_id != view.lock_key_id:
        return ResultCode.WRONG_LOCK_KEY, grant
    payload = proof_payload(
        nonce=request.nonce,
        locking_device_id=view.locking_device_id,
        command=request.command,
        key_id=grant.key_id,
        argument=request.argument,
        revocations=request.revocations,
    )
    try:
        holder = load_public_key_bytes(grant.holder_public_key)
    except ProtocolError:
        return ResultCode.BAD_PROOF, grant
    if not _valid(holder, request.proof, _PROOF_DOMAIN, payload):
        return ResultCode.BAD_PROOF, grant
    if grant.key_id in view.revoked:
        return ResultCode.REVOKED, grant
    when = view.now
    if request.command is Command.UPDATE_TIME:
        # The lock's clock may be the very thing that is wrong: judge the grant at the time the
        # holder proposes (signed in the proof), which must itself lie in the grant's window.
        try:
            when = parse_time_argument(request.argument)
        except RemoteProtocolError:
            return ResultCode.MALFORMED, grant
    tolerance = timedelta(seconds=LIMITS.clock_tolerance_s)
    if when < grant.not_before - tolerance:
        return ResultCode.NOT_YET_VALID, grant
    if when > grant.not_after + tolerance:
        return ResultCode.EXPIRED, grant
    needed = _NEEDS[request.command]
    if needed is not None and needed not in grant.operations:
        return ResultCode.WRONG_OPERATION, grant
    if request.command is Command.UPDATE_TIME and when < view.time_floor:
        return ResultCode.TIME_REFUSED, grant
    return ResultCode.OK, grant


# === audit entries ==============================================================================

_AUDIT_DOMAIN = b"keyless-standin/audit/v1\x00"
_AUDIT_MAGIC = b"KLA1"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    sequence: int
    occurred_at: datetime
    operation: Command
    operating_device_id: str | None
    key_id: str | None
    """None when the grant could not be read (bad signature, stale nonce)."""
    result: ResultCode
    blob: bytes = field(default=b"", repr=False, compare=False)
    """The signed bytes, as the companion uploads them."""


def audit_entry_body(entry: AuditEntry, signer_key_id: bytes) -> bytes:
    def optional(value: str | None) -> bytes:
        return b"\x01" + _uuid_bytes(value) if value is not None else bytes(17)

    return b"".join(
        (
            _AUDIT_MAGIC,
            signer_key_id,
            entry.sequence.to_bytes(4, "big"),
            _seconds(entry.occurred_at).to_bytes(8, "big", signed=True),
            bytes([entry.operation, entry.result]),
            optional(entry.operating_device_id),
            optional(entry.key_id),
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
    operation = _command(reader.uint(1))
    result = ResultCode(reader.uint(1))
    values: list[str | None] = []
    for _ in range(2):
        present, raw = reader.uint(1), reader.take(16)
        values.append(_uuid_text(raw) if present else None)
    reader.end()
    return AuditEntry(sequence, occurred_at, operation, values[0], values[1], result, bytes(blob))


def encode_audit_page(blobs: Sequence[bytes], *, more: bool) -> bytes:
    return bytes([int(more), len(blobs)]) + b"".join(_blob(blob) for blob in blobs)


def decode_audit_page(payload: bytes) -> tuple[list[bytes], bool]:
    reader = _Reader(payload, "audit page")
    more = reader.uint(1)
    blobs = [reader.blob() for _ in range(reader.uint(1))]
    reader.end()
    if more not in (0, 1):
        raise RemoteProtocolError("audit page: bad 'more' flag")
    return blobs, bool(more)


# === advertising ================================================================================


@dataclass(frozen=True, slots=True)
class KeylessAdvert:
    locking_device_id: str
    name: str
    rekey_pending: bool
    low_battery: bool
    rssi: int | None


def local_name_for(locking_device_id: str) -> str:
    return f"KLS-{_uuid_bytes(locking_device_id)[:4].hex().upper()}"


def encode_advert(locking_device_id: str, *, rekey_pending: bool, low_battery: bool) -> bytes:
    """Manufacturer data under :data:`COMPANY_ID`: version, lockingDeviceId, flags."""
    flags = int(rekey_pending) | int(low_battery) << 1
    return bytes([ADVERT_VERSION]) + _uuid_bytes(locking_device_id) + bytes([flags])


def parse_keyless_advert(
    *,
    local_name: str | None,
    manufacturer_data: Mapping[int, bytes],
    service_uuids: Sequence[str] = (),
    rssi: int | None = None,
) -> KeylessAdvert | None:
    """A stand-in Keyless lock, or None for anything else (never raises)."""
    payload = manufacturer_data.get(COMPANY_ID)
    if payload is None or len(payload) != 18 or payload[0] != ADVERT_VERSION:
        return None
    lock_id = _uuid_text(bytes(payload[1:17]))
    name = local_name or ""
    match = _LOCAL_NAME.fullmatch(name)
    advertises_service = SERVICE_UUID in (u.lower() for u in service_uuids)
    if match is None and not advertises_service:
        return None
    if match is not None and match["short"] != payload[1:5].hex().upper():
        return None
    return KeylessAdvert(
        locking_device_id=lock_id,
        name=name,
        rekey_pending=bool(payload[17] & 1),
        low_battery=bool(payload[17] & 2),
        rssi=rssi,
    )


# === the companion's conversation ===============================================================


@dataclass(frozen=True, slots=True)
class Open:
    pass


@dataclass(frozen=True, slots=True)
class UpdateFirmware:
    pass


@dataclass(frozen=True, slots=True)
class SetTime:
    new_time: datetime


@dataclass(frozen=True, slots=True)
class CollectAudit:
    after_sequence: int
    """Collect every entry with a greater sequence (the last one uploaded)."""


@dataclass(frozen=True, slots=True)
class StartRekey:
    pass


@dataclass(frozen=True, slots=True)
class InstallCertificate:
    certificate: bytes


Step = Open | UpdateFirmware | SetTime | CollectAudit | StartRekey | InstallCertificate


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``data`` (one fragment) to :data:`WRITE_UUID`, without response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class AwaitNotification:
    """Wait (at most ``LIMITS.answer_timeout_s``) for one :data:`NOTIFY_UUID` notification and
    hand it to :meth:`KeylessConversation.receive`."""


Action = Write | AwaitNotification


@dataclass(frozen=True, slots=True)
class Identified:
    """The lock proved nothing yet, but its certificate chains to the pinned CA."""

    certificate: x509.Certificate
    lock_key_id: bytes
    lock_time: datetime
    audit_last_sequence: int
    revocation_version: int


@dataclass(frozen=True, slots=True)
class Opened:
    key_id: str


@dataclass(frozen=True, slots=True)
class FirmwareUpdateAccepted:
    key_id: str


@dataclass(frozen=True, slots=True)
class TimeSet:
    previous: datetime
    now: datetime


@dataclass(frozen=True, slots=True)
class AuditEntries:
    entries: tuple[AuditEntry, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class CsrReady:
    csr: bytes


@dataclass(frozen=True, slots=True)
class CertificateInstalled:
    certificate: x509.Certificate
    lock_key_id: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    command: Command
    reason: ResultCode


Event = (
    Identified
    | Opened
    | FirmwareUpdateAccepted
    | TimeSet
    | AuditEntries
    | CsrReady
    | CertificateInstalled
    | Refused
)


def _issued_at(cert_der: bytes) -> datetime:
    try:
        return x509.load_der_x509_certificate(bytes(cert_der)).not_valid_before_utc
    except ValueError:
        raise LocalProtocolError("an earlier certificate is not DER X.509") from None


def _step_command(step: Step) -> Command:
    if isinstance(step, Open):
        return Command.OPEN
    if isinstance(step, UpdateFirmware):
        return Command.UPDATE_FIRMWARE
    if isinstance(step, SetTime):
        return Command.UPDATE_TIME
    if isinstance(step, CollectAudit):
        return Command.READ_AUDIT
    if isinstance(step, StartRekey):
        return Command.START_REKEY
    return Command.INSTALL_CERTIFICATE


class KeylessConversation:
    """One connection's worth of requests, companion side, sans-I/O.

    ``next_action()`` says what to do (:class:`Write` a fragment, :class:`AwaitNotification`),
    or None when finished; ``receive(notification)`` returns the events a complete message
    produced (often none: a fragment). The conversation says HELLO, checks the lock's
    certificate against ``ca_cert`` (and its CN against ``locking_device_id``), picks the
    credential bound to the lock's current key (offline keys: primary or alternative), runs the
    steps in order (audit collection pages until the lock says no more), verifies every
    signed result, and stops at the first refusal. ``now`` is the companion's clock, used only
    to check the certificate's validity. ``earlier_certificates`` (DER, from the platform) let
    audit entries the lock signed with an earlier key generation verify.
    """

    def __init__(
        self,
        *,
        ca_cert: x509.Certificate,
        locking_device_id: str,
        credentials: Sequence[Credential],
        steps: Sequence[Step],
        now: datetime,
        revocations: bytes = b"",
        earlier_certificates: Sequence[bytes] = (),
    ) -> None:
        if not credentials:
            raise LocalProtocolError("a conversation needs at least one credential")
        platform_key = _cert_key(ca_cert)
        self._credentials: list[tuple[Credential, Grant]] = []
        for credential in credentials:
            try:
                grant = verify_grant(credential.grant, platform_key)
            except RemoteProtocolError as exc:
                raise LocalProtocolError(
                    f"a credential's grant is unusable: {exc.message}"
                ) from None
            self._credentials.append((credential, grant))
        self._ca = ca_cert
        self._lock_id = locking_device_id
        self._steps = list(steps)
        self._now = now
        self._revocations = revocations
        self._reassembler = Reassembler()
        self._outgoing: list[bytes] = fragment(encode_hello())
        self._awaiting = False
        self._done = False
        self._nonce: bytes | None = None
        self._cert: x509.Certificate | None = None
        # Audit entries signed before a re-keying verify with the lock's earlier certificates.
        self._certs: list[x509.Certificate] = [
            verify_lock_certificate(der, ca_cert, at=_issued_at(der))
            for der in earlier_certificates
        ]
        self._chosen: tuple[Credential, Grant] | None = None
        self._pending: tuple[Command, bytes] | None = None
        self._audit_after = 0
        self.events: list[Event] = []

    @property
    def done(self) -> bool:
        return self._done

    @property
    def certificate(self) -> x509.Certificate | None:
        return self._cert

    def next_action(self) -> Action | None:
        if self._done:
            return None
        if self._outgoing:
            return Write(self._outgoing.pop(0))
        self._awaiting = True
        return AwaitNotification()

    def receive(self, notification: bytes) -> list[Event]:
        if not self._awaiting or self._done:
            raise RemoteProtocolError("the lock notified while nothing was asked")
        try:
            message = self._reassembler.feed(notification)
            if message is None:
                return []
            self._awaiting = False
            events = self._handle(decode_lock_message(message))
        except ProtocolError:
            self._done = True
            raise
        self.events.extend(events)
        return events

    def _handle(self, message: Challenge | Result | Malformed) -> list[Event]:
        if isinstance(message, Malformed):
            raise RemoteProtocolError("the lock could not decode our message")
        if isinstance(message, Challenge):
            return self._on_challenge(message)
        return self._on_result(message)

    def _on_challenge(self, challenge: Challenge) -> list[Event]:
        if self._cert is not None:
            raise RemoteProtocolError("the lock sent a second challenge")
        cert = verify_lock_certificate(challenge.certificate, self._ca, at=self._now)
        if certificate_lock_id(cert) != self._lock_id:
            raise RemoteProtocolError("the lock's certificate names another locking device")
        self._cert = cert
        self._certs.append(cert)
        self._nonce = challenge.nonce
        lock_key_id = key_id_of(_cert_key(cert))
        matching = [pair for pair in self._credentials if pair[1].lock_key_id == lock_key_id]
        # None bound to this key: send the first anyway, so that the lock refuses and logs it.
        self._chosen = (matching or self._credentials)[0]
        event = Identified(
            cert,
            lock_key_id,
            challenge.lock_time,
            challenge.audit_last_sequence,
            challenge.revocation_version,
        )
        self._send_next_step()
        return [event]

    def _send_next_step(self) -> None:
        if not self._steps:
            self._done = True
            return
        step = self._steps[0]
        command = _step_command(step)
        argument = b""
        if isinstance(step, SetTime):
            argument = time_argument(step.new_time)
        elif isinstance(step, CollectAudit):
            self._audit_after = max(self._audit_after, step.after_sequence)
            argument = self._audit_after.to_bytes(4, "big")
        elif isinstance(step, InstallCertificate):
            argument = step.certificate
        self._send(command, argument)

    def _send(self, command: Command, argument: bytes) -> None:
        assert self._chosen is not None and self._nonce is not None
        credential, grant = self._chosen
        message = encode_request(
            credential,
            grant,
            command=command,
            nonce=self._nonce,
            argument=argument,
            revocations=self._revocations,
        )
        self._revocations = b""  # the lock has it now (or refused it, and will again)
        self._pending = (command, argument)
        self._outgoing = fragment(message)

    def _on_result(self, result: Result) -> list[Event]:
        if self._pending is None or self._cert is None or self._chosen is None:
            raise RemoteProtocolError("the lock sent a result to no request")
        command, argument = self._pending
        if result.command is not command or result.request_nonce != self._nonce:
            raise RemoteProtocolError("the lock's result answers another request")
        signer = self._cert
        if command is Command.INSTALL_CERTIFICATE and result.code is ResultCode.OK:
            signer = verify_lock_certificate(argument, self._ca, at=self._now)
        if not _valid(_cert_key(signer), result.signature, _RESULT_DOMAIN, result.signed):
            raise RemoteProtocolError("the lock's result is not signed by its certified key")
        self._pending = None
        self._nonce = result.next_nonce
        if result.code is not ResultCode.OK:
            self._done = True
            return [Refused(command, result.code)]
        key_id = self._chosen[1].key_id
        events: list[Event]
        finished_step = True
        if command is Command.OPEN:
            events = [Opened(key_id)]
        elif command is Command.UPDATE_FIRMWARE:
            events = [FirmwareUpdateAccepted(key_id)]
        elif command is Command.UPDATE_TIME:
            previous = parse_time_argument(result.payload)
            events = [TimeSet(previous, result.lock_time)]
        elif command is Command.READ_AUDIT:
            blobs, more = decode_audit_page(result.payload)
            entries = tuple(verify_audit_entry(blob, self._certs) for blob in blobs)
            for entry in entries:
                # Gaps are legitimate only past the lock's capacity; duplicates never are.
                if entry.sequence <= self._audit_after:
                    raise RemoteProtocolError("the lock repeated or reordered audit entries")
                self._audit_after = entry.sequence
            if more and not entries:
                raise RemoteProtocolError("the lock said 'more' with an empty audit page")
            events = [AuditEntries(entries, more)]
            finished_step = not more
        elif command is Command.START_REKEY:
            events = [CsrReady(result.payload)]
        else:
            events = [CertificateInstalled(signer, key_id_of(_cert_key(signer)))]
            self._cert = signer
            self._certs.append(signer)
            new_key_id = key_id_of(_cert_key(signer))
            matching = [pair for pair in self._credentials if pair[1].lock_key_id == new_key_id]
            self._chosen = (matching or [self._chosen])[0]
        if finished_step:
            self._steps.pop(0)
            self._send_next_step()
        else:
            self._send(Command.READ_AUDIT, self._audit_after.to_bytes(4, "big"))
        return events
