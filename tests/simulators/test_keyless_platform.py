"""The simulated Keyless platform, spoken to with raw HTTP requests (no blelock client)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from blelock.vendors.keyless import protocol as kp
from simulators.keyless_cloud import (
    MEDIA_TYPE,
    KeylessPlatformState,
    keyless_app,
    register_lock,
)

API_KEY = "test-keyless-api-key"
T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
LOCK_KEY = kp.generate_key()
NEW_LOCK_KEY = kp.generate_key()
DEVICE_KEY = kp.generate_key()
"""Generated once: key generation is the slow part of these tests."""


class ManualClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Platform:
    state: KeylessPlatformState
    clock: ManualClock
    client: httpx.AsyncClient
    token: str = ""

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {
            "X-Api-Key": API_KEY,
            "Accept": MEDIA_TYPE,
            "Authorization": f"Bearer {self.token if token is None else token}",
        }

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", None) or self.headers()
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = await self.call(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    async def login(self, user_id: str, access_key: str) -> str:
        answer = await self.ok("POST", "/login", json={"userId": user_id, "accessKey": access_key})
        return str(answer["token"])

    async def user(self) -> str:
        return str((await self.ok("POST", "/user", 201, json={"role": "USER"}))["id"])

    async def lock(self, name: str = "Front Gate") -> str:
        return str((await self.ok("POST", "/locking-device", 201, json={"name": name}))["id"])

    def claimed_lock(self, serial: str = "BPLAD000001") -> str:
        lock_id = self.state.new_id()
        cert = self.state.certify(kp.make_csr(LOCK_KEY, lock_id))
        register_lock(self.state, lock_id, cert.der, serial, name="Backyard Gate")
        return lock_id

    async def permission(self, user_id: str, lock_id: str, **overrides: Any) -> str:
        body = {
            "permissionType": "SINGLE_INTERVAL",
            "userId": user_id,
            "lockingDeviceId": lock_id,
            "operationType": "OPEN",
            "start": iso(self.clock.now - dt.timedelta(hours=1)),
            "end": iso(self.clock.now + dt.timedelta(days=30)),
        } | overrides
        return str((await self.ok("POST", "/permission", 201, json=body))["id"])

    async def invite(self, user_id: str, **overrides: Any) -> dict[str, Any]:
        body = {"userId": user_id, "deliveryMechanism": "NONE"} | overrides
        answer: dict[str, Any] = await self.ok(
            "POST", "/operating-device-invitation", 201, json=body
        )
        return answer

    async def device(self, user_id: str) -> tuple[str, str]:
        """An activated and logged-in operating device: (its id, its mobile token)."""
        code = (await self.invite(user_id))["invitationCode"]
        activation = await self.client.post(
            "/mobile/activation",
            json={
                "invitationCode": code,
                "publicKey": b64(kp.public_key_bytes(DEVICE_KEY.public_key())),
            },
        )
        assert activation.status_code == 201, activation.text
        device_id = activation.json()["operatingDeviceId"]
        login = await self.client.post(
            "/mobile/login",
            json={"operatingDeviceId": device_id, "accessKey": activation.json()["accessKey"]},
        )
        assert login.status_code == 200, login.text
        return device_id, login.json()["token"]


@pytest.fixture
async def platform() -> AsyncIterator[Platform]:
    clock = ManualClock(T0)
    state = KeylessPlatformState.create(api_key=API_KEY, now=clock, seed=7)
    transport = httpx.ASGITransport(app=keyless_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://keyless.test") as client:
        platform = Platform(state, clock, client)
        platform.token = await platform.login(state.admin_user_id, state.admin_access_key)
        yield platform


def assert_problem(response: httpx.Response, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert detail in body["detail"], body["detail"]


def ca_public_key(platform: Platform) -> ec.EllipticCurvePublicKey:
    key = platform.state.ca_certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def mobile(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- headers, tokens, faults ----------------------------------------------------------------


async def test_api_key_is_required_and_checked(platform: Platform) -> None:
    headers = platform.headers()
    del headers["X-Api-Key"]
    assert_problem(await platform.call("GET", "/user", headers=headers), 403, "X-Api-Key")
    headers["X-Api-Key"] = "wrong"
    assert_problem(await platform.call("GET", "/user", headers=headers), 403, "X-Api-Key")
    login = await platform.client.post(
        "/login",
        headers={"Accept": MEDIA_TYPE, "X-Api-Key": "wrong"},
        json={"userId": platform.state.admin_user_id, "accessKey": "x"},
    )
    assert_problem(login, 403, "X-Api-Key")


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
async def test_the_vendor_media_type_must_be_requested(
    platform: Platform, accept: str | None
) -> None:
    headers = platform.headers()
    del headers["Accept"]
    if accept is not None:
        headers["Accept"] = accept
    assert_problem(await platform.call("GET", "/user", headers=headers), 406, MEDIA_TYPE)


async def test_answers_are_in_the_vendor_media_type(platform: Platform) -> None:
    response = await platform.call(
        "GET", "/user", headers=platform.headers() | {"Accept": f"application/json, {MEDIA_TYPE}"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(MEDIA_TYPE)


async def test_bearer_token_is_required(platform: Platform) -> None:
    headers = platform.headers()
    del headers["Authorization"]
    assert_problem(await platform.call("GET", "/user", headers=headers), 401, "Bearer")
    assert_problem(
        await platform.call("GET", "/user", headers=platform.headers("forged")), 401, "not valid"
    )


async def test_login_refuses_wrong_credentials(platform: Platform) -> None:
    response = await platform.call(
        "POST", "/login", json={"userId": platform.state.admin_user_id, "accessKey": "nope"}
    )
    assert_problem(response, 401, "accessKey")
    response = await platform.call(
        "POST", "/login", json={"userId": "not-a-uuid", "accessKey": "x"}
    )
    assert_problem(response, 400, "userId must be a UUID")
    response = await platform.call("POST", "/login", json={"userId": platform.state.admin_user_id})
    assert_problem(response, 400, "accessKey")


async def test_token_is_valid_one_hour(platform: Platform) -> None:
    platform.clock.advance(minutes=59, seconds=59)
    assert (await platform.call("GET", "/user")).status_code == 200
    platform.clock.advance(seconds=1)
    assert_problem(await platform.call("GET", "/user"), 401, "expired")
    fresh = await platform.login(platform.state.admin_user_id, platform.state.admin_access_key)
    assert (await platform.call("GET", "/user", headers=platform.headers(fresh))).status_code == 200


async def test_users_with_role_user_may_not_administer(platform: Platform) -> None:
    created = await platform.ok("POST", "/user", 201, json={"role": "USER"})
    token = await platform.login(created["id"], created["accessKey"])
    assert_problem(
        await platform.call("GET", "/user", headers=platform.headers(token)), 403, "role ADMIN"
    )


async def test_rate_limit_switch_answers_the_next_n_requests_with_429(platform: Platform) -> None:
    platform.state.faults.rate_limit = 2
    platform.state.faults.retry_after_s = 7
    for _ in range(2):
        response = await platform.call("GET", "/user")
        assert_problem(response, 429, "rate limit")
        assert response.headers["Retry-After"] == "7"
    assert (await platform.call("GET", "/user")).status_code == 200
    assert platform.state.faulted["rate_limit"] == 2
    assert platform.state.requests["GET /user"] == 3


async def test_unknown_routes_and_methods_are_problems(platform: Platform) -> None:
    assert_problem(await platform.call("GET", "/no-such-thing"), 404, "no such resource")
    assert_problem(await platform.call("PUT", "/user"), 405, "allowed: GET, POST")


# --- pagination -----------------------------------------------------------------------------


async def walk(platform: Platform, path: str, limit: int, **query: str) -> list[str]:
    seen: list[str] = []
    params = {"limit": str(limit), **query}
    while True:
        page = await platform.ok("GET", path, params=params)
        assert len(page["items"]) <= limit
        seen.extend(item["id"] for item in page["items"])
        if "nextPageToken" not in page:
            return seen
        assert len(page["items"]) == limit
        params = {"limit": str(limit), "next-page-token": page["nextPageToken"], **query}


@pytest.mark.parametrize("limit", [1, 7, 100])
async def test_pagination_walks_every_item_once(platform: Platform, limit: int) -> None:
    created = [await platform.lock(f"Gate {n}") for n in range(23)]
    seen = await walk(platform, "/locking-device", limit)
    assert seen == created
    assert len(set(seen)) == len(seen)


async def test_default_page_is_50_items(platform: Platform) -> None:
    for _ in range(54):
        await platform.user()
    first = await platform.ok("GET", "/user")
    assert len(first["items"]) == 50
    rest = await platform.ok("GET", "/user", params={"next-page-token": first["nextPageToken"]})
    assert len(rest["items"]) == 5
    assert "nextPageToken" not in rest


async def test_paging_survives_a_deletion_between_pages(platform: Platform) -> None:
    created = [await platform.lock(f"Gate {n}") for n in range(5)]
    page = await platform.ok("GET", "/locking-device", params={"limit": "2"})
    await platform.ok("DELETE", f"/locking-device/{created[1]}", 204)
    await platform.ok("DELETE", f"/locking-device/{created[2]}", 204)
    rest = await platform.ok(
        "GET", "/locking-device", params={"limit": "2", "next-page-token": page["nextPageToken"]}
    )
    assert [item["id"] for item in rest["items"]] == created[3:]


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten"])
async def test_limit_outside_1_to_100_is_refused(platform: Platform, limit: str) -> None:
    response = await platform.call("GET", "/user", params={"limit": limit})
    assert_problem(response, 400, "limit must be an integer between 1 and 100")


async def test_a_page_token_only_works_for_its_own_list(platform: Platform) -> None:
    for n in range(3):
        await platform.lock(f"Gate {n}")
    page = await platform.ok("GET", "/locking-device", params={"limit": "1"})
    token = page["nextPageToken"]
    wrong_list = await platform.call("GET", "/user", params={"next-page-token": token})
    assert_problem(wrong_list, 400, "next-page-token")
    other_filter = await platform.call(
        "GET", "/locking-device", params={"next-page-token": token, "claiming-status": "CLAIMED"}
    )
    assert_problem(other_filter, 400, "next-page-token")
    made_up = await platform.call("GET", "/locking-device", params={"next-page-token": "QUJD"})
    assert_problem(made_up, 400, "next-page-token")


# --- users, invitations, operating devices --------------------------------------------------


async def test_user_lifecycle(platform: Platform) -> None:
    assert_problem(await platform.call("POST", "/user", json={"role": "ROOT"}), 400, "role")
    created = await platform.ok("POST", "/user", 201, json={"role": "ADMIN"})
    assert created["accessKey"]
    fetched = await platform.ok("GET", f"/user/{created['id']}")
    assert fetched == {"id": created["id"], "role": "ADMIN"}
    await platform.ok("DELETE", f"/user/{created['id']}", 204)
    assert_problem(await platform.call("GET", f"/user/{created['id']}"), 404, "not found")
    assert_problem(await platform.call("GET", "/user/12"), 400, "user-id must be a UUID")


async def test_invitation_rules(platform: Platform) -> None:
    user = await platform.user()
    missing = platform.state.new_id()
    assert_problem(
        await platform.call(
            "POST",
            "/operating-device-invitation",
            json={"userId": missing, "deliveryMechanism": "NONE"},
        ),
        404,
        f"user {missing} not found",
    )
    for duration, detail in (
        ("PT0S", "greater than 0"),
        ("P366D", "365 days"),
        ("soon", "ISO 8601"),
    ):
        response = await platform.call(
            "POST",
            "/operating-device-invitation",
            json={"userId": user, "deliveryMechanism": "NONE", "validityDuration": duration},
        )
        assert_problem(response, 400, detail)
    sms = {"userId": user, "deliveryMechanism": "SMS"}
    assert_problem(
        await platform.call("POST", "/operating-device-invitation", json=sms),
        400,
        "phoneNumber is required",
    )
    assert_problem(
        await platform.call(
            "POST", "/operating-device-invitation", json=sms | {"phoneNumber": "0501234567"}
        ),
        400,
        "E.164",
    )
    sent = await platform.invite(user, deliveryMechanism="SMS", phoneNumber="+358501234567")
    assert "invitationCode" not in sent
    assert platform.state.sent_sms[-1].phone_number == "+358501234567"
    default = await platform.invite(user)
    assert default["expirationDatetime"] == iso(T0 + dt.timedelta(hours=24))


async def test_invitation_acceptance_rules(platform: Platform) -> None:
    user = await platform.user()
    point = b64(kp.public_key_bytes(DEVICE_KEY.public_key()))

    async def activate(code: str, public_key: str = point) -> httpx.Response:
        return await platform.client.post(
            "/mobile/activation", json={"invitationCode": code, "publicKey": public_key}
        )

    revoked = await platform.invite(user)
    await platform.ok("DELETE", f"/operating-device-invitation/{revoked['id']}", 204)
    assert_problem(await activate(revoked["invitationCode"]), 409, "revoked")
    expiring = await platform.invite(user, validityDuration="PT30M")
    platform.clock.advance(minutes=30)
    assert_problem(await activate(expiring["invitationCode"]), 409, "expired")
    assert_problem(await activate("no-such-code"), 404, "invitationCode")
    good = await platform.invite(user)
    assert_problem(await activate(good["invitationCode"], b64(b"\x04" * 10)), 400, "publicKey")
    assert (await activate(good["invitationCode"])).status_code == 201
    assert_problem(await activate(good["invitationCode"]), 409, "already accepted")
    assert_problem(
        await platform.call("DELETE", f"/operating-device-invitation/{good['id']}"),
        409,
        "accepted invitations can't be revoked",
    )
    second = await platform.invite(user)
    assert_problem(await activate(second["invitationCode"]), 409, "only one")


async def test_operating_devices_list_filter_and_delete(platform: Platform) -> None:
    first, second = await platform.user(), await platform.user()
    device_a, _ = await platform.device(first)
    device_b, _ = await platform.device(second)
    listed = await platform.ok("GET", "/operating-device", params={"user-id": second})
    assert listed["items"] == [{"id": device_b, "userId": second}]
    assert_problem(
        await platform.call("GET", "/operating-device", params={"user-id": "x"}), 400, "user-id"
    )
    platform.state.operating_devices[device_a].legacy = True
    assert_problem(await platform.call("DELETE", f"/operating-device/{device_a}"), 409, "legacy")
    await platform.ok("DELETE", f"/operating-device/{device_b}", 204)
    assert_problem(await platform.call("DELETE", f"/operating-device/{device_b}"), 404, "not found")
    await platform.ok("DELETE", f"/user/{first}", 204)
    assert (await platform.ok("GET", "/operating-device"))["items"] == []


# --- locking devices ------------------------------------------------------------------------


async def test_locking_device_rules(platform: Platform) -> None:
    for name in ("", "x" * 256):
        response = await platform.call("POST", "/locking-device", json={"name": name})
        assert_problem(response, 400, "1 to 255 characters")
    assert_problem(await platform.call("POST", "/locking-device", json={}), 400, "name")
    assert_problem(
        await platform.call("POST", "/locking-device", content=b"{nope"), 400, "must be JSON"
    )
    created = await platform.ok("POST", "/locking-device", 201, json={"name": "x" * 255})
    assert created["claimingStatus"] == "UNCLAIMED"
    assert "serialNumber" not in created
    missing = platform.state.new_id()
    assert_problem(await platform.call("GET", f"/locking-device/{missing}"), 404, "not found")


async def test_locking_device_json_patch(platform: Platform) -> None:
    lock = await platform.lock("Front Gate")
    path = f"/locking-device/{lock}"
    rename = [
        {"op": "test", "path": "/name", "value": "Front Gate"},
        {"op": "replace", "path": "/name", "value": "Main Gate"},
    ]
    await platform.ok("PATCH", path, 204, json=rename)
    assert (await platform.ok("GET", path))["name"] == "Main Gate"
    cases = [
        ({"op": "replace", "path": "/serialNumber", "value": "X"}, 400, "only the field name"),
        ({"op": "add", "path": "/name", "value": "X"}, 400, "only the field name"),
        ({"op": "remove", "path": "/name", "value": "X"}, 400, "op must be add, replace or test"),
        ({"op": "replace", "path": "/name"}, 400, "op, path and value are required"),
        ({"op": "replace", "path": "/name", "value": ""}, 400, "1 to 255 characters"),
        ({"op": "test", "path": "/name", "value": "Front Gate"}, 409, "test failed"),
    ]
    for operation, status, detail in cases:
        assert_problem(await platform.call("PATCH", path, json=[operation]), status, detail)
    assert_problem(await platform.call("PATCH", path, json={"op": "replace"}), 400, "JSON Patch")
    assert (await platform.ok("GET", path))["name"] == "Main Gate"
    missing = platform.state.new_id()
    assert_problem(
        await platform.call("PATCH", f"/locking-device/{missing}", json=rename), 404, "not found"
    )


async def test_locking_device_filters_and_claimed_shape(platform: Platform) -> None:
    unclaimed = await platform.lock()
    claimed = platform.claimed_lock("BPLAD123456")
    placeholder = await platform.lock("Shed")
    cert = platform.state.certify(kp.make_csr(NEW_LOCK_KEY, placeholder))
    register_lock(platform.state, placeholder, cert.der, "BPLAD654321")
    assert (await platform.ok("GET", f"/locking-device/{placeholder}"))[
        "claimingStatus"
    ] == "CLAIMED"
    await platform.ok("DELETE", f"/locking-device/{placeholder}", 204)
    by_status = await platform.ok("GET", "/locking-device", params={"claiming-status": "CLAIMED"})
    assert [item["id"] for item in by_status["items"]] == [claimed]
    item = by_status["items"][0]
    assert item["serialNumber"] == "BPLAD123456"
    assert item["operationalCertificate"]["eligibleForReKeying"] is False
    assert item["hardwareModel"] == "PADLOCK"
    unclaimed_only = await platform.ok(
        "GET", "/locking-device", params={"claiming-status": "UNCLAIMED"}
    )
    assert [item["id"] for item in unclaimed_only["items"]] == [unclaimed]
    by_serial = await platform.ok("GET", "/locking-device", params={"serial-number": "BPLAD123456"})
    assert [item["id"] for item in by_serial["items"]] == [claimed]
    assert_problem(
        await platform.call("GET", "/locking-device", params={"claiming-status": "LOST"}),
        400,
        "claiming-status must be UNCLAIMED or CLAIMED",
    )


async def test_deleting_a_locking_device_removes_what_hangs_on_it(platform: Platform) -> None:
    lock = platform.claimed_lock()
    permission = await platform.permission(await platform.user(), lock)
    await platform.ok("DELETE", f"/locking-device/{lock}", 204)
    assert_problem(await platform.call("GET", f"/permission/{permission}"), 404, "not found")
    assert_problem(await platform.call("DELETE", f"/locking-device/{lock}"), 404, "not found")


async def test_testing_endpoint_forces_re_keying_eligibility(platform: Platform) -> None:
    lock = platform.claimed_lock()
    await platform.ok("POST", f"/testing/locking-device/{lock}/re-key", 204)
    fetched = await platform.ok("GET", f"/locking-device/{lock}")
    assert fetched["operationalCertificate"]["eligibleForReKeying"] is True
    unclaimed = await platform.lock()
    assert_problem(
        await platform.call("POST", f"/testing/locking-device/{unclaimed}/re-key"),
        409,
        "not claimed",
    )
    platform.state.testing_endpoints = False
    assert_problem(
        await platform.call("POST", f"/testing/locking-device/{lock}/re-key"),
        403,
        "not available in this environment",
    )


# --- permissions ----------------------------------------------------------------------------


async def test_permission_rules(platform: Platform) -> None:
    user, lock = await platform.user(), await platform.lock()
    base = {
        "permissionType": "SINGLE_INTERVAL",
        "userId": user,
        "lockingDeviceId": lock,
        "operationType": "OPEN",
        "start": iso(T0),
        "end": iso(T0 + dt.timedelta(days=1)),
    }
    cases = [
        ({"operatingKeyValidityDuration": "PT23H"}, 400, "greater than or equal to 1 day"),
        ({"operatingKeyValidityDuration": "P32D"}, 400, "less than or equal to 31 days"),
        ({"operatingKeyValidityDuration": "P1M"}, 400, "ISO 8601 duration"),
        ({"end": iso(T0)}, 400, "end must be after start"),
        ({"start": "2030-01-01T12:00:00"}, 400, "timezone"),
        ({"operationType": "CLOSE"}, 400, "operationType"),
        ({"permissionType": "RECURRING"}, 400, "SINGLE_INTERVAL only"),
        ({"userId": platform.state.new_id()}, 404, "user"),
        ({"lockingDeviceId": platform.state.new_id()}, 404, "locking device"),
    ]
    for override, status, detail in cases:
        response = await platform.call("POST", "/permission", json=base | override)
        assert_problem(response, status, detail)
    created = await platform.ok("POST", "/permission", 201, json=base)
    fetched = await platform.ok("GET", f"/permission/{created['id']}")
    assert fetched["operatingKeyValidityDuration"] == "P8D"
    assert fetched["start"] == iso(T0)
    updated = base | {"operationType": "UPDATE_TIME", "operatingKeyValidityDuration": "P31D"}
    await platform.ok("PUT", f"/permission/{created['id']}", 204, json=updated)
    fetched = await platform.ok("GET", f"/permission/{created['id']}")
    assert (fetched["operationType"], fetched["operatingKeyValidityDuration"]) == (
        "UPDATE_TIME",
        "P31D",
    )
    listed = await platform.ok("GET", "/permission")
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    await platform.ok("DELETE", f"/permission/{created['id']}", 204)
    assert_problem(await platform.call("GET", f"/permission/{created['id']}"), 404, "not found")


async def test_past_permissions_go_14_days_after_their_end(platform: Platform) -> None:
    permission = await platform.permission(
        await platform.user(), await platform.lock(), end=iso(T0 + dt.timedelta(hours=1))
    )
    platform.clock.advance(days=14, minutes=59)
    platform.token = await platform.login(
        platform.state.admin_user_id, platform.state.admin_access_key
    )
    assert (await platform.call("GET", f"/permission/{permission}")).status_code == 200
    platform.clock.advance(minutes=2)
    assert_problem(await platform.call("GET", f"/permission/{permission}"), 404, "not found")


# --- the operating-device flow --------------------------------------------------------------


async def test_invite_activate_login_and_verify_an_operating_key(platform: Platform) -> None:
    user, lock = await platform.user(), platform.claimed_lock()
    await platform.permission(user, lock, operatingKeyValidityDuration="P2D")
    device_id, token = await platform.device(user)
    ca = await platform.client.get("/mobile/ca")
    ca_cert = x509.load_der_x509_certificate(base64.b64decode(ca.json()["certificate"]))
    keys = await platform.client.get("/mobile/operating-keys", headers=mobile(token))
    assert keys.status_code == 200, keys.text
    [item] = keys.json()["items"]
    pinned = ca_cert.public_key()
    assert isinstance(pinned, ec.EllipticCurvePublicKey)
    assert pinned == ca_public_key(platform)
    grant = kp.verify_grant(base64.b64decode(item["grant"]), pinned)
    assert grant.kind is kp.GrantKind.OPERATING
    assert grant.key_id == item["keyId"]
    assert grant.operating_device_id == device_id
    assert grant.locking_device_id == lock
    assert grant.operations == frozenset({kp.Operation.OPEN})
    assert grant.not_after == T0 + dt.timedelta(days=2)
    assert grant.lock_key_id == kp.key_id_of(LOCK_KEY.public_key())
    assert grant.holder_public_key == kp.public_key_bytes(DEVICE_KEY.public_key())
    kp.verify_lock_certificate(base64.b64decode(item["certificate"]), ca_cert, at=T0)


async def test_operating_keys_only_for_permissions_valid_now(platform: Platform) -> None:
    user, lock = await platform.user(), platform.claimed_lock()
    later = T0 + dt.timedelta(days=3)
    await platform.permission(user, lock, start=iso(later), end=iso(later + dt.timedelta(days=1)))
    await platform.permission(user, await platform.lock())  # unclaimed: no lock key yet
    _, token = await platform.device(user)
    keys = await platform.client.get("/mobile/operating-keys", headers=mobile(token))
    assert keys.json()["items"] == []
    assert_problem(
        await platform.client.get("/mobile/operating-keys", headers=mobile(platform.token)),
        401,
        "not valid",
    )
    platform.clock.advance(hours=1)
    assert_problem(
        await platform.client.get("/mobile/operating-keys", headers=mobile(token)), 401, "expired"
    )


async def test_deleting_a_permission_revokes_its_operating_keys(platform: Platform) -> None:
    user, lock = await platform.user(), platform.claimed_lock()
    permission = await platform.permission(user, lock)
    _, token = await platform.device(user)
    [item] = (await platform.client.get("/mobile/operating-keys", headers=mobile(token))).json()[
        "items"
    ]
    before = (await platform.client.get("/mobile/revocations", headers=mobile(token))).json()
    await platform.ok("DELETE", f"/permission/{permission}", 204)
    after = (await platform.client.get("/mobile/revocations", headers=mobile(token))).json()
    revocations = kp.verify_revocation_list(
        base64.b64decode(after["list"]), ca_public_key(platform)
    )
    assert after["version"] == before["version"] + 1 == revocations.version
    assert revocations.key_ids == {item["keyId"]}


# --- offline keys ---------------------------------------------------------------------------


def offline_body(platform: Platform, device: str, lock: str, **overrides: Any) -> dict[str, Any]:
    return {
        "operatingDeviceId": device,
        "lockingDeviceId": lock,
        "startDatetime": iso(T0),
        "endDatetime": iso(T0 + dt.timedelta(hours=8)),
        "deliveryMechanism": "NONE",
    } | overrides


async def test_offline_key_rules(platform: Platform) -> None:
    user, lock = await platform.user(), platform.claimed_lock()
    device, _ = await platform.device(user)
    far = T0 + dt.timedelta(days=30, seconds=1)
    cases = [
        (
            {"startDatetime": iso(far), "endDatetime": iso(far + dt.timedelta(hours=1))},
            400,
            "startDatetime cannot be more than 30 days in the future",
        ),
        (
            {"endDatetime": iso(T0 + dt.timedelta(hours=24, seconds=1))},
            400,
            "endDatetime cannot be more than 24 hours after startDatetime",
        ),
        ({"endDatetime": iso(T0)}, 400, "endDatetime must be after startDatetime"),
        ({"appLinkBaseUrl": "https://example.com/" + "a" * 23}, 400, "at most 42 characters"),
        ({"appLinkBaseUrl": "not a url"}, 400, "valid URL"),
        ({"deliveryMechanism": "SMS_WITH_APP_LINK"}, 400, "phoneNumber is required"),
        ({"deliveryMechanism": "PIGEON"}, 400, "deliveryMechanism"),
        ({"operatingDeviceId": platform.state.new_id()}, 404, "operating device"),
        ({"lockingDeviceId": await platform.lock()}, 409, "not claimed"),
    ]
    for override, status, detail in cases:
        response = await platform.call(
            "POST", "/offline-key", json=offline_body(platform, device, lock, **override)
        )
        assert_problem(response, status, detail)
    edge = T0 + dt.timedelta(days=30)
    at_limits = {"startDatetime": iso(edge), "endDatetime": iso(edge + dt.timedelta(hours=24))}
    await platform.ok(
        "POST", "/offline-key", 201, json=offline_body(platform, device, lock, **at_limits)
    )


async def test_offline_key_values_go_to_the_device_and_only_metadata_is_listed(
    platform: Platform,
) -> None:
    user, lock = await platform.user(), platform.claimed_lock()
    device, token = await platform.device(user)
    body = offline_body(
        platform,
        device,
        lock,
        deliveryMechanism="SMS_WITH_APP_LINK",
        phoneNumber="+358501234567",
        appLinkBaseUrl="https://open.example.com",
    )
    issued = await platform.ok("POST", "/offline-key", 201, json=body)
    assert "alternativeKey" not in issued
    assert issued["startDatetime"] == iso(T0)
    assert platform.state.sent_sms[-1].text.startswith("https://open.example.com?eo=")
    listed = await platform.ok("GET", "/offline-key")
    [meta] = listed["items"]
    assert meta["id"] == issued["primaryKey"]["id"]
    assert meta["issuerUserId"] == platform.state.admin_user_id
    assert meta["deliveryMechanism"] == "SMS_WITH_APP_LINK"
    assert "value" not in str(listed)
    values = await platform.client.get("/mobile/offline-keys", headers=mobile(token))
    [item] = values.json()["items"]
    assert item["alternative"] is None
    grant = kp.verify_grant(base64.b64decode(item["primary"]["grant"]), ca_public_key(platform))
    holder = serialization.load_der_private_key(
        base64.b64decode(item["primary"]["privateKey"]), None
    )
    assert isinstance(holder, ec.EllipticCurvePrivateKey)
    assert grant.kind is kp.GrantKind.OFFLINE
    assert grant.operating_device_id is None
    assert grant.holder_public_key == kp.public_key_bytes(holder.public_key())
    assert (grant.not_before, grant.not_after) == (T0, T0 + dt.timedelta(hours=8))
    assert grant.lock_key_id == kp.key_id_of(LOCK_KEY.public_key())


async def test_re_keying_pending_gives_an_alternative_key_then_completes(
    platform: Platform,
) -> None:
    user, lock = await platform.user(), platform.claimed_lock()
    device, token = await platform.device(user)
    csr = {"csr": b64(kp.make_csr(NEW_LOCK_KEY, lock))}
    path = f"/mobile/locking-device/{lock}"
    assert_problem(
        await platform.client.post(f"{path}/csr", json=csr, headers=mobile(token)),
        403,
        "permission",
    )
    await platform.permission(user, lock)
    assert_problem(
        await platform.client.get(f"{path}/certificate", headers=mobile(token)), 404, "pending"
    )
    wrong_cn = {"csr": b64(kp.make_csr(NEW_LOCK_KEY, platform.state.new_id()))}
    assert_problem(
        await platform.client.post(f"{path}/csr", json=wrong_cn, headers=mobile(token)), 400, "CN"
    )
    accepted = await platform.client.post(f"{path}/csr", json=csr, headers=mobile(token))
    assert accepted.status_code == 202, accepted.text
    issued_cert = await platform.client.get(f"{path}/certificate", headers=mobile(token))
    new_cert = kp.verify_lock_certificate(
        base64.b64decode(issued_cert.json()["certificate"]), platform.state.ca_certificate, at=T0
    )
    assert new_cert.public_key() == NEW_LOCK_KEY.public_key()
    listed = await platform.ok("GET", f"/locking-device/{lock}")
    assert listed["operationalCertificate"]["eligibleForReKeying"] is True

    issued = await platform.ok(
        "POST", "/offline-key", 201, json=offline_body(platform, device, lock)
    )
    assert issued["alternativeKey"]["id"] != issued["primaryKey"]["id"]
    [item] = (await platform.client.get("/mobile/offline-keys", headers=mobile(token))).json()[
        "items"
    ]
    ca_key = ca_public_key(platform)
    primary = kp.verify_grant(base64.b64decode(item["primary"]["grant"]), ca_key)
    alternative = kp.verify_grant(base64.b64decode(item["alternative"]["grant"]), ca_key)
    assert primary.lock_key_id == kp.key_id_of(NEW_LOCK_KEY.public_key())
    assert alternative.lock_key_id == kp.key_id_of(LOCK_KEY.public_key())

    # The lock installed the certificate: its next entry is signed with the new key.
    entry = kp.AuditEntry(1, T0, kp.Command.OPEN, device, platform.state.new_id(), kp.ResultCode.OK)
    blob = kp.sign_audit_entry(entry, NEW_LOCK_KEY)
    uploaded = await platform.client.post(
        f"{path}/audit-log", json={"entries": [b64(blob)]}, headers=mobile(token)
    )
    assert uploaded.json() == {"accepted": 1, "duplicates": 0}
    [key] = (await platform.client.get("/mobile/operating-keys", headers=mobile(token))).json()[
        "items"
    ]
    assert base64.b64decode(key["certificate"]) == base64.b64decode(
        issued_cert.json()["certificate"]
    )
    listed = await platform.ok("GET", f"/locking-device/{lock}")
    assert listed["operationalCertificate"]["eligibleForReKeying"] is False


# --- log submission and the log lists -------------------------------------------------------


def audit_blob(
    sequence: int, device: str | None, at: dt.datetime, key: ec.EllipticCurvePrivateKey = LOCK_KEY
) -> str:
    entry = kp.AuditEntry(
        sequence,
        at,
        kp.Command.OPEN,
        device,
        "0f0e0d0c-0b0a-4908-8706-050403020100",
        kp.ResultCode.OK if sequence % 2 else kp.ResultCode.EXPIRED,
    )
    return b64(kp.sign_audit_entry(entry, key))


async def test_log_submission_is_idempotent_by_lock_and_sequence(platform: Platform) -> None:
    user, lock = await platform.user(), platform.claimed_lock()
    device, token = await platform.device(user)
    path = f"/mobile/locking-device/{lock}/audit-log"
    first = [audit_blob(n, device, T0 + dt.timedelta(minutes=n)) for n in range(3)]
    answer = await platform.client.post(path, json={"entries": first}, headers=mobile(token))
    assert answer.json() == {"accepted": 3, "duplicates": 0}
    again = [*first, audit_blob(3, device, T0 + dt.timedelta(minutes=3))]
    answer = await platform.client.post(path, json={"entries": again}, headers=mobile(token))
    assert answer.json() == {"accepted": 1, "duplicates": 3}
    assert [e.sequence_number for e in platform.state.audit_entries(lock)] == [0, 1, 2, 3]
    assert platform.state.duplicate_submissions == 3
    system = await platform.client.post(
        f"/mobile/locking-device/{lock}/system-log",
        json={"entries": first[:1]},
        headers=mobile(token),
    )
    assert system.json() == {"accepted": 1, "duplicates": 0}
    assert len(platform.state.system_entries(lock)) == 1


async def test_log_submission_refuses_entries_the_lock_did_not_sign(platform: Platform) -> None:
    user, lock = await platform.user(), platform.claimed_lock()
    device, token = await platform.device(user)
    path = f"/mobile/locking-device/{lock}/audit-log"
    stranger = audit_blob(0, device, T0, key=NEW_LOCK_KEY)
    answer = await platform.client.post(path, json={"entries": [stranger]}, headers=mobile(token))
    assert_problem(answer, 400, "entries.0: the signature does not verify")
    tampered = bytearray(base64.b64decode(audit_blob(0, device, T0)))
    tampered[40] ^= 1
    answer = await platform.client.post(
        path, json={"entries": [b64(bytes(tampered))]}, headers=mobile(token)
    )
    assert_problem(answer, 400, "entries.0")
    answer = await platform.client.post(path, json={"entries": ["%%%"]}, headers=mobile(token))
    assert_problem(answer, 400, "not base64")
    assert platform.state.audit_entries(lock) == []


async def test_audit_log_filters_and_sort_direction(platform: Platform) -> None:
    user, lock = await platform.user(), platform.claimed_lock()
    device, token = await platform.device(user)
    entries = [audit_blob(n, device, T0 + dt.timedelta(minutes=n)) for n in range(6)]
    await platform.client.post(
        f"/mobile/locking-device/{lock}/audit-log", json={"entries": entries}, headers=mobile(token)
    )
    query = {"locking-device-id": lock}
    listed = await platform.ok("GET", "/locking-device-audit-log", params=query)
    assert [item["sequenceNumber"] for item in listed["items"]] == list(range(6))
    first = listed["items"][1]
    assert first["client"] == {
        "type": "OPERATING_DEVICE",
        "operatingDeviceId": device,
        "userId": user,
    }
    assert first["granted"] is True and listed["items"][0]["granted"] is False
    assert first["eventName"] == "open"
    greater = await platform.ok(
        "GET", "/locking-device-audit-log", params=query | {"sequence-number-greater-than": "3"}
    )
    assert [item["sequenceNumber"] for item in greater["items"]] == [4, 5]
    after = await platform.ok(
        "GET",
        "/locking-device-audit-log",
        params=query
        | {"after-datetime": iso(T0 + dt.timedelta(minutes=2)), "sort-direction": "DESC"},
    )
    assert [item["sequenceNumber"] for item in after["items"]] == [5, 4, 3]
    pages: list[int] = []
    params = query | {"sort-direction": "DESC", "limit": "4"}
    while True:
        page = await platform.ok("GET", "/locking-device-audit-log", params=params)
        pages.extend(item["sequenceNumber"] for item in page["items"])
        if "nextPageToken" not in page:
            break
        params = params | {"next-page-token": page["nextPageToken"]}
    assert pages == [5, 4, 3, 2, 1, 0]
    bad = [
        (
            {"sequence-number-greater-than": "-1"},
            "sequence-number-greater-than must be an integer >= 0",
        ),
        ({"after-datetime": "yesterday"}, "after-datetime must be an ISO 8601 date-time"),
        ({"after-datetime": "2030-01-01T00:00:00"}, "time zone"),
        ({"sort-direction": "UP"}, "sort-direction must be ASC or DESC"),
        ({"locking-device-id": "x"}, "locking-device-id must be a UUID"),
    ]
    for override, detail in bad:
        response = await platform.call("GET", "/locking-device-system-log", params=query | override)
        assert_problem(response, 400, detail)
    unknown = {"locking-device-id": platform.state.new_id()}
    assert_problem(
        await platform.call("GET", "/locking-device-audit-log", params=unknown), 404, "not found"
    )


# --- gateways, associations, remote commands ------------------------------------------------


async def test_gateways_associations_and_remote_commands(platform: Platform) -> None:
    state = platform.state
    state.add_gateway_hardware("2K7H-ASR3", "BGWA1DD2E00004")
    assert_problem(
        await platform.call("POST", "/gateway-device", json={"claimingCode": "NOPE-NOPE"}),
        404,
        "claiming code",
    )
    gateway = await platform.ok("POST", "/gateway-device", 201, json={"claimingCode": "2K7H-ASR3"})
    assert gateway["activationStatus"] == "PENDING_ACTIVATION"
    assert_problem(
        await platform.call("POST", "/gateway-device", json={"claimingCode": "2K7H-ASR3"}),
        409,
        "already claimed",
    )
    gateway_id = gateway["id"]
    lock = platform.claimed_lock()
    others = [await platform.lock(f"Gate {n}") for n in range(5)]
    for other in [lock, *others[:4]]:
        body = {"gatewayDeviceId": gateway_id, "lockingDeviceId": other}
        await platform.ok("POST", "/gateway-device-association", 201, json=body)
    sixth = {"gatewayDeviceId": gateway_id, "lockingDeviceId": others[4]}
    assert_problem(
        await platform.call("POST", "/gateway-device-association", json=sixth),
        409,
        "maximum of 5 locking devices",
    )
    again = {"gatewayDeviceId": gateway_id, "lockingDeviceId": lock}
    assert_problem(
        await platform.call("POST", "/gateway-device-association", json=again),
        409,
        "already associated",
    )
    associations = await walk(
        platform, "/gateway-device-association", 2, **{"gateway-device-id": gateway_id}
    )
    assert len(associations) == 5

    command = {"gatewayDeviceId": gateway_id, "lockingDeviceId": lock, "action": "OPEN"}
    assert_problem(await platform.call("POST", "/remote-command", json=command), 409, "activated")
    state.activate_gateway(gateway_id)
    unassociated = command | {"lockingDeviceId": others[4]}
    assert_problem(
        await platform.call("POST", "/remote-command", json=unassociated), 409, "associated"
    )
    unclaimed = command | {"lockingDeviceId": others[0]}
    assert_problem(await platform.call("POST", "/remote-command", json=unclaimed), 409, "claimed")
    assert_problem(
        await platform.call("POST", "/remote-command", json=command | {"action": "CLOSE"}),
        400,
        "action",
    )
    issued = await platform.ok("POST", "/remote-command", 201, json=command)
    assert issued["validityStartDatetime"] == iso(T0)
    assert issued["validityEndDatetime"] == iso(T0 + dt.timedelta(minutes=5))
    await platform.ok("POST", f"/remote-command/{issued['id']}/cancel", 204)
    assert_problem(
        await platform.call("POST", f"/remote-command/{issued['id']}/cancel"), 409, "canceled"
    )
    acknowledged = await platform.ok("POST", "/remote-command", 201, json=command)
    state.acknowledge_remote_command(acknowledged["id"])
    assert_problem(
        await platform.call("POST", f"/remote-command/{acknowledged['id']}/cancel"),
        409,
        "acknowledged",
    )
    fetched = await platform.ok("GET", f"/remote-command/{issued['id']}")
    assert fetched["cancelerUserId"] == state.admin_user_id
    listed = await platform.ok("GET", "/remote-command", params={"gateway-device-id": gateway_id})
    assert len(listed["items"]) == 2

    await platform.ok("DELETE", f"/gateway-device/{gateway_id}", 204)
    assert (await platform.ok("GET", "/gateway-device-association"))["items"] == []
    assert_problem(await platform.call("GET", f"/gateway-device/{gateway_id}"), 404, "not found")
    assert_problem(
        await platform.call(
            "GET", "/gateway-device-audit-log", params={"gateway-device-id": gateway_id}
        ),
        404,
        "not found",
    )
