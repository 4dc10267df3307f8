"""What goes over GATT in the Keyless stand-in: framing (20-byte fragments of one envelope,
:class:`Reassembler`), the message envelope, and the messages both roles encode and decode
(HELLO, challenge, request and its proof, signed result, malformed; the UPDATE_TIME argument
and READ_AUDIT pages).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec

from blelock.errors import LocalProtocolError, RemoteProtocolError
from blelock.vendors.keyless.protocol._codes import Command, ResultCode, _command
from blelock.vendors.keyless.protocol._credentials import Credential, Grant, _sign
from blelock.vendors.keyless.protocol._fields import _blob, _moment, _Reader, _seconds, _uuid_bytes
from blelock.vendors.keyless.protocol._limits import LIMITS

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


def time_argument(moment: datetime, statement: bytes = b"") -> bytes:
    """UPDATE_TIME's argument: the new time, i64 big-endian Unix seconds, then (to go back more
    than the tolerance) the platform's signed time statement as u16 + blob. Also the answer's
    payload (the previous time, no statement)."""
    head = _seconds(moment).to_bytes(8, "big", signed=True)
    return head + _blob(statement) if statement else head


def parse_time_update(argument: bytes) -> tuple[datetime, bytes]:
    """(new time, time statement or b"") from UPDATE_TIME's argument."""
    reader = _Reader(argument, "time argument")
    moment = _moment(reader.sint(8))
    statement = reader.blob() if len(argument) > 8 else b""
    reader.end()
    return moment, statement


def parse_time_argument(argument: bytes) -> datetime:
    reader = _Reader(argument, "time argument")
    moment = _moment(reader.sint(8))
    reader.end()
    return moment


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


def encode_rekey_payload(csr: bytes, endorsement: bytes) -> bytes:
    """START_REKEY's answer: the pending key's CSR and the current key's endorsement of it."""
    return _blob(csr) + _blob(endorsement)


def decode_rekey_payload(payload: bytes) -> tuple[bytes, bytes]:
    """(CSR DER, endorsement) from START_REKEY's answer or a kept re-keying request."""
    reader = _Reader(payload, "re-keying request")
    csr, endorsement = reader.blob(), reader.blob()
    reader.end()
    return csr, endorsement
