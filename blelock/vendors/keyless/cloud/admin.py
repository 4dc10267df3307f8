"""The ASSA ABLOY Keyless Administration API v2 client, as one administrator of one system
(the authentication and errors: :mod:`blelock.vendors.keyless.cloud`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import httpx
from pydantic import SecretStr

from blelock.clock import Clock, SystemClock
from blelock.cloud._http import RetryPolicy
from blelock.config import Settings, Timeouts
from blelock.errors import ConfigError
from blelock.vendors.keyless.cloud._client import (
    _JSON_PATCH,
    _LOGS,
    PATHS,
    _KeylessClient,
    _log_query,
    _resource,
    _root,
    _secret,
)
from blelock.vendors.keyless.cloud._problems import _ModelT
from blelock.vendors.keyless.cloud.auth import KeylessAuth
from blelock.vendors.keyless.models import (
    AssociationRequest,
    ClaimGatewayRequest,
    ClaimingStatus,
    CreatedId,
    CreatedUser,
    CreateLockingDeviceRequest,
    CreateUserRequest,
    GatewayAssociation,
    GatewayAuditLogEntry,
    GatewayDevice,
    GatewaySystemLogEntry,
    InvitationDelivery,
    InvitationFormat,
    InvitationRequest,
    IssuedOfflineKey,
    KeylessLimits,
    LockingDevice,
    LockingDeviceAuditLogEntry,
    LockingDeviceSystemLogEntry,
    OfflineKeyDelivery,
    OfflineKeyMetadata,
    OfflineKeyRequest,
    OperatingDevice,
    OperatingDeviceInvitation,
    OperationType,
    Permission,
    PermissionRequest,
    RemoteCommand,
    RemoteCommandAction,
    RemoteCommandRequest,
    Role,
    SortDirection,
    User,
    check_association_room,
    check_choice,
    check_claiming_code,
    check_id,
    check_invitation_validity,
    check_locking_device_name,
    check_offline_key,
    check_page_limit,
    check_permission,
    check_phone_number,
)
from blelock.vendors.keyless.settings import keyless_settings

__all__ = ["KeylessCloud"]


class KeylessCloud(_KeylessClient):
    """The Keyless Administration API v2 of one system, as one administrator.

    Use as ``async with KeylessCloud(url, api_key, user_id, access_key) as cloud:``. List
    methods return async iterators that fetch the next page only when the last one is used up.
    """

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | str,
        user_id: str,
        access_key: SecretStr | str,
        *,
        timeouts: Timeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        clock = clock or SystemClock()
        root = _root(base_url)
        auth = KeylessAuth(
            root + PATHS["login"],
            principal_field="userId",
            principal_id=check_id(str(user_id), "login: userId"),
            access_key=_secret(access_key, "access key"),
            api_key=_secret(api_key, "API key"),
            clock=clock,
        )
        super().__init__(
            root, auth, timeouts=timeouts, transport=transport, retry=retry, clock=clock
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> KeylessCloud:
        """The configured system, or a ConfigError naming the missing setting."""
        section = keyless_settings(settings)
        missing = [
            name for name in ("api_key", "user_id", "access_key") if getattr(section, name) is None
        ]
        if missing:
            raise ConfigError(
                f"the Keyless platform needs {', '.join(missing)} in [keyless], and it is not "
                "configured",
                hint="set them in the config file's [keyless] section or as BLELOCK_KEYLESS__"
                + " / BLELOCK_KEYLESS__".join(name.upper() for name in missing),
            )
        assert section.api_key is not None and section.access_key is not None
        return cls(
            section.url,
            section.api_key,
            str(section.user_id),
            section.access_key,
            timeouts=settings.timeouts,
            retry=retry,
            clock=clock,
        )

    # --- the shapes most resources share ----------------------------------------------

    async def _get_one(
        self,
        model: type[_ModelT],
        path_key: str,
        identifier: str,
        noun: str,
        *,
        label: str | None = None,
        lock: bool = False,
    ) -> _ModelT:
        path, what, lock_id = _resource(path_key, identifier, noun, label, lock)
        return await self._fetch(model, "GET", path, what=what, lock_id=lock_id)

    async def _delete_one(
        self,
        path_key: str,
        identifier: str,
        noun: str,
        *,
        label: str | None = None,
        lock: bool = False,
    ) -> None:
        path, what, lock_id = _resource(path_key, identifier, noun, label, lock)
        await self._call("DELETE", path, what=what, lock_id=lock_id)

    def _list(
        self,
        model: type[_ModelT],
        path_key: str,
        what: str,
        limit: int,
        *,
        param: str | None = None,
        value: str | None = None,
        label: str | None = None,
    ) -> AsyncIterator[_ModelT]:
        """The pages of ``PATHS[path_key]``, optionally filtered by the id ``value`` in the query
        parameter ``param`` (a malformed id is refused under ``label``, default ``param``).
        The limit is checked before the id."""
        check_page_limit(limit)
        params: dict[str, str | int | None] = {}
        if param is not None:
            params[param] = None if value is None else check_id(value, label or param)
        return self._pages(model, PATHS[path_key], what=what, limit=limit, params=params)

    def _log_pages(
        self,
        model: type[_ModelT],
        path_key: str,
        identifier: str,
        sequence_number_greater_than: int | None,
        after: dt.datetime | None,
        sort: SortDirection,
        limit: int,
    ) -> AsyncIterator[_ModelT]:
        """A log of :data:`_LOGS`; the owner's id is checked before the limit; a locking
        device's 404 is an UnknownLock."""
        kind, owner, param = _LOGS[path_key]
        checked = check_id(identifier, f"{kind}: {param}")
        check_page_limit(limit)
        query = _log_query(sequence_number_greater_than, after, sort)
        return self._pages(
            model,
            PATHS[path_key],
            what=f"the {kind} of {owner} {checked}",
            limit=limit,
            params={param: checked, **query},
            lock_id=checked if owner == "locking device" else None,
        )

    # --- users --------------------------------------------------------------------------

    def users(self, *, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT) -> AsyncIterator[User]:
        return self._list(User, "user", "the users", limit)

    async def create_user(self, role: Role) -> CreatedUser:
        """A new user; its access key is in the answer, and only there."""
        body = CreateUserRequest(role=check_choice(Role, role, "user: role")).body()
        return await self._fetch(CreatedUser, "POST", PATHS["user"], what="a new user", body=body)

    async def get_user(self, user_id: str) -> User:
        return await self._get_one(User, "user", user_id, "user")

    async def delete_user(self, user_id: str) -> None:
        """Also removes the user's permissions and operating devices (vendor doc)."""
        await self._delete_one("user", user_id, "user")

    # --- operating devices and invitations -----------------------------------------------

    async def invite_operating_device(
        self,
        user_id: str,
        *,
        delivery: InvitationDelivery = InvitationDelivery.NONE,
        phone_number: str | None = None,
        validity: dt.timedelta | None = None,
        format: InvitationFormat | None = None,
    ) -> OperatingDeviceInvitation:
        """An invitation (default validity 24 h); ``NONE`` delivery leaves delivering it to us."""
        user_id = check_id(user_id, "invitation: userId")
        delivery = check_choice(InvitationDelivery, delivery, "invitation: deliveryMechanism")
        check_invitation_validity(validity)
        check_phone_number(phone_number, "invitation", required=delivery is InvitationDelivery.SMS)
        body = InvitationRequest(
            user_id=user_id,
            validity_duration=validity,
            delivery_mechanism=delivery,
            phone_number=phone_number,
            format=None
            if format is None
            else check_choice(InvitationFormat, format, "invitation: format"),
        ).body()
        return await self._fetch(
            OperatingDeviceInvitation,
            "POST",
            PATHS["invitation"],
            what=f"an operating device invitation for user {user_id}",
            body=body,
        )

    async def revoke_invitation(self, invitation_id: str) -> None:
        await self._delete_one(
            "invitation", invitation_id, "operating device invitation", label="invitation"
        )

    def operating_devices(
        self, *, user_id: str | None = None, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[OperatingDevice]:
        return self._list(
            OperatingDevice,
            "operating-device",
            "the operating devices",
            limit,
            param="user-id",
            value=user_id,
            label="operating devices: user-id",
        )

    async def delete_operating_device(self, operating_device_id: str) -> None:
        await self._delete_one("operating-device", operating_device_id, "operating device")

    # --- locking devices -----------------------------------------------------------------

    def locking_devices(
        self,
        *,
        claiming_status: ClaimingStatus | None = None,
        serial_number: str | None = None,
        limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT,
    ) -> AsyncIterator[LockingDevice]:
        check_page_limit(limit)
        status = (
            None
            if claiming_status is None
            else check_choice(
                ClaimingStatus, claiming_status, "locking devices: claiming-status"
            ).value
        )
        return self._pages(
            LockingDevice,
            PATHS["locking-device"],
            what="the locking devices",
            limit=limit,
            params={"claiming-status": status, "serial-number": serial_number},
        )

    async def create_locking_device(self, name: str) -> LockingDevice:
        """An unclaimed placeholder that a physical lock claims later (via an operating device)."""
        body = CreateLockingDeviceRequest(name=check_locking_device_name(name)).body()
        return await self._fetch(
            LockingDevice, "POST", PATHS["locking-device"], what="a new locking device", body=body
        )

    async def get_locking_device(self, locking_device_id: str) -> LockingDevice:
        return await self._get_one(
            LockingDevice, "locking-device", locking_device_id, "locking device", lock=True
        )

    async def rename_locking_device(self, locking_device_id: str, name: str) -> None:
        """JSON Patch ``replace /name``: the only change the API allows."""
        path, what, lock = _resource(
            "locking-device", locking_device_id, "locking device", lock=True
        )
        patch = [{"op": "replace", "path": "/name", "value": check_locking_device_name(name)}]
        await self._call(
            "PATCH", path, what=what, body=patch, content_type=_JSON_PATCH, lock_id=lock
        )

    async def delete_locking_device(self, locking_device_id: str) -> None:
        """Destructive for a claimed lock: it cannot be claimed again (vendor doc)."""
        await self._delete_one("locking-device", locking_device_id, "locking device", lock=True)

    def locking_device_system_log(
        self,
        locking_device_id: str,
        *,
        sequence_number_greater_than: int | None = None,
        after: dt.datetime | None = None,
        sort: SortDirection = SortDirection.ASC,
        limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT,
    ) -> AsyncIterator[LockingDeviceSystemLogEntry]:
        return self._log_pages(
            LockingDeviceSystemLogEntry,
            "locking-device-system-log",
            locking_device_id,
            sequence_number_greater_than,
            after,
            sort,
            limit,
        )

    def locking_device_audit_log(
        self,
        locking_device_id: str,
        *,
        sequence_number_greater_than: int | None = None,
        after: dt.datetime | None = None,
        sort: SortDirection = SortDirection.ASC,
        limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT,
    ) -> AsyncIterator[LockingDeviceAuditLogEntry]:
        return self._log_pages(
            LockingDeviceAuditLogEntry,
            "locking-device-audit-log",
            locking_device_id,
            sequence_number_greater_than,
            after,
            sort,
            limit,
        )

    # --- permissions ---------------------------------------------------------------------

    def _permission_body(
        self,
        user_id: str,
        locking_device_id: str,
        operation: OperationType,
        start: dt.datetime,
        end: dt.datetime,
        operating_key_validity: dt.timedelta,
    ) -> dict[str, object]:
        check_permission(start, end, operating_key_validity)
        return PermissionRequest(
            user_id=check_id(user_id, "permission: userId"),
            locking_device_id=check_id(locking_device_id, "permission: lockingDeviceId"),
            operation_type=check_choice(OperationType, operation, "permission: operationType"),
            operating_key_validity_duration=operating_key_validity,
            start=start,
            end=end,
        ).body()

    async def grant_permission(
        self,
        user_id: str,
        locking_device_id: str,
        operation: OperationType,
        start: dt.datetime,
        end: dt.datetime,
        *,
        operating_key_validity: dt.timedelta = KeylessLimits.OPERATING_KEY_VALIDITY_DEFAULT,
    ) -> str:
        """A SINGLE_INTERVAL permission from ``start`` to ``end``; returns its id.

        ``operating_key_validity`` (a timedelta, 1 to 31 days) bounds how long an operating key
        downloaded under it stays usable offline."""
        body = self._permission_body(
            user_id, locking_device_id, operation, start, end, operating_key_validity
        )
        created = await self._fetch(
            CreatedId, "POST", PATHS["permission"], what="a new permission", body=body
        )
        return created.id

    def permissions(
        self, *, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[Permission]:
        return self._list(Permission, "permission", "the permissions", limit)

    async def get_permission(self, permission_id: str) -> Permission:
        return await self._get_one(Permission, "permission", permission_id, "permission")

    async def update_permission(
        self,
        permission_id: str,
        user_id: str,
        locking_device_id: str,
        operation: OperationType,
        start: dt.datetime,
        end: dt.datetime,
        *,
        operating_key_validity: dt.timedelta = KeylessLimits.OPERATING_KEY_VALIDITY_DEFAULT,
    ) -> None:
        """Replaces every field; the permission keeps its id."""
        path, what, _ = _resource("permission", permission_id, "permission")
        body = self._permission_body(
            user_id, locking_device_id, operation, start, end, operating_key_validity
        )
        await self._call("PUT", path, what=what, body=body)

    async def revoke_permission(self, permission_id: str) -> None:
        """Operating keys already downloaded stay valid until they expire (vendor doc)."""
        await self._delete_one("permission", permission_id, "permission")

    # --- offline keys --------------------------------------------------------------------

    async def issue_offline_key(
        self,
        operating_device_id: str,
        locking_device_id: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        delivery: OfflineKeyDelivery = OfflineKeyDelivery.NONE,
        phone_number: str | None = None,
        app_link_base_url: str | None = None,
    ) -> IssuedOfflineKey:
        """A key valid from ``start`` (at most 30 days ahead) to ``end`` (at most 24 h later).

        The answer holds the primary key value and, during a re-keying, an alternative: give
        both to the operating device. Their values are secrets."""
        delivery = check_choice(OfflineKeyDelivery, delivery, "offline key: deliveryMechanism")
        check_offline_key(
            start, end, self._clock.now_utc(), delivery, phone_number, app_link_base_url
        )
        body = OfflineKeyRequest(
            operating_device_id=check_id(operating_device_id, "offline key: operatingDeviceId"),
            locking_device_id=check_id(locking_device_id, "offline key: lockingDeviceId"),
            start_datetime=start,
            end_datetime=end,
            app_link_base_url=app_link_base_url,
            delivery_mechanism=delivery,
            phone_number=phone_number,
        ).body()
        return await self._fetch(
            IssuedOfflineKey,
            "POST",
            PATHS["offline-key"],
            what=f"an offline key for locking device {locking_device_id}",
            body=body,
        )

    def offline_keys(
        self, *, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[OfflineKeyMetadata]:
        """Metadata of the issued offline keys: never their values (vendor doc)."""
        return self._list(OfflineKeyMetadata, "offline-key", "the offline keys", limit)

    # --- gateways, associations, remote commands (experimental in the vendor doc) ---------

    async def claim_gateway(self, claiming_code: str) -> GatewayDevice:
        body = ClaimGatewayRequest(claiming_code=check_claiming_code(claiming_code)).body()
        return await self._fetch(
            GatewayDevice, "POST", PATHS["gateway"], what="claiming a gateway device", body=body
        )

    def gateways(
        self, *, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[GatewayDevice]:
        return self._list(GatewayDevice, "gateway", "the gateway devices", limit)

    async def get_gateway(self, gateway_id: str) -> GatewayDevice:
        return await self._get_one(GatewayDevice, "gateway", gateway_id, "gateway device")

    async def delete_gateway(self, gateway_id: str) -> None:
        await self._delete_one("gateway", gateway_id, "gateway device")

    def gateway_system_log(
        self,
        gateway_id: str,
        *,
        sequence_number_greater_than: int | None = None,
        sort: SortDirection = SortDirection.ASC,
        limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT,
    ) -> AsyncIterator[GatewaySystemLogEntry]:
        return self._log_pages(
            GatewaySystemLogEntry,
            "gateway-system-log",
            gateway_id,
            sequence_number_greater_than,
            None,
            sort,
            limit,
        )

    def gateway_audit_log(
        self,
        gateway_id: str,
        *,
        sequence_number_greater_than: int | None = None,
        sort: SortDirection = SortDirection.ASC,
        limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT,
    ) -> AsyncIterator[GatewayAuditLogEntry]:
        return self._log_pages(
            GatewayAuditLogEntry,
            "gateway-audit-log",
            gateway_id,
            sequence_number_greater_than,
            None,
            sort,
            limit,
        )

    async def associate(self, gateway_id: str, locking_device_id: str) -> GatewayAssociation:
        """Let the gateway control this lock; refused before sending if it already has five."""
        gateway = check_id(gateway_id, "gateway association: gatewayDeviceId")
        lock = check_id(locking_device_id, "gateway association: lockingDeviceId")
        existing = [
            association
            async for association in self.associations(
                gateway_id=gateway, limit=KeylessLimits.PAGE_LIMIT_MAX
            )
        ]
        check_association_room(len(existing))
        body = AssociationRequest(gateway_device_id=gateway, locking_device_id=lock).body()
        return await self._fetch(
            GatewayAssociation,
            "POST",
            PATHS["association"],
            what=f"an association of gateway device {gateway} with locking device {lock}",
            body=body,
        )

    def associations(
        self, *, gateway_id: str | None = None, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[GatewayAssociation]:
        return self._list(
            GatewayAssociation,
            "association",
            "the gateway device associations",
            limit,
            param="gateway-device-id",
            value=gateway_id,
        )

    async def get_association(self, association_id: str) -> GatewayAssociation:
        return await self._get_one(
            GatewayAssociation,
            "association",
            association_id,
            "gateway device association",
            label="gateway association",
        )

    async def delete_association(self, association_id: str) -> None:
        await self._delete_one(
            "association",
            association_id,
            "gateway device association",
            label="gateway association",
        )

    async def issue_remote_command(
        self,
        gateway_id: str,
        locking_device_id: str,
        action: RemoteCommandAction = RemoteCommandAction.OPEN,
    ) -> RemoteCommand:
        """A command valid for five minutes from issuance (the platform sets the window)."""
        body = RemoteCommandRequest(
            gateway_device_id=check_id(gateway_id, "remote command: gatewayDeviceId"),
            locking_device_id=check_id(locking_device_id, "remote command: lockingDeviceId"),
            action=check_choice(RemoteCommandAction, action, "remote command: action"),
        ).body()
        return await self._fetch(
            RemoteCommand, "POST", PATHS["remote-command"], what="a remote command", body=body
        )

    def remote_commands(
        self, *, gateway_id: str | None = None, limit: int = KeylessLimits.PAGE_LIMIT_DEFAULT
    ) -> AsyncIterator[RemoteCommand]:
        return self._list(
            RemoteCommand,
            "remote-command",
            "the remote commands",
            limit,
            param="gateway-device-id",
            value=gateway_id,
        )

    async def get_remote_command(self, command_id: str) -> RemoteCommand:
        return await self._get_one(RemoteCommand, "remote-command", command_id, "remote command")

    async def cancel_remote_command(self, command_id: str) -> None:
        """Only before a gateway acknowledged it (vendor doc)."""
        path, what, _ = _resource("remote-command", command_id, "remote command")
        await self._call("POST", f"{path}/cancel", what=what)
