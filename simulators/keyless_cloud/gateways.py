"""The Administration API v2 handlers for gateway devices: claiming, their logs, associations
with locking devices, and remote commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from starlette.responses import Response

from simulators.keyless_cloud._http import (
    AssociationBody,
    Call,
    ClaimGatewayBody,
    Handler,
    Problem,
    RemoteCommandBody,
    _association_json,
    _find,
    _gateway_json,
    _log_filters,
    _no_content,
    _ok,
    _page,
    _parse,
    _remote_command_json,
    _uuid,
)
from simulators.keyless_cloud.state import (
    ASSOCIATIONS_PER_GATEWAY_MAX,
    REMOTE_COMMAND_VALIDITY,
    Association,
    GatewayDevice,
    KeylessPlatformState,
    LockingDevice,
    RemoteCommand,
)

_LinkedT = TypeVar("_LinkedT", Association, RemoteCommand)


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


def _gateway_and_lock(
    state: KeylessPlatformState, gateway_device_id: str, locking_device_id: str
) -> tuple[GatewayDevice, LockingDevice]:
    """The gateway and the locking device a request body names (400 if malformed, else 404)."""
    gateway = _find(state.gateways, _uuid(gateway_device_id, "gatewayDeviceId"), "gateway device")
    lock = _find(
        state.locking_devices, _uuid(locking_device_id, "lockingDeviceId"), "locking device"
    )
    return gateway, lock


def _page_by_gateway(
    call: Call, items: Iterable[_LinkedT], to_json: Callable[[_LinkedT], dict[str, Any]]
) -> Response:
    """A page of ``items``, only those of the gateway in ``gateway-device-id`` if it is given."""
    wanted = call.query("gateway-device-id")
    if wanted is not None:
        wanted = _uuid(wanted, "gateway-device-id")
    return _page(
        call,
        [
            (item.seq, to_json(item))
            for item in items
            if wanted is None or item.gateway_device_id == wanted
        ],
    )


async def create_association(call: Call) -> Response:
    body = _parse(AssociationBody, await call.body())
    state = call.state
    gateway, lock = _gateway_and_lock(state, body.gateway_device_id, body.locking_device_id)
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
    return _page_by_gateway(call, call.state.associations.values(), _association_json)


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
    gateway, lock = _gateway_and_lock(state, body.gateway_device_id, body.locking_device_id)
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
    return _page_by_gateway(call, call.state.remote_commands.values(), _remote_command_json)


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
