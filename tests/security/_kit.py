"""Shared rig of the attack tests: the simulated Keyless platform over in-process HTTP (httpx's
ASGI transport: no socket, no port) and simulated locks it certified, driven fragment by
fragment through their Peripheral methods as the radio would."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from blelock.vendors.keyless import protocol as kl
from simulators.keyless_cloud import MEDIA_TYPE, KeylessPlatformState, keyless_app, register_lock
from simulators.keyless_lock import SimKeylessLock

API_KEY = "attack-test-api-key"
T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


class ManualClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Platform:
    state: KeylessPlatformState
    clock: ManualClock
    client: httpx.AsyncClient
    admin_token: str = ""

    def admin(self) -> dict[str, str]:
        return {
            "X-Api-Key": API_KEY,
            "Accept": MEDIA_TYPE,
            "Authorization": f"Bearer {self.admin_token}",
        }

    async def admin_ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        response = await self.client.request(method, path, headers=self.admin(), **kw)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    async def user(self, role: str = "USER") -> str:
        return str((await self.admin_ok("POST", "/user", 201, json={"role": role}))["id"])

    async def permission(
        self,
        user_id: str,
        lock_id: str,
        *,
        operation: str = "OPEN",
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> str:
        body = {
            "permissionType": "SINGLE_INTERVAL",
            "userId": user_id,
            "lockingDeviceId": lock_id,
            "operationType": operation,
            "start": iso(start or self.clock.now - dt.timedelta(hours=1)),
            "end": iso(end or self.clock.now + dt.timedelta(days=30)),
        }
        return str((await self.admin_ok("POST", "/permission", 201, json=body))["id"])

    async def device(self, user_id: str, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
        """An activated, logged-in operating device of that user: (its id, its mobile token)."""
        invitation = await self.admin_ok(
            "POST",
            "/operating-device-invitation",
            201,
            json={"userId": user_id, "deliveryMechanism": "NONE"},
        )
        point = b64(kl.public_key_bytes(key.public_key()))
        activation = await self.client.post(
            "/mobile/activation",
            json={"invitationCode": invitation["invitationCode"], "publicKey": point},
        )
        assert activation.status_code == 201, activation.text
        device_id = activation.json()["operatingDeviceId"]
        login = await self.client.post(
            "/mobile/login",
            json={"operatingDeviceId": device_id, "accessKey": activation.json()["accessKey"]},
        )
        assert login.status_code == 200, login.text
        return device_id, str(login.json()["token"])

    async def mobile(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        return await self.client.request(
            method, path, headers={"Authorization": f"Bearer {token}"}, **kw
        )

    async def operating_credentials(
        self, token: str, key: ec.EllipticCurvePrivateKey, lock_id: str
    ) -> list[kl.Credential]:
        answer = await self.mobile("GET", "/mobile/operating-keys", token)
        assert answer.status_code == 200, answer.text
        return [
            kl.Credential(base64.b64decode(item["grant"]), key)
            for item in answer.json()["items"]
            if item["lockingDeviceId"] == lock_id
        ]

    async def revocations(self, token: str) -> bytes:
        answer = await self.mobile("GET", "/mobile/revocations", token)
        assert answer.status_code == 200, answer.text
        return base64.b64decode(answer.json()["list"])

    def lock(self, *, clock_drift_s: int = 0) -> SimKeylessLock:
        """A lock provisioned with a certificate from this platform, and claimed on it."""
        lock = SimKeylessLock.provision(
            mac="AA:BB:CC:19:00:01",
            locking_device_id=str(uuid.uuid4()),
            ca_cert=self.state.ca_certificate,
            sign_csr=lambda csr: self.state.certify(csr).der,
            clock=self.clock,
            clock_drift_s=clock_drift_s,
        )
        register_lock(self.state, lock.locking_device_id, lock.certificate, "BPLAD190001")
        return lock


@asynccontextmanager
async def platform() -> AsyncIterator[Platform]:
    clock = ManualClock(T0)
    state = KeylessPlatformState.create(api_key=API_KEY, now=clock, seed=19)
    transport = httpx.ASGITransport(app=keyless_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://keyless.test") as client:
        rig = Platform(state, clock, client)
        login = await client.post(
            "/login",
            json={"userId": state.admin_user_id, "accessKey": state.admin_access_key},
            headers={"X-Api-Key": API_KEY, "Accept": MEDIA_TYPE},
        )
        assert login.status_code == 200, login.text
        rig.admin_token = str(login.json()["token"])
        yield rig


def conversation(
    lock: SimKeylessLock,
    credentials: Sequence[kl.Credential],
    steps: Sequence[kl.Step],
    *,
    at: dt.datetime,
    **kwargs: Any,
) -> kl.KeylessConversation:
    return kl.KeylessConversation(
        ca_cert=lock.ca_cert,
        locking_device_id=lock.locking_device_id,
        credentials=credentials,
        steps=steps,
        now=at,
        **kwargs,
    )


def run(
    lock: SimKeylessLock, conv: kl.KeylessConversation, *, statement: bytes | None = b""
) -> list[kl.Event]:
    """One connection: the conversation against the lock, every byte a 20-byte fragment. A
    pause for a time statement gets ``statement`` (b"": a companion without the platform;
    None: stop at the pause)."""
    lock.on_connect()
    lock.on_subscribe(kl.NOTIFY_UUID, True)
    inbox: list[bytes] = []
    try:
        while True:
            while (action := conv.next_action()) is not None:
                if isinstance(action, kl.Write):
                    inbox.extend(v for _, v in lock.on_write(kl.WRITE_UUID, action.data))
                else:
                    conv.receive(inbox.pop(0))
            if not conv.awaiting_statement or statement is None:
                break
            conv.provide_statement(statement)
    finally:
        lock.on_disconnect()
    return conv.events


def send(lock: SimKeylessLock, message: bytes) -> kl.Challenge | kl.Result | kl.Malformed:
    """One whole message to the lock (as a radio attacker would write it); its one answer."""
    reassembler = kl.Reassembler()
    answers = [
        m
        for part in kl.fragment(message)
        for _, value in lock.on_write(kl.WRITE_UUID, part)
        if (m := reassembler.feed(value)) is not None
    ]
    assert len(answers) == 1
    return kl.decode_lock_message(answers[0])


# --- a lock without a platform: its CA in the test's hands ----------------------------------

CA_KEY = kl.generate_key()
CA_CERT = kl.make_platform_ca(
    CA_KEY,
    name="attack-test CA",
    not_before=T0 - dt.timedelta(days=400),
    not_after=T0 + dt.timedelta(days=4000),
)
DEVICE_ID = "0a0b0c0d-0e0f-4000-8000-000000000019"


def standalone_lock(clock: ManualClock | None = None, **kwargs: Any) -> SimKeylessLock:
    from simulators.keyless_lock import ca_signer

    tick = clock or ManualClock(T0)
    return SimKeylessLock.provision(
        mac="AA:BB:CC:19:00:02",
        locking_device_id=str(uuid.uuid4()),
        ca_cert=CA_CERT,
        sign_csr=ca_signer(CA_KEY, CA_CERT, clock=tick),
        clock=tick,
        **kwargs,
    )


def credential(
    lock: SimKeylessLock,
    *,
    operations: frozenset[kl.Operation] = frozenset({kl.Operation.OPEN}),
    not_before: dt.datetime = T0 - dt.timedelta(hours=1),
    not_after: dt.datetime = T0 + dt.timedelta(hours=1),
    kind: kl.GrantKind = kl.GrantKind.OPERATING,
    device_id: str = DEVICE_ID,
    key_id: str | None = None,
) -> kl.Credential:
    holder = kl.generate_key()
    grant = kl.Grant(
        key_id=key_id or str(uuid.uuid4()),
        kind=kind,
        operating_device_id=device_id if kind is kl.GrantKind.OPERATING else None,
        locking_device_id=lock.locking_device_id,
        operations=operations,
        not_before=not_before,
        not_after=not_after,
        lock_key_id=lock.lock_key_id,
        holder_public_key=kl.public_key_bytes(holder.public_key()),
    )
    return kl.Credential(kl.sign_grant(grant, CA_KEY), holder)


def collect(lock: SimKeylessLock, after: int = 0) -> tuple[list[kl.AuditEntry], list[kl.AuditGap]]:
    """What an authenticated collector gets: every entry after ``after``, and the gaps."""
    events = run(lock, conversation(lock, [credential(lock)], [kl.CollectAudit(after)], at=T0))
    pages = [e for e in events if isinstance(e, kl.AuditEntries)]
    # (getattr: the same rig ran against the code before issue 19, which had no gaps)
    gaps = [g for p in pages for g in getattr(p, "gaps", ())]
    return [x for p in pages for x in p.entries], gaps
