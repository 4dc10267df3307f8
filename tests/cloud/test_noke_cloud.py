"""NokeCloud against the simulated Core API (ASGI and real HTTP) and against scripted answers."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from blelock.cloud._http import map_http_errors, parse_retry_after
from blelock.config import Timeouts
from blelock.errors import (
    AuthFailed,
    BlelockError,
    CloudRejected,
    CloudTimeout,
    CloudUnavailable,
    ConfigError,
    RateLimited,
    UnknownLock,
)
from blelock.model import LogRecord, MacAddress
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.cloud import NokeCloud
from simulators.noke_cloud import create_app
from simulators.noke_cloud_state import CloudFaults, NokeCloudState, RegisteredLock

API_KEY = "server-key-0123456789abcdef"
MOBILE_KEY = "mobile-key-fedcba9876543210"
BASE_URL = "https://coreapi-sandbox.test/"
NOW = 1_700_000_000
HD_MAC = MacAddress("C7:E6:B0:C6:75:38")
STD_MAC = MacAddress("D1:02:03:04:05:06")
HD_KEY = bytes(range(16))
STD_KEY = bytes(range(16, 32))
SESSION = bytes.fromhex("0000040ba7b0d91f7f45ad25698a18375c7e4f16")
FAST = Timeouts(cloud=5.0)


def _no_secret_in(exc: BaseException, *secrets: str) -> None:
    texts = [str(exc), repr(exc)]
    if isinstance(exc, BlelockError):
        texts.append(exc.one_line())
    for secret in secrets:
        assert all(secret not in text for text in texts), texts


@pytest.fixture
def state() -> NokeCloudState:
    return NokeCloudState(
        locks={
            HD_MAC: RegisteredLock(HD_MAC, HD_KEY, "4I", "3.14", "SIM-001"),
            STD_MAC: RegisteredLock(STD_MAC, STD_KEY, "3P", "2.10", "SIM-002", setup_pending=False),
        },
        api_key=API_KEY,
        mobile_key=MOBILE_KEY,
    )


class Recording(httpx.AsyncBaseTransport):
    """Passes requests on to the simulated cloud, keeping each (request, body) for inspection."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[httpx.Request, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request, json.loads(request.content or b"null")))
        return await self.inner.handle_async_request(request)


@pytest.fixture
def wire(state: NokeCloudState) -> Recording:
    return Recording(httpx.ASGITransport(app=create_app(state, clock=lambda: NOW)))


@pytest.fixture
async def cloud(wire: Recording) -> AsyncIterator[NokeCloud]:
    async with NokeCloud(
        BASE_URL, SecretStr(API_KEY), mobile_key=MOBILE_KEY, timeouts=FAST, transport=wire
    ) as client:
        yield client


def _commands_executed(
    key: bytes, packets: list[bytes], *, can_unshackle: bool
) -> list[noke.Command]:
    lock = noke.LockSession(key, SESSION, can_unshackle=can_unshackle)
    executed = []
    for packet in packets:
        verdict = lock.accept(packet, now=0)
        assert isinstance(verdict, noke.Command), verdict
        executed.append(verdict)
    return executed


# --- against the simulated cloud (ASGI) -----------------------------------------------------


async def test_unlock_returns_packets_the_lock_executes(
    cloud: NokeCloud, state: NokeCloudState, wire: Recording
) -> None:
    commands = await cloud.unlock_commands(HD_MAC, SESSION.hex(), tracking_key="tech@example.com")

    assert len(commands) == 2  # a new lock: setup first, then the unlock
    assert all(len(packet) == noke.PACKET_SIZE for packet in commands)
    executed = _commands_executed(HD_KEY, commands, can_unshackle=True)
    assert [c.command for c in executed] == [noke.CommandType.SETUP, noke.CommandType.UNLOCK]
    assert executed[-1].argument == 0
    assert executed[-1].unix_time == NOW
    issued = state.commands_issued[-1]
    assert (issued.mac, issued.action, issued.tracking_key) == (
        HD_MAC,
        "unlock",
        "tech@example.com",
    )
    request, body = wire.sent[-1]
    assert request.url.path == "/unlock/"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert body == {"mac": HD_MAC, "session": SESSION.hex(), "tracking_key": "tech@example.com"}


async def test_unshackle_without_tracking_key_and_upper_case_session(
    cloud: NokeCloud, state: NokeCloudState, wire: Recording
) -> None:
    state.locks[HD_MAC].setup_pending = False
    commands = await cloud.unshackle_commands(HD_MAC, SESSION.hex().upper())

    (executed,) = _commands_executed(HD_KEY, commands, can_unshackle=True)
    assert executed.command is noke.CommandType.UNLOCK
    assert executed.argument == noke.UNSHACKLE_ARGUMENT
    assert "tracking_key" not in wire.sent[-1][1]
    assert state.commands_issued[-1].session == SESSION.hex()
    assert state.requests["unshackle"] == 1


async def test_commands_are_sealed_for_their_own_lock_only(cloud: NokeCloud) -> None:
    commands = await cloud.unlock_commands(STD_MAC, SESSION.hex())

    other_lock = noke.LockSession(HD_KEY, SESSION, can_unshackle=True)
    assert other_lock.accept(commands[0], now=0) is noke.ResultCode.INVALID_KEY


async def test_wrong_api_key_is_auth_failed_and_never_echoed(
    wire: Recording, state: NokeCloudState
) -> None:
    wrong = "wrong-key-that-must-not-leak"
    async with NokeCloud(BASE_URL, wrong, timeouts=FAST, transport=wire) as cloud:
        with pytest.raises(AuthFailed) as caught:
            await cloud.unlock_commands(HD_MAC, SESSION.hex())
        assert wrong not in repr(cloud)

    assert caught.value.status == 401
    assert "coreapi-sandbox.test" in str(caught.value)
    assert caught.value.hint
    assert "API key" in caught.value.hint
    _no_secret_in(caught.value, wrong, API_KEY)
    assert state.commands_issued == []


async def test_unknown_lock(cloud: NokeCloud) -> None:
    stranger = MacAddress("AA:BB:CC:DD:EE:FF")
    with pytest.raises(UnknownLock) as caught:
        await cloud.unlock_commands(stranger, SESSION.hex())
    assert caught.value.error_code == 7
    assert stranger in str(caught.value)


@pytest.mark.parametrize(
    "session",
    [SESSION.hex()[:38], SESSION.hex()[:-1] + "g", SESSION.hex() + "00", ""],
    ids=["short", "not-hex", "long", "empty"],
)
async def test_malformed_session_is_rejected_by_the_cloud(
    cloud: NokeCloud, state: NokeCloudState, session: str
) -> None:
    with pytest.raises(CloudRejected) as caught:
        await cloud.unlock_commands(HD_MAC, session)
    assert type(caught.value) is CloudRejected
    assert caught.value.error_code == 3
    assert "malformed" in str(caught.value)
    assert "session" in str(caught.value)
    assert state.requests["unlock"] == 1
    assert state.commands_issued == []


async def test_http_500_then_recovers(cloud: NokeCloud, state: NokeCloudState) -> None:
    state.faults.fail_with_500 = 1
    with pytest.raises(CloudRejected) as caught:
        await cloud.unlock_commands(HD_MAC, SESSION.hex())
    assert caught.value.status == 500
    assert not isinstance(caught.value, AuthFailed | RateLimited)
    assert "try again later" in (caught.value.hint or "")

    assert await cloud.unlock_commands(HD_MAC, SESSION.hex())  # the fault was "next 1"
    assert state.faulted["fail_with_500"] == 1


async def test_body_that_is_not_json(cloud: NokeCloud, state: NokeCloudState) -> None:
    state.faults.garbage_json = 1
    with pytest.raises(CloudRejected, match="not JSON") as caught:
        await cloud.locks()
    assert caught.value.status == 200
    assert "coreapi-sandbox.test" in str(caught.value)


async def test_rate_limited_carries_retry_after(cloud: NokeCloud, state: NokeCloudState) -> None:
    state.faults = CloudFaults(rate_limit=2, retry_after_s=7)
    for _ in range(2):
        with pytest.raises(RateLimited) as caught:
            await cloud.unlock_commands(HD_MAC, SESSION.hex())
        assert caught.value.retry_after == 7.0
        assert caught.value.status == 429
    assert await cloud.unlock_commands(HD_MAC, SESSION.hex())


def _records() -> list[LogRecord]:
    s1, s2, s3 = "11" * 20, "22" * 20, "33" * 20
    return [
        LogRecord(HD_MAC, s1, NOW + 5, "50" + "a1" * 19),
        LogRecord(HD_MAC, s1, NOW + 2, "50" + "a2" * 19),
        LogRecord(STD_MAC, s3, NOW + 9, "50" + "c1" * 19),
        LogRecord(HD_MAC, s2, NOW + 7, "50" + "b1" * 19),
        LogRecord(HD_MAC, s1, NOW + 8, "50" + "a3" * 19),
    ]


async def test_upload_groups_by_lock_and_session_with_the_mobile_key(
    cloud: NokeCloud, state: NokeCloudState, wire: Recording
) -> None:
    await cloud.upload(_records())

    request, body = wire.sent[-1]
    assert request.url.path == "/upload/"
    assert request.headers["Authorization"] == f"Bearer {MOBILE_KEY}"
    assert body == {
        "logs": [
            {
                "session": "11" * 20,
                "mac": HD_MAC,
                "received_time": NOW + 2,
                "responses": ["50" + "a1" * 19, "50" + "a2" * 19, "50" + "a3" * 19],
            },
            {
                "session": "33" * 20,
                "mac": STD_MAC,
                "received_time": NOW + 9,
                "responses": ["50" + "c1" * 19],
            },
            {
                "session": "22" * 20,
                "mac": HD_MAC,
                "received_time": NOW + 7,
                "responses": ["50" + "b1" * 19],
            },
        ]
    }
    assert (state.records_received, state.records_duplicate, len(state.uploaded)) == (5, 0, 5)


async def test_repeated_upload_is_deduplicated_by_the_cloud(
    cloud: NokeCloud, state: NokeCloudState
) -> None:
    seen: list[str] = []
    state.record_uploaded = lambda record: seen.append(record.response)  # type: ignore[method-assign]
    await cloud.upload(_records())
    # the same records again, as another client would send them (upper-case hex)
    again = [
        LogRecord(r.lock_id, r.context.upper(), r.received_at + 60, r.payload.upper())
        for r in _records()
    ]
    await cloud.upload(again)

    assert (state.records_received, state.records_duplicate, len(state.uploaded)) == (10, 5, 5)
    assert len(seen) == 5  # the hook saw each record once


async def test_upload_without_a_mobile_key_is_a_clear_config_error(
    wire: Recording, state: NokeCloudState
) -> None:
    async with NokeCloud(BASE_URL, API_KEY, timeouts=FAST, transport=wire) as cloud:
        with pytest.raises(ConfigError) as caught:
            await cloud.upload(_records())
    assert "mobile API key" in str(caught.value)
    assert caught.value.hint
    assert "[noke]" in caught.value.hint and "BLELOCK_NOKE__MOBILE_KEY" in caught.value.hint
    assert wire.sent == []
    assert state.requests["upload"] == 0


async def test_upload_with_the_server_key_as_mobile_key_is_refused(
    wire: Recording, state: NokeCloudState
) -> None:
    async with NokeCloud(
        BASE_URL, API_KEY, mobile_key=API_KEY, timeouts=FAST, transport=wire
    ) as cloud:
        with pytest.raises(AuthFailed) as caught:
            await cloud.upload(_records())
    assert caught.value.hint
    assert "mobile" in caught.value.hint
    _no_secret_in(caught.value, API_KEY)
    assert state.uploaded == {}


async def test_locks_lists_filters_and_refuses_unknown(cloud: NokeCloud, wire: Recording) -> None:
    everything = await cloud.locks()
    assert {lock.mac for lock in everything} == {HD_MAC, STD_MAC}
    assert wire.sent[-1][1] == {}

    (hd,) = await cloud.locks([HD_MAC])
    assert (hd.mac, hd.hw_version, hd.fw_version, hd.serial) == (HD_MAC, "4I", "3.14", "SIM-001")
    assert hd.status == "awaiting setup"
    assert hd.flags == ("setup",)  # waits for its first online unlock
    assert wire.sent[-1][1] == {"macs": [HD_MAC]}

    with pytest.raises(UnknownLock, match="AA:BB:CC:DD:EE:FF"):
        await cloud.locks([MacAddress("AA:BB:CC:DD:EE:FF")])


# --- the simulated cloud's own rules, over raw HTTP -----------------------------------------


@pytest.fixture
async def raw(state: NokeCloudState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state, clock=lambda: NOW))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client


async def test_sim_answers_401_with_the_documented_envelope(raw: httpx.AsyncClient) -> None:
    body = {"mac": HD_MAC, "session": SESSION.hex()}
    response = await raw.post("/unlock/", json=body)  # no Authorization at all
    assert response.status_code == 401
    envelope = response.json()
    assert envelope["result"] == "failure"
    assert envelope["error_code"] == 2
    assert envelope["message"]
    assert envelope["request"] == "unlock"


async def test_sim_accepts_routes_without_trailing_slash_and_sends_a_token(
    raw: httpx.AsyncClient,
) -> None:
    response = await raw.post(
        "/unlock",
        json={"mac": HD_MAC.lower(), "session": SESSION.hex()},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    envelope = response.json()
    assert (response.status_code, envelope["error_code"], envelope["result"]) == (200, 0, "success")
    assert len(envelope["token"]) == 32
    assert envelope["request"] == "unlock"
    assert noke.split_commands(envelope["data"]["commands"])


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            {
                "logs": [
                    {
                        "session": "11" * 20,
                        "mac": HD_MAC,
                        "received_time": "1518141482",
                        "responses": ["50" * 20],
                    }
                ]
            },
            "received_time",
        ),
        (
            {
                "logs": [
                    {"session": "11" * 20, "mac": HD_MAC, "received_time": 1, "responses": ["50"]}
                ]
            },
            "responses",
        ),
        ({"data": []}, "logs"),
    ],
    ids=["time-as-string", "short-response", "old-top-level-key"],
)
async def test_sim_refuses_upload_bodies_the_doc_does_not_allow(
    raw: httpx.AsyncClient, state: NokeCloudState, body: dict[str, Any], where: str
) -> None:
    response = await raw.post(
        "/upload/", json=body, headers={"Authorization": f"Bearer {MOBILE_KEY}"}
    )
    envelope = response.json()
    assert (response.status_code, envelope["error_code"]) == (200, 3)
    assert where in envelope["message"]
    assert state.records_received == 0


async def test_sim_wrong_method_and_endpoint(raw: httpx.AsyncClient) -> None:
    assert (await raw.get("/lock/")).json()["error_code"] == 4
    assert (await raw.post("/nope/", json={})).json()["error_code"] == 5


# --- scripted answers (httpx.MockTransport) -------------------------------------------------


def _scripted(handler: Callable[[httpx.Request], httpx.Response]) -> NokeCloud:
    return NokeCloud(
        BASE_URL,
        API_KEY,
        mobile_key=MOBILE_KEY,
        timeouts=FAST,
        transport=httpx.MockTransport(handler),
    )


def _answer(**envelope: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json=envelope)


async def test_connect_error_is_cloud_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with _scripted(refuse) as cloud:
        with pytest.raises(CloudUnavailable) as caught:
            await cloud.unlock_commands(HD_MAC, SESSION.hex())
    assert "coreapi-sandbox.test" in str(caught.value)
    assert "refused" in str(caught.value)
    assert caught.value.hint
    assert "network" in caught.value.hint
    _no_secret_in(caught.value, API_KEY)


async def test_read_timeout_is_cloud_timeout() -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with _scripted(stall) as cloud:
        with pytest.raises(CloudTimeout) as caught:
            await cloud.locks()
    assert isinstance(caught.value, TimeoutError)
    assert "coreapi-sandbox.test" in str(caught.value)


@pytest.mark.parametrize(
    ("envelope", "where"),
    [
        ({"result": "success", "message": "ok", "data": {"commands": "00" * 20}}, "error_code"),
        ({"error_code": 0, "data": {"commands": "00" * 20}}, "result"),
        ({"result": "success", "error_code": 0, "data": {}}, "data.commands"),
        ({"result": "success", "error_code": 0}, "data"),
        ({"result": "success", "error_code": "zero", "data": {}}, "error_code"),
    ],
)
async def test_envelope_of_an_unexpected_shape(envelope: dict[str, Any], where: str) -> None:
    async with _scripted(_answer(**envelope)) as cloud:
        with pytest.raises(CloudRejected) as caught:
            await cloud.unlock_commands(HD_MAC, SESSION.hex())
    assert f"unexpected shape: {where} " in str(caught.value)


async def test_a_json_array_is_an_unexpected_shape() -> None:
    async with _scripted(lambda request: httpx.Response(200, json=[1, 2])) as cloud:
        with pytest.raises(CloudRejected, match="unexpected shape"):
            await cloud.locks()


@pytest.mark.parametrize(
    ("commands", "problem"),
    [
        ("00" * 20 + "+" + "00" * 19, "packet 2 of 2 is not 40 hex digits (38 chars)"),
        ("zz" * 20, "packet 1 of 1 is not 40 hex digits"),
        ("", "holds no packets"),
        ("++", "holds no packets"),
    ],
    ids=["short-packet", "not-hex", "empty", "only-separators"],
)
async def test_bad_command_strings(commands: str, problem: str) -> None:
    answer = _answer(result="success", error_code=0, data={"commands": commands})
    async with _scripted(answer) as cloud:
        with pytest.raises(CloudRejected, match=re.escape(problem)):
            await cloud.unshackle_commands(HD_MAC, SESSION.hex())


async def test_empty_parts_between_packets_are_ignored() -> None:
    one, two = "0a" * 20, "B0" * 20
    answer = _answer(result="success", error_code=0, data={"commands": f"+{one}++{two}+"})
    async with _scripted(answer) as cloud:
        assert await cloud.unlock_commands(HD_MAC, SESSION.hex()) == [
            bytes.fromhex(one),
            bytes.fromhex(two),
        ]


@pytest.mark.parametrize(
    ("code", "kind"),
    [(2, AuthFailed), (6, UnknownLock), (7, UnknownLock), (1, CloudRejected), (99, CloudRejected)],
)
async def test_envelope_error_codes(code: int, kind: type[CloudRejected]) -> None:
    answer = _answer(result="failure", error_code=code, message="nope", data=None)
    async with _scripted(answer) as cloud:
        with pytest.raises(kind) as caught:
            await cloud.unlock_commands(HD_MAC, SESSION.hex())
    assert type(caught.value) is kind
    assert caught.value.error_code == code
    assert "nope" in str(caught.value)


async def test_failure_result_with_code_zero_is_still_a_failure() -> None:
    async with _scripted(_answer(result="failure", error_code=0, message="odd")) as cloud:
        with pytest.raises(CloudRejected, match="error_code 0"):
            await cloud.locks()


async def test_lock_answer_read_leniently() -> None:
    lock = {"mac": "c7:e6:b0:c6:75:38", "flags": "none", "battery_colour": "blue"}
    answer = _answer(result="success", error_code=0, data={"locks": [lock]}, extra=1)
    async with _scripted(answer) as cloud:
        (info,) = await cloud.locks()
    assert info.mac == HD_MAC
    assert info.flags == ()
    assert info.serial is None


async def test_403_is_auth_failed_and_other_4xx_is_rejected() -> None:
    statuses = iter([403, 404])
    async with _scripted(lambda request: httpx.Response(next(statuses))) as cloud:
        with pytest.raises(AuthFailed):
            await cloud.locks()
        with pytest.raises(CloudRejected) as caught:
            await cloud.locks()
    assert caught.value.status == 404
    assert not isinstance(caught.value, AuthFailed)


async def test_429_with_an_http_date() -> None:
    when = email.utils.formatdate(4_000_000_000, usegmt=True)  # far in the future
    reply = httpx.Response(429, headers={"Retry-After": when})
    async with _scripted(lambda request: reply) as cloud:
        with pytest.raises(RateLimited) as caught:
            await cloud.locks()
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 1_000_000


def test_parse_retry_after() -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after(date, now=1445412470.0) == 10.0
    assert parse_retry_after(date, now=1445412490.0) == 0.0  # already past
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


async def test_map_http_errors_also_works_as_async_context_manager() -> None:
    request = httpx.Request("POST", "https://coreapi-beta.test/unlock/")
    with pytest.raises(CloudTimeout, match=r"coreapi-beta\.test"):
        async with map_http_errors():
            raise httpx.PoolTimeout("pool", request=request)
    with pytest.raises(KeyError):  # not an httpx error: left alone
        async with map_http_errors("h"):
            raise KeyError("x")


# --- real HTTP on 127.0.0.1 -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(state: NokeCloudState) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """The sim app under uvicorn on a free port. The socket listens before uvicorn starts, so
    early requests wait in the backlog: no polling, no sleeps."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    config = uvicorn.Config(
        create_app(state), log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/", server
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_over_real_http(state: NokeCloudState) -> None:
    async with served(state) as (url, server):
        async with NokeCloud(url, API_KEY, mobile_key=MOBILE_KEY, timeouts=FAST) as cloud:
            commands = await cloud.unlock_commands(HD_MAC, SESSION.hex())
            await cloud.upload(_records()[:2])
        assert server.started
    assert len(_commands_executed(HD_KEY, commands, can_unshackle=True)) == 2
    assert state.requests == {"unlock": 1, "upload": 1}
    assert state.records_received == 2


async def test_cloud_down_is_cloud_unavailable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # nothing listens on that port any more
    async with NokeCloud(f"http://127.0.0.1:{port}", API_KEY, timeouts=FAST) as cloud:
        with pytest.raises(CloudUnavailable) as caught:
            await cloud.unlock_commands(HD_MAC, SESSION.hex())
    assert "127.0.0.1" in str(caught.value)
    _no_secret_in(caught.value, API_KEY)


async def test_sim_streams_the_whole_company_as_the_enveloped_answer(
    state: NokeCloudState, raw: httpx.AsyncClient
) -> None:
    # Over _LISTING_PIECE locks: the answer comes in several pieces, and still parses whole.
    for n in range(2500):
        mac = f"D0:00:00:{n >> 8:02X}:{n & 255:02X}:01"
        state.locks[mac] = RegisteredLock(mac, bytes(16), "3P", "2.10", f"S{n}")
    auth = {"Authorization": f"Bearer {API_KEY}"}
    whole = (await raw.post("/lock/", json={}, headers=auth)).json()
    asked = (await raw.post("/lock/", json={"macs": list(state.locks)}, headers=auth)).json()
    assert whole == asked  # the streamed listing is the same JSON as the enveloped one
    assert (whole["result"], whole["error_code"], whole["request"]) == ("success", 0, "lock")
    assert [lock["mac"] for lock in whole["data"]["locks"]] == list(state.locks)
