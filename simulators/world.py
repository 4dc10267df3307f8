"""A whole simulated world: Nokē padlocks and Keyless padlocks on one radio, the Nokē cloud and
the Keyless platform that know them, all served on 127.0.0.1, and the settings that point
``blelock`` at them.

Used three ways, always through the same sockets: in a test's own event loop (``serve_world``),
by the ``blelock-sim`` harness process, and by ``blelock demo`` (which starts that process).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.responses import JSONResponse
from starlette.routing import Route

from blelock.protocol.dfu import version_number
from blelock.protocol.dfu_init import load_public_key
from simulators.cloud_switch import CloudSwitch
from simulators.dfu_target import SimDfuTarget
from simulators.faults import LinkFaults
from simulators.firmware import TEST_SIGNING_PUBLIC_KEY_PEM
from simulators.keyless_cloud import (
    Invitation,
    KeylessPlatformState,
    Permission,
    keyless_app,
    register_lock,
)
from simulators.keyless_lock import SimKeylessLock
from simulators.noke_cloud import create_app
from simulators.noke_cloud_state import CloudFaults, NokeCloudState, RegisteredLock
from simulators.noke_lock import MechanicalFaults, SimNokeLock
from simulators.noke_switches import lock_routes
from simulators.nuki_web import nuki_web_app
from simulators.nuki_world import NukiWorld, add_nuki_locks, nuki_state
from simulators.radio import LatencyModel, Radio
from simulators.radio_server import RadioServer
from simulators.unloc_world import UnlocWorld, build_unloc_world

__all__ = [
    "RunningWorld",
    "World",
    "WorldSpec",
    "build_world",
    "cloud_modelled_s",
    "cloud_requests",
    "enrolment_codes",
    "lock_ids",
    "preparations",
    "radio_address",
    "serve_world",
    "world_state",
]

HOST = "127.0.0.1"
CLIENT_BACKEND = "simulators.bleak_backend:SimBleakClient"
SCANNER_BACKEND = "simulators.bleak_backend:SimBleakScanner"
TRUSTED_KEY = load_public_key(TEST_SIGNING_PUBLIC_KEY_PEM)
HARDWARE_CYCLE = ("4I", "3P", "4I")
"""HD padlocks (can unshackle) and standard padlocks, so a demo shows both."""


@dataclass
class WorldSpec:
    locks: int = 3
    seed: int = 1
    latency: LatencyModel = field(default_factory=LatencyModel)
    cloud_latency_s: float = 0.0
    link_faults: dict[int, LinkFaults] = field(default_factory=dict)
    """By lock index (0-based); locks not listed get none."""
    mechanical_faults: dict[int, MechanicalFaults] = field(default_factory=dict)
    cloud_faults: CloudFaults = field(default_factory=CloudFaults)
    offline_tracking_keys: tuple[str, ...] = ()
    """Offline keys the cloud has already issued for every lock (a fleet to sync, for benches)."""
    keyless_locks: int = 0
    """Keyless padlocks, claimed on the simulated platform; a technician user may open each
    (OPEN and UPDATE_TIME permissions) once it activates its invitation."""
    nuki_locks: int = 0
    """Nuki Smart Locks, in pairing mode (simulators/nuki_world.py)."""
    unloc_locks: int = 0
    """Locks of the simulated Unloc project (cloud only: Unloc's app opens them)."""


@dataclass
class KeylessWorld:
    platform: KeylessPlatformState
    locks: list[SimKeylessLock]
    technician_user_id: str
    invitation_code: str
    """What the administrator would hand the technician: activates one operating device."""


@dataclass
class World:
    radio: Radio
    locks: list[SimNokeLock]
    cloud: NokeCloudState
    bootloaders: list[SimDfuTarget] = field(default_factory=list)
    """Each lock's Nordic bootloader (same index), silent until a firmware-update command."""
    keyless: KeylessWorld | None = None
    nuki: NukiWorld | None = None
    unloc: UnlocWorld | None = None


def build_world(spec: WorldSpec) -> World:
    """Same seed, same locks (MACs, keys, hardware); sessions stay random per connection."""
    rng = random.Random(spec.seed)
    radio = Radio(spec.latency)
    locks = []
    bootloaders: list[SimDfuTarget] = []
    for index in range(spec.locks):
        octets = [rng.randrange(256) for _ in range(6)]
        mac = ":".join(f"{octet:02X}" for octet in octets)
        lock = SimNokeLock(
            mac=mac,
            key=rng.randbytes(16),
            hardware=HARDWARE_CYCLE[index % len(HARDWARE_CYCLE)],
            battery_mv=rng.randrange(2850, 3050, 5),
            rssi=-45 - rng.randrange(40),
            mechanical=spec.mechanical_faults.get(index, MechanicalFaults()),
        )
        radio.add(lock, spec.link_faults.get(index))
        locks.append(lock)
        if lock.hardware == "3P":
            lock.firmware = (2, 10)  # older than firmware_images/noke-3p-2.11.zip
        bootloader = SimDfuTarget(
            lock.mac,
            TRUSTED_KEY,
            hardware=lock.hardware,
            firmware_version=version_number(*lock.firmware),
            in_dfu_mode=False,
            on_boot=lock.boot_firmware,
        )
        lock.on_firmware_update = bootloader.enter_dfu_mode
        radio.add(bootloader)
        bootloaders.append(bootloader)
    cloud = NokeCloudState(
        locks={
            lock.mac: RegisteredLock(
                mac=lock.mac,
                key=lock.key,
                hw_version=lock.hardware,
                fw_version="{}.{}".format(*lock.firmware),
                serial=f"SIM-{index:03d}-{lock.mac[-5:].replace(':', '')}",
            )
            for index, lock in enumerate(locks)
        },
        api_key=f"sim-server-{secrets.token_hex(12)}",
        mobile_key=f"sim-mobile-{secrets.token_hex(12)}",
        faults=spec.cloud_faults,
    )
    cloud.faults.latency_s = spec.cloud_latency_s
    cloud.modelled.log, cloud.modelled.what = radio.waits, "cloud noke"
    for registered in cloud.locks.values():
        for tracking_key in spec.offline_tracking_keys:
            registered.issue_offline_key(tracking_key)
    keyless = _keyless_world(spec, rng, radio) if spec.keyless_locks else None
    nuki = add_nuki_locks(spec.nuki_locks, spec.seed, radio) if spec.nuki_locks else None
    if keyless is not None:
        keyless.platform.faults.latency_s = spec.cloud_latency_s
        keyless.platform.modelled.log = radio.waits
        keyless.platform.modelled.what = "cloud keyless"
    unloc = build_unloc_world(spec.unloc_locks) if spec.unloc_locks else None
    return World(
        radio=radio,
        locks=locks,
        cloud=cloud,
        bootloaders=bootloaders,
        keyless=keyless,
        nuki=nuki,
        unloc=unloc,
    )


PERMISSION_SPAN = dt.timedelta(days=365)
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _keyless_world(spec: WorldSpec, rng: random.Random, radio: Radio) -> KeylessWorld:
    platform = KeylessPlatformState.create(
        api_key=f"sim-keyless-{secrets.token_hex(12)}", seed=spec.seed
    )
    technician = platform.add_user("USER")
    now = platform.now().replace(microsecond=0)
    locks = []
    for index in range(spec.keyless_locks):
        lock_id = platform.new_id()
        lock = SimKeylessLock.provision(
            mac=":".join(f"{rng.randrange(256):02X}" for _ in range(6)),
            locking_device_id=lock_id,
            ca_cert=platform.ca_certificate,
            sign_csr=lambda csr: platform.certify(csr).der,
            # From the seed, so a restart with the same seed gives the lock the same key.
            key=ec.derive_private_key(rng.randrange(1, _P256_ORDER), ec.SECP256R1()),
        )
        radio.add(lock)
        register_lock(
            platform, lock_id, lock.certificate, f"KL-{index:04d}", name=f"Unit {index + 1}"
        )
        for operation in ("OPEN", "UPDATE_TIME"):
            permission = Permission(
                id=platform.new_id(),
                user_id=technician.id,
                locking_device_id=lock_id,
                operation_type=operation,
                permission_type="SINGLE_INTERVAL",
                validity=dt.timedelta(days=8),
                start=now - dt.timedelta(hours=1),
                end=now + PERMISSION_SPAN,
                seq=platform.next_seq(),
            )
            platform.permissions[permission.id] = permission
        locks.append(lock)
    code = secrets.token_urlsafe(12)
    invitation = Invitation(
        platform.new_id(), technician.id, code, expires_at=now + dt.timedelta(days=1)
    )
    platform.invitations[invitation.id] = invitation
    return KeylessWorld(platform, locks, technician.id, code)


def lock_ids(world: World) -> dict[str, list[str]]:
    """Each vendor's simulated locks, by vendor name, as ``blelock open`` takes their ids."""
    ids = {"noke": [lock.mac for lock in world.locks]}
    if world.keyless is not None:
        ids["keyless"] = [lock.locking_device_id for lock in world.keyless.locks]
    if world.nuki is not None:
        ids["nuki"] = [lock.mac for lock in world.nuki.locks]
    return ids


def radio_address(world: World, lock_id: str) -> str:
    """The address a lock of ``lock_ids`` advertises under on the simulated radio."""
    if world.keyless is not None:
        for lock in world.keyless.locks:
            if lock.locking_device_id == lock_id:
                return lock.mac.upper()
    return lock_id.upper()


def preparations(world: World) -> dict[str, list[list[str]]]:
    """The ``blelock`` commands (argv) a technician runs once, by vendor, before that vendor's
    locks open: Nuki's are paired one by one (the simulator starts them in pairing mode)."""
    return (
        {}
        if world.nuki is None
        else {"nuki": [["nuki", "pair", lock.mac] for lock in world.nuki.locks]}
    )


def enrolment_codes(world: World) -> dict[str, str]:
    """The code each vendor's administrator would hand a technician to enrol this companion."""
    return {} if world.keyless is None else {"keyless": world.keyless.invitation_code}


def cloud_requests(world: World) -> int:
    """Requests all simulated clouds received; each was charged ``cloud_latency_s``."""
    total = sum(world.cloud.requests.values())
    if world.keyless is not None:
        total += sum(world.keyless.platform.requests.values())
    return total


def cloud_modelled_s(world: World) -> float:
    """The latency all simulated clouds charged, each cloud's overlapping round trips counted
    once (requests a client sends at once wait out one latency, not one each)."""
    total = world.cloud.modelled.seconds
    if world.keyless is not None:
        total += world.keyless.platform.modelled.seconds
    return total


def world_state(world: World) -> dict[str, Any]:
    """What a harness in another process checks after the fact (GET /_sim/state on the cloud's
    port): every record each lock gave, and what reached the cloud. Simulator-only; no keys."""
    cloud = world.cloud
    return {
        "given": [[lock.mac, s, p] for lock in world.locks for s, p in lock.server_records],
        "uploaded": [list(key) for key in cloud.uploaded],
        "records_received": cloud.records_received,
        "records_duplicate": cloud.records_duplicate,
        "uploads_replayed": cloud.uploads_replayed,
        "unlocks": {lock.mac: lock.unlocks + lock.offline_unlocks for lock in world.locks},
        "radio_modelled_s": world.radio.modelled_s,
        "firmware": {lock.mac: "{}.{}".format(*lock.firmware) for lock in world.locks},
        "keyless": _keyless_state(world.keyless),
        "requests": {
            "noke": dict(cloud.requests),
            "keyless": {} if world.keyless is None else dict(world.keyless.platform.requests),
            "nuki": {} if world.nuki is None else dict(world.nuki.web.requests),
            "unloc": {}
            if world.unloc is None
            else dict(world.unloc.state.requests) | {"token": world.unloc.state.token_requests},
        },
        "nuki": nuki_state(world.nuki),
        "bootloaders": {
            lock.mac: {
                "in_dfu_mode": bootloader.in_dfu_mode,
                "verified_bytes": bootloader.verified_bytes,
                "init_packets_accepted": bootloader.init_packets_accepted,
                "packets_received": bootloader.packets_received,
                "updates": bootloader.updates,
            }
            for lock, bootloader in zip(world.locks, world.bootloaders, strict=True)
        },
    }


def _keyless_state(keyless: KeylessWorld | None) -> dict[str, Any]:
    if keyless is None:
        return {}
    platform = keyless.platform
    return {
        lock.locking_device_id: {
            "opens": lock.opens,
            "audit_given": [entry.sequence for entry in lock.audit_log],
            "audit_received": sorted(
                entry.sequence_number for entry in platform.audit_entries(lock.locking_device_id)
            ),
            "key_id": lock.lock_key_id.hex(),
        }
        for lock in keyless.locks
    } | {"_duplicates": platform.duplicate_submissions}


@dataclass
class RunningWorld:
    world: World
    radio_address: str
    cloud_url: str
    keyless_url: str | None = None
    nuki_web_url: str | None = None
    unloc_url: str | None = None
    switches: dict[str, CloudSwitch] = field(default_factory=dict)
    """Each cloud's runtime switch (down, slow, back; lost answers), by vendor; also over HTTP
    at ``/_sim/cloud`` on that cloud's port (see :mod:`simulators.cloud_switch`)."""

    @property
    def environment(self) -> dict[str, str]:
        """The settings that point ``blelock`` (and the sim bleak backend) at this world."""
        return (
            {
                "BLELOCK_NOKE_URL": self.cloud_url,
                "BLELOCK_NOKE_API_KEY": self.world.cloud.api_key,
                "BLELOCK_NOKE_MOBILE_KEY": self.world.cloud.mobile_key,
                "BLELOCK_BLE_CLIENT_BACKEND": CLIENT_BACKEND,
                "BLELOCK_BLE_SCANNER_BACKEND": SCANNER_BACKEND,
                "BLELOCK_SIM_RADIO": self.radio_address,
            }
            | self._keyless_environment()
            | self._nuki_environment()
            | self._unloc_environment()
        )

    def _unloc_environment(self) -> dict[str, str]:
        unloc = self.world.unloc
        return {} if unloc is None or self.unloc_url is None else unloc.environment(self.unloc_url)

    def _nuki_environment(self) -> dict[str, str]:
        nuki = self.world.nuki
        if nuki is None or self.nuki_web_url is None:
            return {}
        return {
            "BLELOCK_NUKI_WEB_URL": self.nuki_web_url,
            "BLELOCK_NUKI_API_TOKEN": nuki.web.api_token,
        }

    def _keyless_environment(self) -> dict[str, str]:
        keyless = self.world.keyless
        if keyless is None or self.keyless_url is None:
            return {}
        return {
            "BLELOCK_KEYLESS_URL": self.keyless_url,
            "BLELOCK_KEYLESS_API_KEY": keyless.platform.api_key,
            "BLELOCK_KEYLESS_USER_ID": keyless.platform.admin_user_id,
            "BLELOCK_KEYLESS_ACCESS_KEY": keyless.platform.admin_access_key,
        }


def _listening_socket() -> socket.socket:
    """Bound and listening before uvicorn starts: clients that connect early wait in the
    backlog instead of being refused, so nobody has to poll for readiness."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: a response's headers and body go out without waiting for
    # the client's delayed ACK (~40 ms a request otherwise).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def _serve_http(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 (a free port) for the block; yields its base URL."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    http = uvicorn.Server(config)
    http_task = asyncio.create_task(http.serve(sockets=[sock]))
    try:
        yield f"http://{HOST}:{port}/"
    finally:
        http.should_exit = True
        await http_task
        sock.close()


@contextlib.asynccontextmanager
async def serve_world(world: World) -> AsyncIterator[RunningWorld]:
    """Serve the radio and the clouds on 127.0.0.1 (free ports) for the duration of the block."""
    radio_server = await RadioServer.start(world.radio, host=HOST, port=0)
    introspection = Route("/_sim/state", lambda request: JSONResponse(world_state(world)))
    try:
        async with contextlib.AsyncExitStack() as stack:
            switches = {
                "noke": CloudSwitch(
                    create_app(
                        world.cloud, extra_routes=[introspection, *lock_routes(world.locks)]
                    ),
                    "noke",
                    lambda method, path: method == "POST" and path.rstrip("/") == "/upload",
                )
            }
            cloud_url = await stack.enter_async_context(_serve_http(switches["noke"]))
            keyless_url = None
            if world.keyless is not None:
                switches["keyless"] = CloudSwitch(
                    keyless_app(world.keyless.platform),
                    "keyless",
                    lambda method, path: method == "POST" and path.rstrip("/").endswith("-log"),
                )
                keyless_url = await stack.enter_async_context(_serve_http(switches["keyless"]))
            nuki_web_url = None
            if world.nuki is not None:
                nuki_web_url = await stack.enter_async_context(
                    _serve_http(nuki_web_app(world.nuki.web))
                )
            unloc_url = None
            if world.unloc is not None:
                switches["unloc"] = CloudSwitch(world.unloc.app(), "unloc", lambda m, p: False)
                unloc_url = await stack.enter_async_context(_serve_http(switches["unloc"]))
            yield RunningWorld(
                world,
                radio_server.address,
                cloud_url,
                keyless_url=keyless_url,
                nuki_web_url=nuki_web_url,
                unloc_url=unloc_url,
                switches=switches,
            )
    finally:
        await radio_server.close()
