"""The Administration API v2 handlers (the vendor's public API): login, users, operating-device
invitations and devices, locking devices and their logs, permissions, offline keys, and the
testing re-key. Gateway devices are in :mod:`simulators.keyless_cloud.gateways`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.responses import Response

from blelock.vendors.keyless import protocol as kp
from simulators.keyless_cloud._http import (
    Call,
    CreateLockingDeviceBody,
    CreateUserBody,
    Handler,
    InvitationBody,
    InvitationDelivery,
    InvitationFormat,
    LoginBody,
    OfflineKeyBody,
    OfflineKeyDelivery,
    PermissionBody,
    PermissionType,
    Problem,
    _check_phone,
    _duration,
    _find,
    _lock_json,
    _log_filters,
    _log_json,
    _new_session,
    _no_content,
    _offline_key_json,
    _ok,
    _page,
    _parse,
    _permission_json,
    _user_json,
    _uuid,
)
from simulators.keyless_cloud.state import (
    APP_LINK_BASE_URL_DEFAULT,
    APP_LINK_BASE_URL_MAX,
    INVITATION_VALIDITY_DEFAULT,
    INVITATION_VALIDITY_MAX,
    LOCKING_DEVICE_NAME_MAX,
    LOCKING_DEVICE_NAME_MIN,
    OFFLINE_KEY_MAX_DURATION,
    OFFLINE_KEY_MAX_START_AHEAD,
    OPERATING_KEY_VALIDITY_DEFAULT,
    OPERATING_KEY_VALIDITY_MAX,
    OPERATING_KEY_VALIDITY_MIN,
    TOKEN_LIFETIME,
    Invitation,
    InvitationStatus,
    KeylessPlatformState,
    LockCertificate,
    LockingDevice,
    OfflineKey,
    OfflineKeyValue,
    Permission,
    SentSms,
    _b64,
    _iso,
    _whole_seconds,
)

# --- Administration API handlers ------------------------------------------------------------


async def login(call: Call) -> Response:
    body = _parse(LoginBody, await call.body())
    user_id = _uuid(body.user_id, "userId")
    user = call.state.users.get(user_id)
    if user is None or not hmac.compare_digest(user.access_key.encode(), body.access_key.encode()):
        raise Problem(401, "userId and accessKey do not match a user's API credentials")
    return _ok({"token": _new_session(call.state, "admin", user.id, TOKEN_LIFETIME)})


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


async def initiate_re_key(call: Call) -> Response:
    if not call.state.testing_endpoints:
        raise Problem(403, "This action is not available in this environment.")
    lock = _find(call.state.locking_devices, call.path_id("locking_device_id"), "locking device")
    if not lock.claimed:
        raise Problem(409, "the locking device is not claimed: it has no certificate to re-key")
    lock.re_keying_forced = True
    return _no_content()
