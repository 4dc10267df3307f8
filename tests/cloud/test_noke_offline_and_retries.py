"""/keys/, idempotent uploads and bounded retries, against the simulated Core API (ASGI)."""

from __future__ import annotations

import random

import httpx
import pytest

from blelock.cloud._http import RetryPolicy, with_retries
from blelock.errors import AuthFailed, CloudRejected, CloudUnavailable, RateLimited, UnknownLock
from blelock.model import LogRecord, MacAddress
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.values import ListedKeys
from simulators.noke_cloud import create_app
from simulators.noke_cloud_state import NokeCloudState, RegisteredLock

API_KEY, MOBILE_KEY = "server-key-0123456789", "mobile-key-9876543210"
LOCKS = {
    MacAddress("C7:E6:B0:C6:75:38"): bytes(range(16)),
    MacAddress("D1:02:03:04:05:06"): bytes(range(16, 32)),
}
MAC_A, MAC_B = LOCKS
QUICK = RetryPolicy(attempts=3, base_s=0.001, cap_s=0.002)


@pytest.fixture
def state() -> NokeCloudState:
    return NokeCloudState(
        locks={mac: RegisteredLock(mac, key, "4I", "3.14", "S") for mac, key in LOCKS.items()},
        api_key=API_KEY,
        mobile_key=MOBILE_KEY,
    )


def cloud_for(state: NokeCloudState, *, retry: RetryPolicy = QUICK) -> NokeCloud:
    return NokeCloud(
        "http://cloud.test/",
        API_KEY,
        mobile_key=MOBILE_KEY,
        transport=httpx.ASGITransport(app=create_app(state)),
        retry=retry,
    )


async def test_issued_keys_open_their_lock_offline(state: NokeCloudState) -> None:
    async with cloud_for(state) as cloud:
        grants = await cloud.offline_keys([MAC_A, MAC_B], issue_for=["bob", "linda"])
    assert sorted((g.lock_id, g.tracking_key) for g in grants) == sorted(
        (mac, tk) for mac in LOCKS for tk in ("bob", "linda")
    )
    assert all(g.offline_key.hex() not in repr(g) for g in grants)
    session = bytes(range(20))
    for grant in grants:
        packet = noke.build_offline_unlock(grant.offline_key, grant.unlock_command, session, 100)
        lock = noke.LockSession(LOCKS[grant.lock_id], session, can_unshackle=True)
        assert isinstance(lock.accept(packet, now=100), noke.Command)


async def test_display_is_scoped_and_revoked_keys_disappear(state: NokeCloudState) -> None:
    async with cloud_for(state) as cloud:
        await cloud.offline_keys([MAC_A, MAC_B], issue_for=["bob", "linda"])
        state.locks[MAC_A].revoke_offline_key("bob")
        only_a = await cloud.offline_keys([MAC_A])
        everything = await cloud.offline_keys()
    assert [(g.lock_id, g.tracking_key) for g in only_a] == [(MAC_A, "linda")]
    assert len(everything) == 3
    assert state.locks[MAC_A].revocations_to_send == [0]  # bob held slot 0


async def test_issue_for_an_unknown_lock_is_refused(state: NokeCloudState) -> None:
    async with cloud_for(state) as cloud:
        with pytest.raises(UnknownLock):
            await cloud.offline_keys([MacAddress("00:00:00:00:00:01")], issue_for=["bob"])


def records(count: int) -> list[LogRecord]:
    return [LogRecord(MAC_A, "ab" * 20, 1_700_000_000, f"{n:02x}" * 20) for n in range(count)]


async def test_a_retried_batch_is_not_counted_twice(state: NokeCloudState) -> None:
    async with cloud_for(state) as cloud:
        await cloud.upload(records(3), idempotency_key="batch-1")
        await cloud.upload(records(3), idempotency_key="batch-1")  # the lost-ack retry
        await cloud.upload(records(4), idempotency_key="batch-2")
    assert state.uploads_replayed == 1
    assert state.records_received == 3 + 4 and len(state.uploaded) == 4


@pytest.mark.parametrize("fault", ["fail_with_500", "garbage_json", "rate_limit"])
async def test_transient_failures_are_retried(state: NokeCloudState, fault: str) -> None:
    setattr(state.faults, fault, 2)
    state.faults.retry_after_s = 0
    async with cloud_for(state) as cloud:
        await cloud.upload(records(2), idempotency_key="k")
    assert state.requests["upload"] == 3 and len(state.uploaded) == 2


async def test_retries_are_bounded_and_leave_a_clear_error(state: NokeCloudState) -> None:
    state.faults.fail_with_500 = -1
    async with cloud_for(state) as cloud:
        with pytest.raises(CloudRejected, match="after 3 attempts") as caught:
            await cloud.offline_keys()
    assert caught.value.status == 500 and state.requests["keys"] == 3


async def test_refusals_are_not_retried(state: NokeCloudState) -> None:
    async with NokeCloud(
        "http://cloud.test/",
        "wrong-key",
        transport=httpx.ASGITransport(app=create_app(state)),
        retry=QUICK,
    ) as cloud:
        with pytest.raises(AuthFailed):
            await cloud.offline_keys()
    assert state.requests["keys"] == 1


async def test_backoff_honours_retry_after_and_jitters_otherwise() -> None:
    waits: list[float] = []
    failures = [RateLimited("slow down", retry_after=7.0), CloudUnavailable("down"), None]

    async def flaky() -> str:
        failure = failures.pop(0)
        if failure is not None:
            raise failure
        return "done"

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(attempts=3, base_s=1.0, cap_s=8.0)
    assert await with_retries(flaky, policy, sleep=sleep, rng=random.Random(1)) == "done"
    assert waits[0] == 7.0 and 0 <= waits[1] <= 2.0


async def test_retry_after_beyond_the_cap_is_not_waited_for() -> None:
    async def limited() -> None:
        raise RateLimited("slow down", retry_after=3600)

    async def sleep(seconds: float) -> None:
        raise AssertionError("waited an hour")

    with pytest.raises(RateLimited):
        await with_retries(limited, RetryPolicy(), sleep=sleep)


async def test_a_reused_idempotency_key_with_other_records_is_refused(
    state: NokeCloudState,
) -> None:
    async with cloud_for(state) as cloud:
        await cloud.upload(records(2), idempotency_key="batch-1")
        with pytest.raises(CloudRejected) as caught:
            await cloud.upload(records(3), idempotency_key="batch-1")
    assert caught.value.status == 409 and state.requests["upload"] == 2  # not retried
    assert len(state.uploaded) == 2


async def test_keys_listed_lock_by_lock_are_the_grants_grouped(state: NokeCloudState) -> None:
    async with cloud_for(state) as cloud:
        grants = await cloud.offline_keys([MAC_A, MAC_B], issue_for=["bob", "linda"])
        listed = await cloud.listed_offline_keys([MAC_A, MAC_B])
    assert listed.by_lock == ListedKeys.of(grants).by_lock
    assert set(listed.by_lock) == {MAC_A, MAC_B} and len(listed) == 4
    assert repr(listed) == str(listed) == "ListedKeys(2 locks, 4 keys)"


async def test_a_lock_listed_twice_keeps_the_keys_of_both_entries() -> None:
    def key(name: str, n: int) -> dict[str, str]:
        return {
            "tracking_key": name,
            "offline_key": bytes([n] * 16).hex(),
            "unlock_command": bytes([n] * 20).hex(),
        }

    answer = {
        "result": "success",
        "message": "Command successfully completed",
        "error_code": 0,
        "data": {
            "locks": [
                {"mac": MAC_A, "keys": [key("bob", 1), key("linda", 2)]},
                {"mac": MAC_A.lower(), "keys": [key("linda", 3)]},
                {"mac": MAC_B},
            ]
        },
        "request": "keys",
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    async with NokeCloud("http://cloud.test/", API_KEY, transport=transport, retry=QUICK) as cloud:
        listed = await cloud.listed_offline_keys([MAC_A, MAC_B])
    assert listed.by_lock == {
        MAC_A: {
            "bob": (bytes([1] * 16), bytes([1] * 20)),
            "linda": (bytes([3] * 16), bytes([3] * 20)),
        }
    }
