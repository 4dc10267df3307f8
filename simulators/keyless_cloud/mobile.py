"""The operating-device side: a stand-in, NOT the vendor's Mobile API (which is not public).
The package docstring (:mod:`simulators.keyless_cloud`) lists what it answers.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.responses import Response

from blelock.errors import ProtocolError
from blelock.vendors.keyless import protocol as kp
from simulators.keyless_cloud._http import (
    ActivationBody,
    Call,
    CsrBody,
    EntriesBody,
    MobileLoginBody,
    Problem,
    TimeStatementBody,
    _find,
    _mobile_ok,
    _new_session,
    _parse,
    _uuid,
)
from simulators.keyless_cloud.state import (
    MOBILE_TOKEN_LIFETIME,
    InvitationStatus,
    IssuedOperatingKey,
    KeylessPlatformState,
    LockingDevice,
    LogEntry,
    OfflineKeyValue,
    OperatingDevice,
    Role,
    Submission,
    _access_key,
    _b64,
    _iso,
    _whole_seconds,
)

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
        not_before = _whole_seconds(permission.start)
        if permission.operation_type == kp.Operation.UPDATE_TIME:
            # A time key is good from now for minutes: an old one cannot wind a clock back.
            not_before = now
            not_after = min(not_after, now + dt.timedelta(seconds=kp.LIMITS.time_grant_validity_s))
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
                not_before=not_before,
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
    device = call.operating_device()
    lock = _find(call.state.locking_devices, call.path_id("locking_device_id"), "locking device")
    if not lock.claimed:
        raise Problem(409, "the locking device is not claimed: it has no certificate yet")
    if not _has_standing(call.state, device, lock.id):
        raise Problem(403, "only holders of a permission or offline key on the lock submit for it")
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
    """The entry, verified against one of the lock's certificates. Only the lock's own signed
    INSTALL_CERTIFICATE-OK entry, signed by the key of the pending certificate, completes a
    re-keying: nothing an uploader holds can promote a key."""
    for cert in lock.certificates():
        try:
            entry = kp.verify_audit_entry(blob, x509.load_der_x509_certificate(cert.der))
        except ProtocolError:
            continue
        installed = (
            entry.operation is kp.Command.INSTALL_CERTIFICATE and entry.result is kp.ResultCode.OK
        )
        if cert is lock.pending_certificate and installed:
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


async def _submit_log(call: Call, audit: bool) -> Response:
    """Store the verified entries of one upload in the audit or the system log; an entry the log
    already holds (same lock and sequence number) counts as a duplicate and is left as it is."""
    lock = _submitted_lock(call)
    blobs = _decode_entries(_parse(EntriesBody, await call.body()))
    state = call.state
    entries = [_verified(state, lock, blob, index) for index, blob in enumerate(blobs)]
    log = state.audit_log if audit else state.system_log
    accepted = duplicates = 0
    for blob, entry in zip(blobs, entries, strict=True):
        key = (lock.id, entry.sequence)
        duplicate = key in log
        state.submissions.append(
            Submission(lock.id, "audit" if audit else "system", entry.sequence, duplicate)
        )
        if duplicate:
            duplicates += 1
            continue
        accepted += 1
        log[key] = LogEntry(
            id=state.new_id(),
            locking_device_id=lock.id,
            event_name=(entry.operation.name if entry.operation else entry.kind.name).lower(),
            occurred_at=entry.occurred_at,
            sequence_number=entry.sequence,
            client=_client_of(state, entry.operating_device_id, entry.key_id) if audit else None,
            granted=entry.result is kp.ResultCode.OK if audit else None,
            blob=blob,
        )
    gaps = _gaps(log, lock.id)
    if audit:
        state.audit_gaps[lock.id] = gaps
    return _mobile_ok(
        {"accepted": accepted, "duplicates": duplicates, "gaps": [list(gap) for gap in gaps]}
    )


def _gaps(log: dict[tuple[str, int], LogEntry], lock_id: str) -> list[tuple[int, int]]:
    """Every run of sequence numbers below the highest one held that the log lacks: reported
    to the uploader and kept for the administrator, never passed over in silence."""
    held = sorted(sequence for lock, sequence in log if lock == lock_id)
    gaps, expected = [], 1
    for sequence in held:
        if sequence > expected:
            gaps.append((expected, sequence - 1))
        expected = max(expected, sequence + 1)
    return gaps


async def mobile_audit_log(call: Call) -> Response:
    return await _submit_log(call, audit=True)


async def mobile_system_log(call: Call) -> Response:
    return await _submit_log(call, audit=False)


def _has_permission(state: KeylessPlatformState, device: OperatingDevice, lock_id: str) -> bool:
    """A permission of the device's user on that lock that is in force now."""
    now = state.now()
    return any(
        p.user_id == device.user_id and p.locking_device_id == lock_id and p.start <= now < p.end
        for p in state.permissions.values()
    )


def _has_standing(state: KeylessPlatformState, device: OperatingDevice, lock_id: str) -> bool:
    """Whether the device may hand in that lock's logs: its user holds (or held, within the
    retention) a permission on it, or the device holds an offline key for it."""
    return any(
        p.user_id == device.user_id and p.locking_device_id == lock_id
        for p in state.permissions.values()
    ) or any(
        k.operating_device_id == device.id and k.locking_device_id == lock_id
        for k in state.offline_keys.values()
    )


async def mobile_csr(call: Call) -> Response:
    """A re-keying request: the CSR of the lock's pending key, endorsed by its *current* key
    (checked against the certificate the platform holds as current). A user's device may start
    a re-keying or repeat the pending one; replacing a pending one needs an administrator."""
    device = call.operating_device()
    lock = _submitted_lock(call)
    state = call.state
    if not _has_permission(state, device, lock.id):
        raise Problem(
            403,
            "certificate updates need a permission on the locking device (offline keys do not "
            "allow them)",
        )
    body = _parse(CsrBody, await call.body())
    try:
        csr_der = base64.b64decode(body.csr, validate=True)
        endorsement = base64.b64decode(body.endorsement, validate=True)
        x509.load_der_x509_csr(csr_der)
    except (binascii.Error, ValueError):
        raise Problem(400, "csr must be base64 of a DER PKCS#10 request") from None
    assert lock.certificate is not None  # claimed
    try:
        csr = kp.verify_csr_endorsement(
            csr_der,
            endorsement,
            locking_device_id=lock.id,
            current=x509.load_der_x509_certificate(lock.certificate.der),
        )
    except ProtocolError as exc:
        if "CN" in exc.message:
            raise Problem(400, "csr: the subject CN must be the lockingDeviceId") from None
        raise Problem(400, f"csr: {exc.message}") from None
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    pending = lock.pending_certificate
    if pending is not None and pending.lock_key_id == kp.key_id_of(public_key):
        return _mobile_ok({}, 202)  # the same request again: nothing changes
    user = state.users.get(device.user_id)
    if pending is not None and (user is None or user.role is not Role.ADMIN):
        raise Problem(
            409,
            "a re-keying is already pending for this locking device; replacing it needs an "
            "administrator",
        )
    try:
        lock.pending_certificate = state.certify(csr_der)
    except (ProtocolError, ValueError):
        raise Problem(400, "csr: the request's signature does not verify") from None
    return _mobile_ok({}, 202)


async def mobile_certificate(call: Call) -> Response:
    device = call.operating_device()
    lock = _find(call.state.locking_devices, call.path_id("locking_device_id"), "locking device")
    if not _has_standing(call.state, device, lock.id):
        raise Problem(403, "certificates are given only to holders of a permission on the lock")
    if lock.pending_certificate is None:
        raise Problem(404, "no certificate is pending for this locking device")
    return _mobile_ok({"certificate": _b64(lock.pending_certificate.der)})


async def mobile_time_statement(call: Call) -> Response:
    """The platform's time, signed for the lock that issued ``nonce``: lets an UPDATE_TIME
    holder set a lock back more than the tolerance (a lock whose clock ran fast)."""
    device = call.operating_device()
    lock = _submitted_lock(call)
    state = call.state
    if not any(
        p.user_id == device.user_id
        and p.locking_device_id == lock.id
        and p.operation_type == kp.Operation.UPDATE_TIME
        and p.start <= call.now < p.end
        for p in state.permissions.values()
    ):
        raise Problem(403, "a time statement needs an UPDATE_TIME permission on the lock")
    body = _parse(TimeStatementBody, await call.body())
    try:
        nonce = base64.b64decode(body.nonce, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(400, "nonce must be base64") from None
    if len(nonce) != kp.LIMITS.nonce_size:
        raise Problem(400, f"nonce must be {kp.LIMITS.nonce_size} bytes")
    statement = kp.TimeStatement(lock.id, nonce, _whole_seconds(call.now))
    return _mobile_ok({"statement": _b64(kp.sign_time_statement(statement, state.platform_key))})
