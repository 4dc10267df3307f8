"""The Keyless stand-in lock's acceptance rules: :data:`REFUSAL_RULES` (in order) and
:func:`check_request`, which applies them to a decoded request given what the lock knows
(:class:`LockView`). The lock's state lives in ``simulators.keyless_lock``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec

from blelock.errors import ProtocolError, RemoteProtocolError
from blelock.vendors.keyless.protocol._codes import Command, ResultCode
from blelock.vendors.keyless.protocol._credentials import (
    Grant,
    Operation,
    _valid,
    load_public_key_bytes,
    verify_grant,
    verify_time_statement,
)
from blelock.vendors.keyless.protocol._limits import LIMITS
from blelock.vendors.keyless.protocol._wire import (
    _PROOF_DOMAIN,
    Request,
    parse_time_update,
    proof_payload,
)

# === the lock's acceptance rules ================================================================

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
    (
        "UPDATE_TIME: the grant is valid longer than time_grant_validity_s",
        ResultCode.WRONG_OPERATION,
    ),
    (
        "UPDATE_TIME: the new time is more than the tolerance before the lock's floor (its own "
        "time at the last accepted request), and no platform time statement for this nonce "
        "within the tolerance of it comes with it",
        ResultCode.TIME_REFUSED,
    ),
    ("INSTALL_CERTIFICATE: no re-keying is pending", ResultCode.NO_PENDING_KEY),
    (
        "INSTALL_CERTIFICATE: not the pending key, or not from the CA",
        ResultCode.CERTIFICATE_MISMATCH,
    ),
)
"""The lock's acceptance rules, in the order it checks them (validity uses the tolerance)."""


_NEEDS: dict[Command, Operation | None] = {
    Command.OPEN: Operation.OPEN,
    Command.UPDATE_FIRMWARE: Operation.UPDATE_FIRMWARE,
    Command.UPDATE_TIME: Operation.UPDATE_TIME,
    Command.READ_AUDIT: None,
    Command.START_REKEY: None,
    Command.INSTALL_CERTIFICATE: None,
}
"""Maintenance commands need any grant that passes every other check."""


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
    """The lock's own time at the last request it accepted: UPDATE_TIME goes back more than the
    tolerance below it only with a platform time statement (see the docs)."""


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
    statement = b""
    if request.command is Command.UPDATE_TIME:
        # The lock's clock may be the very thing that is wrong: judge the grant at the time the
        # holder proposes (signed in the proof), which must itself lie in the grant's window.
        try:
            when, statement = parse_time_update(request.argument)
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
    if request.command is Command.UPDATE_TIME:
        window = (grant.not_after - grant.not_before).total_seconds()
        if window > LIMITS.time_grant_validity_s:
            return ResultCode.WRONG_OPERATION, grant
        if when < view.time_floor - tolerance and not _vouched(statement, request, view, when):
            return ResultCode.TIME_REFUSED, grant
    return ResultCode.OK, grant


def _vouched(statement: bytes, request: Request, view: LockView, when: datetime) -> bool:
    """A platform time statement for this lock and this very nonce, within the tolerance of the
    time the holder proposes."""
    if not statement:
        return False
    try:
        said = verify_time_statement(statement, view.platform_public_key)
    except ProtocolError:
        return False
    tolerance = timedelta(seconds=LIMITS.clock_tolerance_s)
    return (
        said.locking_device_id == view.locking_device_id
        and said.nonce == request.nonce
        and abs(said.time - when) <= tolerance
    )
