"""The Keyless Administration API client (and the /mobile stand-in client) over httpx.MockTransport:
headers, login and refresh, 401 once, 429 with Retry-After, problem+json, unknown fields,
pagination, and every client-side rule broken once without a request leaving."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from blelock.cloud._http import RetryPolicy
from blelock.config import Settings, load_settings
from blelock.errors import (
    AuthFailed,
    CloudRejected,
    ConfigError,
    RateLimited,
    UnknownLock,
    UsageError,
)
from blelock.vendors.keyless import protocol as kp
from blelock.vendors.keyless.cloud import KeylessCloud, KeylessMobile
from blelock.vendors.keyless.models import (
    ClaimingStatus,
    KeylessLimits,
    OfflineKeyDelivery,
    OperationType,
    Role,
    check_offline_key,
    check_page_limit,
    check_permission,
    format_duration,
    parse_duration,
)
from simulators.keyless_cloud import KeylessPlatformState, keyless_app, register_lock

API_KEY = "api-key-0123456789abcdef"
USER_ID = "558aef6a-de33-4e6c-8219-1eab9727ae94"
ACCESS_KEY = "mA4OKvw59GXsivxQ0TSfg0BISsr94jyYVbNlFVr0Nn4="
LOCK_ID = "02828588-2c7f-4847-b011-e489eb01f872"
OTHER_ID = "1b1ef362-bdea-4313-9841-367f5dd90893"
GATEWAY_ID = "c78afb03-a06e-4da9-afca-edce82ffad9f"
MEDIA = "application/vnd.assaabloy.keyless.administration-2+json"
T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
QUICK = RetryPolicy(attempts=3, base_s=0.001, cap_s=0.002, max_retry_after_s=30)
LOCK_JSON = {"id": LOCK_ID, "name": "Front Gate", "claimingStatus": "UNCLAIMED"}


class FakeClock:
    """Monotonic time that moves only when told to (or when the client sleeps)."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = T0
        self.sleeps: list[float] = []

    def now_utc(self) -> dt.datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += seconds

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += dt.timedelta(seconds=seconds)


Route = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


@dataclass
class FakePlatform:
    """Logins hand out numbered tokens; other routes answer from ``routes`` (method, path)."""

    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    valid_tokens: set[str] = field(default_factory=set)
    requests: list[httpx.Request] = field(default_factory=list)
    bearers: list[str] = field(default_factory=list)
    """Authorization as sent: a retried request is the same object, its header rewritten."""
    logins: int = 0
    login_delay_steps: int = 0
    reject_tokens: bool = False

    def on(self, method: str, path: str, route: Route) -> None:
        self.routes[(method, path)] = route

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bearers.append(request.headers.get("Authorization", ""))
        if request.url.path in ("/administration/login", "/administration/mobile/login"):
            for _ in range(self.login_delay_steps):  # lets concurrent callers pile up
                await asyncio.sleep(0)
            self.logins += 1
            token = f"token-{self.logins}"
            self.valid_tokens.add(token)
            return httpx.Response(200, json={"token": token})
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if request.url.path != "/administration/mobile/activation" and (
            self.reject_tokens or bearer not in self.valid_tokens
        ):
            return problem(401, "Unauthorized", "token expired")
        route = self.routes.get((request.method, request.url.path.removeprefix("/administration")))
        if route is None:
            return problem(404, "Not Found", "Resource not found")
        answer = route(request)
        return await answer if isinstance(answer, Awaitable) else answer


def problem(status: int, title: str, detail: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": "about:blank", "title": title, "status": status, "detail": detail},
        headers={"Content-Type": "application/problem+json", **headers},
    )


def ok(body: object, status: int = 200) -> Route:
    return lambda request: httpx.Response(status, json=body)


def cloud_for(
    platform: FakePlatform, clock: FakeClock | None = None, retry: RetryPolicy = QUICK
) -> KeylessCloud:
    return KeylessCloud(
        "https://eu-api.keyless.test/administration",
        API_KEY,
        USER_ID,
        ACCESS_KEY,
        transport=httpx.MockTransport(platform),
        retry=retry,
        clock=clock or FakeClock(),
    )


@pytest.fixture
def platform() -> FakePlatform:
    fake = FakePlatform()
    fake.on("GET", f"/locking-device/{LOCK_ID}", ok(LOCK_JSON))
    return fake


# --- headers and authentication -------------------------------------------------------------


async def test_every_call_carries_api_key_bearer_and_vendor_media_type(
    platform: FakePlatform,
) -> None:
    async with cloud_for(platform) as cloud:
        device = await cloud.get_locking_device(LOCK_ID)
    assert device.name == "Front Gate"
    login, call = platform.requests
    assert login.url.path == "/administration/login" and login.method == "POST"
    assert json.loads(login.content) == {"userId": USER_ID, "accessKey": ACCESS_KEY}
    for request in (login, call):
        assert request.headers["X-Api-Key"] == API_KEY
        assert request.headers["Accept"] == MEDIA
    assert call.headers["Authorization"] == "Bearer token-1"


async def test_token_is_reused_then_refreshed_a_margin_before_the_hour(
    platform: FakePlatform,
) -> None:
    clock = FakeClock()
    margin = KeylessLimits.TOKEN_REFRESH_MARGIN.total_seconds()
    hour = KeylessLimits.TOKEN_LIFETIME.total_seconds()
    async with cloud_for(platform, clock) as cloud:
        await cloud.get_locking_device(LOCK_ID)
        clock.advance(hour - margin - 1)
        await cloud.get_locking_device(LOCK_ID)
        assert platform.logins == 1
        clock.advance(2)
        await cloud.get_locking_device(LOCK_ID)
        assert platform.logins == 2
    assert platform.requests[-1].headers["Authorization"] == "Bearer token-2"


async def test_a_401_logs_in_once_more_and_repeats_the_call(platform: FakePlatform) -> None:
    async with cloud_for(platform) as cloud:
        await cloud.get_locking_device(LOCK_ID)
        platform.valid_tokens.clear()  # the platform forgot our token (e.g. rotated keys)
        device = await cloud.get_locking_device(LOCK_ID)
    assert device.id == LOCK_ID
    assert platform.logins == 2
    assert [bearer for bearer in platform.bearers if bearer] == [
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-2",
    ]


async def test_a_second_401_after_a_fresh_login_is_auth_failed(platform: FakePlatform) -> None:
    platform.reject_tokens = True
    async with cloud_for(platform) as cloud:
        with pytest.raises(AuthFailed) as caught:
            await cloud.get_locking_device(LOCK_ID)
    assert platform.logins == 2
    assert caught.value.status == 401
    assert "keyless_access_key" in (caught.value.hint or "")
    assert ACCESS_KEY not in caught.value.one_line() and API_KEY not in caught.value.one_line()


async def test_concurrent_calls_share_one_login(platform: FakePlatform) -> None:
    platform.login_delay_steps = 5
    async with cloud_for(platform) as cloud:
        devices = await asyncio.gather(*(cloud.get_locking_device(LOCK_ID) for _ in range(6)))
    assert len(devices) == 6
    assert platform.logins == 1


async def test_bad_api_key_is_403_naming_the_api_key(platform: FakePlatform) -> None:
    async def forbidden(request: httpx.Request) -> httpx.Response:
        return problem(403, "Forbidden", "Invalid API key")

    async with KeylessCloud(
        "https://eu-api.keyless.test/administration/",
        API_KEY,
        USER_ID,
        ACCESS_KEY,
        transport=httpx.MockTransport(forbidden),
        retry=QUICK,
        clock=FakeClock(),
    ) as cloud:
        with pytest.raises(AuthFailed) as caught:
            await cloud.get_locking_device(LOCK_ID)
    assert caught.value.status == 403
    assert "API key" in caught.value.message and "keyless_api_key" in (caught.value.hint or "")
    assert API_KEY not in caught.value.one_line()


async def test_refused_credentials_at_login_name_the_user_not_the_key() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        return problem(401, "Unauthorized", "Bad credentials")

    cloud = KeylessCloud(
        "https://x.test/administration/",
        API_KEY,
        USER_ID,
        ACCESS_KEY,
        transport=httpx.MockTransport(refuse),
        clock=FakeClock(),
    )
    async with cloud:
        with pytest.raises(AuthFailed) as caught:
            await cloud.get_locking_device(LOCK_ID)
    assert USER_ID in caught.value.message and "Bad credentials" in caught.value.message
    assert ACCESS_KEY not in caught.value.one_line()


# --- rate limiting and retries --------------------------------------------------------------


async def test_429_waits_for_retry_after_then_succeeds(platform: FakePlatform) -> None:
    answers = iter([problem(429, "Too Many Requests", "slow down", **{"Retry-After": "7"})])
    platform.on(
        "GET",
        f"/locking-device/{LOCK_ID}",
        lambda r: next(answers, httpx.Response(200, json=LOCK_JSON)),
    )
    clock = FakeClock()
    async with cloud_for(platform, clock) as cloud:
        device = await cloud.get_locking_device(LOCK_ID)
    assert device.id == LOCK_ID
    assert clock.sleeps == [7.0]


async def test_429_that_persists_is_rate_limited_after_bounded_attempts(
    platform: FakePlatform,
) -> None:
    platform.on(
        "POST",
        "/locking-device",
        lambda r: problem(429, "Too Many Requests", "x", **{"Retry-After": "1"}),
    )
    clock = FakeClock()
    async with cloud_for(platform, clock) as cloud:
        with pytest.raises(RateLimited) as caught:
            await cloud.create_locking_device("Gate")
    assert len(platform.calls("/administration/locking-device")) == QUICK.attempts
    assert clock.sleeps == [1.0] * (QUICK.attempts - 1)
    assert caught.value.retry_after == 1.0 and "after 3 attempts" in caught.value.message


async def test_a_retry_after_beyond_the_bound_is_not_waited_for(platform: FakePlatform) -> None:
    platform.on(
        "GET", "/user", lambda r: problem(429, "Too Many Requests", "x", **{"Retry-After": "3600"})
    )
    clock = FakeClock()
    async with cloud_for(platform, clock) as cloud:
        with pytest.raises(RateLimited) as caught:
            [user async for user in cloud.users()]
    assert clock.sleeps == [] and len(platform.calls("/administration/user")) == 1
    assert "3600" in caught.value.message


async def test_server_errors_retry_reads_but_not_creations(platform: FakePlatform) -> None:
    platform.on("GET", "/user", lambda r: problem(503, "Service Unavailable", "busy"))
    platform.on("POST", "/user", lambda r: problem(503, "Service Unavailable", "busy"))
    async with cloud_for(platform) as cloud:
        with pytest.raises(CloudRejected):
            [user async for user in cloud.users()]
        with pytest.raises(CloudRejected) as caught:
            await cloud.create_user("USER")  # type: ignore[arg-type]
    reads = [r for r in platform.calls("/administration/user") if r.method == "GET"]
    writes = [r for r in platform.calls("/administration/user") if r.method == "POST"]
    assert len(reads) == QUICK.attempts and len(writes) == 1
    assert caught.value.status == 503


# --- problem+json -----------------------------------------------------------------------------


async def test_unknown_locking_device_is_unknown_lock_naming_it(platform: FakePlatform) -> None:
    async with cloud_for(platform) as cloud:
        with pytest.raises(UnknownLock) as caught:
            await cloud.get_locking_device(OTHER_ID)
    assert OTHER_ID in caught.value.message and "Resource not found" in caught.value.message


async def test_unknown_user_is_cloud_rejected_naming_it(platform: FakePlatform) -> None:
    async with cloud_for(platform) as cloud:
        with pytest.raises(CloudRejected) as caught:
            await cloud.delete_user(OTHER_ID)
    assert not isinstance(caught.value, UnknownLock)
    assert f"user {OTHER_ID}" in caught.value.message and caught.value.status == 404


@pytest.mark.parametrize("status", [400, 409, 422])
async def test_refusals_quote_the_vendor_detail(platform: FakePlatform, status: int) -> None:
    platform.on(
        "POST",
        "/permission",
        lambda r: problem(status, "Conflict", "user already has a permission"),
    )
    async with cloud_for(platform) as cloud:
        with pytest.raises(CloudRejected) as caught:
            await cloud.grant_permission(
                USER_ID, LOCK_ID, OperationType.OPEN, T0, T0 + dt.timedelta(hours=1)
            )
    assert caught.value.status == status
    assert "user already has a permission" in caught.value.message
    assert len(platform.calls("/administration/permission")) == 1


async def test_an_answer_that_is_not_json_is_rejected(platform: FakePlatform) -> None:
    platform.on("GET", f"/locking-device/{LOCK_ID}", lambda r: httpx.Response(200, text="<html>"))
    async with cloud_for(platform) as cloud:
        with pytest.raises(CloudRejected, match="not JSON"):
            await cloud.get_locking_device(LOCK_ID)


async def test_an_answer_of_the_wrong_shape_names_the_field(platform: FakePlatform) -> None:
    platform.on("GET", f"/locking-device/{LOCK_ID}", ok({"id": LOCK_ID}))
    async with cloud_for(platform) as cloud:
        with pytest.raises(CloudRejected, match="name"):
            await cloud.get_locking_device(LOCK_ID)


# --- answers, bodies and pages ----------------------------------------------------------------


async def test_unknown_fields_are_ignored(platform: FakePlatform) -> None:
    claimed = {
        "id": LOCK_ID,
        "name": "Backyard Gate",
        "claimingStatus": "CLAIMED",
        "serialNumber": "BPLAD123456",
        "operationalCertificate": {
            "eligibleForReKeying": True,
            "expirationDatetime": "2027-07-16T08:00:00Z",
            "revoked": False,
            "profileV3": "new in 2.99",
        },
        "hardwareModel": "PADLOCK",
        "batteryLevel": 87,
    }
    platform.on("GET", f"/locking-device/{LOCK_ID}", ok(claimed))
    async with cloud_for(platform) as cloud:
        device = await cloud.get_locking_device(LOCK_ID)
    assert device.serial_number == "BPLAD123456"
    assert device.operational_certificate is not None
    assert device.operational_certificate.eligible_for_re_keying is True


async def test_lists_follow_next_page_token_lazily_with_filters(platform: FakePlatform) -> None:
    pages = {
        None: {"nextPageToken": "p2", "items": [{**LOCK_JSON, "name": "a"}]},
        "p2": {"nextPageToken": "p3", "items": []},
        "p3": {"items": [{**LOCK_JSON, "name": "b"}, {**LOCK_JSON, "name": "c"}]},
    }
    platform.on(
        "GET",
        "/locking-device",
        lambda r: httpx.Response(200, json=pages[r.url.params.get("next-page-token")]),
    )
    async with cloud_for(platform) as cloud:
        names = [d.name async for d in cloud.locking_devices(claiming_status="UNCLAIMED", limit=2)]  # type: ignore[arg-type]
        first = cloud.locking_devices()
        await anext(first)
        await first.aclose()
    assert names == ["a", "b", "c"]
    calls = platform.calls("/administration/locking-device")
    assert [c.url.params.get("next-page-token") for c in calls] == [None, "p2", "p3", None]
    assert all(c.url.params["claiming-status"] == "UNCLAIMED" for c in calls[:3])
    assert [c.url.params["limit"] for c in calls] == ["2", "2", "2", "50"]


async def test_a_page_token_handed_out_twice_stops_the_listing(platform: FakePlatform) -> None:
    platform.on(
        "GET", "/user", ok({"nextPageToken": "same", "items": [{"id": USER_ID, "role": "USER"}]})
    )
    async with cloud_for(platform) as cloud:
        with pytest.raises(CloudRejected, match="page token twice"):
            [user async for user in cloud.users()]
    assert len(platform.calls("/administration/user")) == 2


async def test_rename_is_a_json_patch(platform: FakePlatform) -> None:
    platform.on("PATCH", f"/locking-device/{LOCK_ID}", lambda r: httpx.Response(204))
    async with cloud_for(platform) as cloud:
        await cloud.rename_locking_device(LOCK_ID, "Back Gate")
    (patch,) = [r for r in platform.requests if r.method == "PATCH"]
    assert patch.headers["Content-Type"] == "application/json-patch+json"
    assert json.loads(patch.content) == [{"op": "replace", "path": "/name", "value": "Back Gate"}]


async def test_permission_body_is_camel_case_with_iso_times_and_durations(
    platform: FakePlatform,
) -> None:
    platform.on("POST", "/permission", ok({"id": OTHER_ID, "unexpected": 1}, 201))
    async with cloud_for(platform) as cloud:
        permission_id = await cloud.grant_permission(
            USER_ID, LOCK_ID, OperationType.UPDATE_TIME, T0, T0 + dt.timedelta(days=2)
        )
    assert permission_id == OTHER_ID
    (sent,) = [r for r in platform.requests if r.method == "POST" and "permission" in r.url.path]
    assert json.loads(sent.content) == {
        "permissionType": "SINGLE_INTERVAL",
        "userId": USER_ID,
        "lockingDeviceId": LOCK_ID,
        "operationType": "UPDATE_TIME",
        "operatingKeyValidityDuration": "P8D",
        "start": "2030-01-01T12:00:00Z",
        "end": "2030-01-03T12:00:00Z",
    }


async def test_logs_send_their_filters(platform: FakePlatform) -> None:
    entry = {
        "id": OTHER_ID,
        "lockingDeviceId": LOCK_ID,
        "eventName": "unlock",
        "occurrenceDatetime": "2030-01-01T12:00:00Z",
        "sequenceNumber": 11,
        "client": {"type": "OPERATING_DEVICE", "operatingDeviceId": OTHER_ID, "userId": USER_ID},
        "granted": True,
    }
    platform.on("GET", "/locking-device-audit-log", ok({"items": [entry]}))
    async with cloud_for(platform) as cloud:
        entries = [
            e
            async for e in cloud.locking_device_audit_log(
                LOCK_ID,
                sequence_number_greater_than=10,
                after=T0,
                sort="DESC",  # type: ignore[arg-type]
            )
        ]
    assert entries[0].sequence_number == 11 and entries[0].granted
    params = platform.calls("/administration/locking-device-audit-log")[0].url.params
    assert params["locking-device-id"] == LOCK_ID
    assert params["sequence-number-greater-than"] == "10"
    assert params["after-datetime"] == "2030-01-01T12:00:00Z"
    assert params["sort-direction"] == "DESC"


async def test_offline_key_values_are_secret_and_alternative_is_kept(
    platform: FakePlatform,
) -> None:
    issued = {
        "primaryKey": {"id": OTHER_ID, "value": "PRIMARY-SECRET-VALUE"},
        "alternativeKey": {"id": LOCK_ID, "value": "ALTERNATIVE-SECRET-VALUE"},
        "startDatetime": "2030-01-01T12:00:00Z",
        "endDatetime": "2030-01-02T12:00:00Z",
    }
    platform.on("POST", "/offline-key", ok(issued, 201))
    async with cloud_for(platform) as cloud:
        key = await cloud.issue_offline_key(
            OTHER_ID,
            LOCK_ID,
            T0,
            T0 + dt.timedelta(hours=24),
            delivery=OfflineKeyDelivery.SMS_WITH_APP_LINK,
            phone_number="+358506722871",
            app_link_base_url="https://open.example.com",
        )
    assert key.primary_key.value.get_secret_value() == "PRIMARY-SECRET-VALUE"
    assert key.alternative_key is not None
    assert "SECRET" not in repr(key)
    sent = json.loads(platform.calls("/administration/offline-key")[0].content)
    assert sent["deliveryMechanism"] == "SMS_WITH_APP_LINK"
    assert sent["appLinkBaseUrl"] == "https://open.example.com"
    assert sent["endDatetime"] == "2030-01-02T12:00:00Z"


async def test_secrets_stay_out_of_reprs(platform: FakePlatform) -> None:
    platform.on(
        "POST", "/user", ok({"id": OTHER_ID, "role": "USER", "accessKey": "NEWUSERKEY"}, 201)
    )
    async with cloud_for(platform) as cloud:
        created = await cloud.create_user("USER")  # type: ignore[arg-type]
        texts = [repr(cloud), repr(cloud.auth), repr(created)]
    assert created.access_key.get_secret_value() == "NEWUSERKEY"
    for text in texts:
        assert API_KEY not in text and ACCESS_KEY not in text and "NEWUSERKEY" not in text
        assert "token-1" not in text


# --- client-side rules: each broken once, nothing sent ---------------------------------------

LATER = T0 + dt.timedelta(hours=1)
Call = Callable[[KeylessCloud], Any]

RULES: list[tuple[str, Call, str]] = [
    ("limit too small", lambda c: c.users(limit=0), "limit must be between 1 and 100"),
    ("limit too big", lambda c: c.locking_devices(limit=101), "limit must be between 1 and 100"),
    ("id not uuid", lambda c: c.get_locking_device("../user"), "must be a UUID"),
    ("empty name", lambda c: c.create_locking_device(""), "name must be 1 to 255 characters"),
    ("long name", lambda c: c.rename_locking_device(LOCK_ID, "x" * 256), "name must be 1 to 255"),
    (
        "invitation validity zero",
        lambda c: c.invite_operating_device(USER_ID, validity=dt.timedelta(0)),
        "validity must be more than 0 seconds and at most 365 days",
    ),
    (
        "invitation validity > 365 d",
        lambda c: c.invite_operating_device(USER_ID, validity=dt.timedelta(days=366)),
        "at most 365 days",
    ),
    (
        "invitation sms without phone",
        lambda c: c.invite_operating_device(USER_ID, delivery="SMS"),
        "SMS delivery needs a phone number",
    ),
    (
        "invitation phone not e164",
        lambda c: c.invite_operating_device(USER_ID, delivery="SMS", phone_number="0501234567"),
        "E.164",
    ),
    (
        "permission naive time",
        lambda c: c.grant_permission(USER_ID, LOCK_ID, "OPEN", T0.replace(tzinfo=None), LATER),
        "permission: start must carry a time zone",
    ),
    (
        "permission end before start",
        lambda c: c.grant_permission(USER_ID, LOCK_ID, "OPEN", LATER, T0),
        "permission: end must be after start",
    ),
    (
        "permission key validity < 1 d",
        lambda c: c.grant_permission(
            USER_ID, LOCK_ID, "OPEN", T0, LATER, operating_key_validity=dt.timedelta(hours=23)
        ),
        "operating key validity must be between 1 and 31 days",
    ),
    (
        "permission key validity > 31 d",
        lambda c: c.update_permission(
            OTHER_ID,
            USER_ID,
            LOCK_ID,
            "OPEN",
            T0,
            LATER,
            operating_key_validity=dt.timedelta(days=32),
        ),
        "operating key validity must be between 1 and 31 days",
    ),
    (
        "permission bad operation",
        lambda c: c.grant_permission(USER_ID, LOCK_ID, "CLOSE", T0, LATER),
        "permission: operationType must be one of OPEN, UPDATE_FIRMWARE, UPDATE_TIME",
    ),
    (
        "offline key start > now + 30 d",
        lambda c: c.issue_offline_key(
            OTHER_ID,
            LOCK_ID,
            T0 + dt.timedelta(days=30, seconds=1),
            T0 + dt.timedelta(days=30, hours=1),
        ),
        "offline key: start must be at most 30 days from now",
    ),
    (
        "offline key end > start + 24 h",
        lambda c: c.issue_offline_key(
            OTHER_ID, LOCK_ID, T0, T0 + dt.timedelta(hours=24, seconds=1)
        ),
        "offline key: end must be at most 24 h after start",
    ),
    (
        "offline key end before start",
        lambda c: c.issue_offline_key(OTHER_ID, LOCK_ID, LATER, T0),
        "offline key: end must be after start",
    ),
    (
        "offline key sms without phone",
        lambda c: c.issue_offline_key(
            OTHER_ID, LOCK_ID, T0, LATER, delivery=OfflineKeyDelivery.SMS_WITHOUT_APP_LINK
        ),
        "offline key: SMS delivery needs a phone number",
    ),
    (
        "offline key app link too long",
        lambda c: c.issue_offline_key(
            OTHER_ID,
            LOCK_ID,
            T0,
            LATER,
            delivery=OfflineKeyDelivery.SMS_WITH_APP_LINK,
            phone_number="+358506722871",
            app_link_base_url="https://" + "a" * 30 + ".example.com",
        ),
        "appLinkBaseUrl must be at most 42 characters",
    ),
    (
        "offline key app link not a url",
        lambda c: c.issue_offline_key(
            OTHER_ID, LOCK_ID, T0, LATER, app_link_base_url="keyless.example"
        ),
        "appLinkBaseUrl must be an http(s) URL",
    ),
    (
        "log negative sequence number",
        lambda c: c.locking_device_system_log(LOCK_ID, sequence_number_greater_than=-1),
        "sequence-number-greater-than must be at least 0",
    ),
    (
        "log naive after-datetime",
        lambda c: c.locking_device_audit_log(LOCK_ID, after=dt.datetime(2030, 1, 1)),
        "after-datetime must carry a time zone",
    ),
    ("gateway empty claiming code", lambda c: c.claim_gateway("  "), "claiming code"),
    (
        "remote command bad action",
        lambda c: c.issue_remote_command(GATEWAY_ID, LOCK_ID, "UNLOCK_FOREVER"),
        "remote command: action must be one of OPEN",
    ),
]


async def invoke(call: Call, cloud: KeylessCloud) -> None:
    """A coroutine is awaited; a list's async iterator is checked when it is made."""
    result = call(cloud)
    if isinstance(result, Awaitable):
        await result


@pytest.mark.parametrize(("rule", "call", "says"), RULES, ids=[r[0] for r in RULES])
async def test_client_side_rule_refuses_before_sending(
    platform: FakePlatform, rule: str, call: Call, says: str
) -> None:
    async with cloud_for(platform) as cloud:
        with pytest.raises(UsageError) as caught:
            await invoke(call, cloud)
    assert platform.requests == []
    assert says in caught.value.message


async def test_a_sixth_association_is_refused_before_posting(platform: FakePlatform) -> None:
    existing = [
        {
            "id": f"00000000-0000-4000-8000-00000000000{i}",
            "gatewayDeviceId": GATEWAY_ID,
            "lockingDeviceId": f"00000000-0000-4000-8000-10000000000{i}",
        }
        for i in range(KeylessLimits.ASSOCIATIONS_PER_GATEWAY_MAX)
    ]
    platform.on("GET", "/gateway-device-association", ok({"items": existing}))
    async with cloud_for(platform) as cloud:
        with pytest.raises(UsageError, match="at most 5 locking devices"):
            await cloud.associate(GATEWAY_ID, LOCK_ID)
    assert not [r for r in platform.requests if r.method == "POST" and "association" in r.url.path]
    (listing,) = platform.calls("/administration/gateway-device-association")
    assert listing.url.params["gateway-device-id"] == GATEWAY_ID


def test_the_limits_at_the_boundaries_are_allowed() -> None:
    check_page_limit(1)
    check_page_limit(100)
    check_permission(T0, LATER, dt.timedelta(days=1))
    check_permission(T0, LATER, dt.timedelta(days=31))
    check_offline_key(
        T0 + dt.timedelta(days=30),
        T0 + dt.timedelta(days=31),
        T0,
        OfflineKeyDelivery.SMS_WITH_APP_LINK,
        "+358506722871",
        "https://" + "a" * 34,
    )


def test_durations_round_trip() -> None:
    for text, value in [
        ("P8D", dt.timedelta(days=8)),
        ("PT24H", dt.timedelta(hours=24)),
        ("P1DT12H", dt.timedelta(days=1, hours=12)),
        ("PT1M30S", dt.timedelta(seconds=90)),
    ]:
        assert parse_duration(text) == value
        assert parse_duration(format_duration(value)) == value
    assert format_duration(dt.timedelta(days=8)) == "P8D"
    for bad in ("P", "PT", "P1Y", "8D", "P1DT"):
        with pytest.raises(ValueError, match="ISO 8601"):
            parse_duration(bad)


# --- settings ---------------------------------------------------------------------------------


def keyless_settings(**section: object) -> Settings:
    """Settings with only these fields of the [keyless] section set."""
    return load_settings(environ={}, read_file=False).with_section("keyless", **section)


def test_from_settings_names_what_is_missing() -> None:
    with pytest.raises(ConfigError) as caught:
        KeylessCloud.from_settings(keyless_settings(api_key=SecretStr(API_KEY)))
    assert "[keyless]" in caught.value.message
    assert "user_id" in caught.value.message
    assert "access_key" in caught.value.message
    assert "api_key" not in caught.value.message
    assert "BLELOCK_KEYLESS__USER_ID" in (caught.value.hint or "")


async def test_from_settings_builds_a_working_client() -> None:
    settings = keyless_settings(
        url="https://eu-api.keyless.test/administration",
        api_key=SecretStr(API_KEY),
        user_id=USER_ID,
        access_key=SecretStr(ACCESS_KEY),
    )
    cloud = KeylessCloud.from_settings(settings)
    try:
        assert cloud.host == "eu-api.keyless.test"
        assert API_KEY not in repr(cloud)
    finally:
        await cloud.aclose()


# --- the /mobile stand-in ---------------------------------------------------------------------

DEVICE_ID = "07ca923d-80af-40d1-ae3c-31b0477ad648"
PUBLIC_KEY = b"\x04" + bytes(range(64))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_mobile_activates_logs_in_and_decodes_keys() -> None:
    fake = FakePlatform()
    fake.on(
        "POST",
        "/mobile/activation",
        ok({"operatingDeviceId": DEVICE_ID, "accessKey": "DEVKEY"}, 201),
    )
    fake.on(
        "GET",
        "/mobile/operating-keys",
        ok(
            {
                "items": [
                    {
                        "lockingDeviceId": LOCK_ID,
                        "keyId": OTHER_ID,
                        "grant": b64(b"G"),
                        "notAfter": "2030-01-09T12:00:00Z",
                        "certificate": b64(b"CERT"),
                        "extra": "ignored",
                    }
                ]
            }
        ),
    )
    fake.on(
        "GET",
        "/mobile/offline-keys",
        ok(
            {
                "items": [
                    {
                        "offlineKeyId": OTHER_ID,
                        "lockingDeviceId": LOCK_ID,
                        "start": "2030-01-01T12:00:00Z",
                        "end": "2030-01-02T12:00:00Z",
                        "primary": {"grant": b64(b"P"), "privateKey": b64(b"PRIVATE-DER")},
                        "alternative": None,
                    }
                ]
            }
        ),
    )
    fake.on(
        "GET",
        f"/mobile/locking-device/{LOCK_ID}/certificate",
        lambda r: problem(404, "Not Found", "none pending"),
    )
    fake.on(
        "POST", f"/mobile/locking-device/{LOCK_ID}/audit-log", ok({"accepted": 2, "duplicates": 0})
    )
    fake.on("GET", "/mobile/ca", ok({"certificate": b64(b"CA-DER")}))
    mobile = KeylessMobile(
        "https://eu-api.keyless.test/administration/",
        api_key=API_KEY,
        transport=httpx.MockTransport(fake),
        retry=QUICK,
        clock=FakeClock(),
    )
    async with mobile:
        activation = await mobile.activate("CODE-123", PUBLIC_KEY)
        keys = await mobile.operating_keys()
        offline = await mobile.offline_keys()
        pending = await mobile.certificate(LOCK_ID)
        upload = await mobile.upload_audit_log(LOCK_ID, [b"e1", b"e2"])
        ca = await mobile.platform_ca()
    activate, login = fake.requests[:2]
    assert json.loads(activate.content) == {
        "invitationCode": "CODE-123",
        "publicKey": b64(PUBLIC_KEY),
    }
    assert "Authorization" not in activate.headers and activate.headers["X-Api-Key"] == API_KEY
    assert json.loads(login.content) == {"operatingDeviceId": DEVICE_ID, "accessKey": "DEVKEY"}
    assert activation.operating_device_id == DEVICE_ID and "DEVKEY" not in repr(activation)
    assert keys[0].grant == b"G" and keys[0].certificate == b"CERT"
    assert offline[0].primary.private_key.get_secret_value() == b"PRIVATE-DER"
    assert "PRIVATE" not in repr(offline[0])
    assert pending is None and ca == b"CA-DER" and upload.accepted == 2
    sent = json.loads(
        fake.calls(f"/administration/mobile/locking-device/{LOCK_ID}/audit-log")[0].content
    )
    assert sent == {"entries": [b64(b"e1"), b64(b"e2")]}


async def test_mobile_without_credentials_cannot_call() -> None:
    fake = FakePlatform()
    async with KeylessMobile("https://x.test/", transport=httpx.MockTransport(fake)) as mobile:
        with pytest.raises(ConfigError):
            await mobile.revocations()
        with pytest.raises(UsageError, match="65-byte"):
            await mobile.activate("CODE", b"\x04short")
    assert fake.requests == []


# --- against the simulated platform (httpx.ASGITransport) ------------------------------------

LOCK_KEY = kp.generate_key()
DEVICE_KEY = kp.generate_key()
"""Generated once: key generation is the slow part."""


SIM_URL = "http://keyless.sim/"
"""The simulated app's root is the API's ``/administration`` root."""


@dataclass
class Sim:
    state: KeylessPlatformState
    clock: FakeClock
    cloud: KeylessCloud
    transport: httpx.ASGITransport

    def mobile(self) -> KeylessMobile:
        return KeylessMobile(
            SIM_URL,
            transport=self.transport,
            retry=QUICK,
            clock=self.clock,
        )


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    clock = FakeClock()
    state = KeylessPlatformState.create(api_key=API_KEY, now=lambda: clock.wall, seed=4)
    transport = httpx.ASGITransport(app=keyless_app(state))
    cloud = KeylessCloud(
        SIM_URL,
        API_KEY,
        state.admin_user_id,
        state.admin_access_key,
        transport=transport,
        retry=QUICK,
        clock=clock,
    )
    async with cloud:
        yield Sim(state, clock, cloud, transport)


async def test_sim_locking_devices_page_rename_and_filter(sim: Sim) -> None:
    created = [await sim.cloud.create_locking_device(f"Gate {i}") for i in range(7)]
    listed = [d async for d in sim.cloud.locking_devices(limit=3)]
    assert sorted(d.id for d in listed) == sorted(d.id for d in created)
    assert sim.state.requests["GET /locking-device"] == 3
    await sim.cloud.rename_locking_device(created[0].id, "Front Gate")
    assert (await sim.cloud.get_locking_device(created[0].id)).name == "Front Gate"
    claimed = [d async for d in sim.cloud.locking_devices(claiming_status=ClaimingStatus.CLAIMED)]
    assert claimed == []  # none of them is claimed yet
    await sim.cloud.delete_locking_device(created[1].id)
    with pytest.raises(UnknownLock, match=created[1].id):
        await sim.cloud.get_locking_device(created[1].id)


async def test_sim_token_expiry_and_rate_limit_are_survived(sim: Sim) -> None:
    await sim.cloud.create_locking_device("Gate")
    sim.clock.advance(KeylessLimits.TOKEN_LIFETIME.total_seconds())
    sim.state.faults.rate_limit, sim.state.faults.retry_after_s = 2, 1
    devices = [d async for d in sim.cloud.locking_devices()]
    assert [d.name for d in devices] == ["Gate"]
    assert sim.clock.sleeps == [1.0, 1.0]
    # the expired token sent the client to /login first, which is where the two 429s landed
    assert sim.state.faulted["rate_limit"] == 2 and sim.state.requests["POST /login"] == 4
    assert sim.cloud.auth.logins == 2


async def test_sim_refusals_carry_the_platforms_detail(sim: Sim) -> None:
    lock = await sim.cloud.create_locking_device("Gate")
    with pytest.raises(CloudRejected) as caught:  # the platform knows no such user
        await sim.cloud.grant_permission(OTHER_ID, lock.id, OperationType.OPEN, T0, LATER)
    assert caught.value.status == 404
    assert f"refused a new permission (HTTP 404 Not Found): user {OTHER_ID} not found" in (
        caught.value.message
    )
    wrong_key = KeylessCloud(
        SIM_URL,
        "not-the-api-key",
        sim.state.admin_user_id,
        sim.state.admin_access_key,
        transport=sim.transport,
        clock=sim.clock,
    )
    async with wrong_key:
        with pytest.raises(AuthFailed) as refused:
            await wrong_key.get_locking_device(lock.id)
    assert refused.value.status == 403 and "keyless_api_key" in (refused.value.hint or "")


async def test_sim_user_device_permission_and_offline_key_flow(sim: Sim) -> None:
    cloud, state = sim.cloud, sim.state
    lock = await cloud.create_locking_device("Front Gate")
    certificate = state.certify(kp.make_csr(LOCK_KEY, lock.id))
    register_lock(state, lock.id, certificate.der, "BPLAD123456")
    claimed = [d async for d in cloud.locking_devices(serial_number="BPLAD123456")]
    assert [d.id for d in claimed] == [lock.id]
    assert claimed[0].claiming_status is ClaimingStatus.CLAIMED

    user = await cloud.create_user(Role.USER)
    invitation = await cloud.invite_operating_device(user.id)
    assert invitation.invitation_code is not None
    async with sim.mobile() as mobile:
        activation = await mobile.activate(
            invitation.invitation_code.get_secret_value(),
            kp.public_key_bytes(DEVICE_KEY.public_key()),
        )
        devices = [d async for d in cloud.operating_devices(user_id=user.id)]
        assert [d.id for d in devices] == [activation.operating_device_id]

        permission_id = await cloud.grant_permission(
            user.id,
            lock.id,
            OperationType.OPEN,
            T0 - dt.timedelta(hours=1),
            T0 + dt.timedelta(days=30),
        )
        permission = await cloud.get_permission(permission_id)
        assert permission.operating_key_validity_duration == dt.timedelta(days=8)
        (operating_key,) = await mobile.operating_keys()
        grant = kp.verify_grant(operating_key.grant, state.ca_certificate.public_key())  # type: ignore[arg-type]
        assert grant.operating_device_id == activation.operating_device_id
        assert grant.locking_device_id == lock.id
        assert grant.not_after == T0 + dt.timedelta(days=8)
        assert operating_key.certificate == certificate.der
        assert await mobile.platform_ca() == state.ca_certificate.public_bytes(
            serialization.Encoding.DER
        )

        issued = await cloud.issue_offline_key(
            activation.operating_device_id, lock.id, T0, T0 + dt.timedelta(hours=24)
        )
        assert issued.alternative_key is None
        (held,) = await mobile.offline_keys()
        metadata = [k async for k in cloud.offline_keys()]
        assert [(k.id, k.operating_device_id, k.locking_device_id) for k in metadata] == [
            (held.offline_key_id, activation.operating_device_id, lock.id)
        ]
        holder = serialization.load_der_private_key(
            held.primary.private_key.get_secret_value(), password=None
        )
        offline_grant = kp.verify_grant(held.primary.grant, state.ca_certificate.public_key())  # type: ignore[arg-type]
        assert offline_grant.holder_public_key == kp.public_key_bytes(holder.public_key())  # type: ignore[arg-type]
        assert (offline_grant.not_before, offline_grant.not_after) == (
            issued.start_datetime,
            issued.end_datetime,
        )
        assert await mobile.certificate(lock.id) is None
