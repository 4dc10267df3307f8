"""Quick clicks against the simulated Core API over real HTTP: every rule of the seed doc's
IMPORTANT list is checked by the client before sending *and* enforced by the cloud with the
vendor's error envelope; quick clicks reach the lock only through an online unlock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from blelock.errors import CloudRejected, UsageError
from blelock.jobs import context, open_store
from blelock.model import MacAddress, parse_mac
from blelock.vendors.noke import jobs
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from blelock.vendors.noke.values import Action, Outcome
from simulators.world import RunningWorld
from tests.conftest import settings_for


def mac_of(running: RunningWorld, index: int = 0) -> MacAddress:
    return parse_mac(running.world.locks[index].mac)


@pytest.fixture
async def cloud(running_world: RunningWorld) -> AsyncIterator[NokeCloud]:
    async with NokeCloud.from_settings(settings_for(running_world)) as client:
        yield client


@pytest.fixture
async def raw(running_world: RunningWorld) -> AsyncIterator[httpx.AsyncClient]:
    """The Core API as any client would call it: the simulated cloud's own checks, no
    blelock model in between."""
    headers = {"Authorization": f"Bearer {running_world.world.cloud.api_key}"}
    async with httpx.AsyncClient(base_url=running_world.cloud_url, headers=headers) as client:
        yield client


async def qc(raw: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    answer = await raw.post("qc/", json=body)
    assert answer.status_code == 200
    payload: dict[str, Any] = answer.json()
    assert payload["request"] == "qc"
    return payload


def issue(mac: str, *clicks: tuple[str, int]) -> dict[str, Any]:
    return {"issue": [{"mac": mac, "quick_clicks": [{"code": c, "uses": u} for c, u in clicks]}]}


async def online_unlock(running: RunningWorld, index: int = 0) -> Outcome:
    settings = settings_for(running)
    async with open_store(settings) as store:
        return await jobs.visit(
            context(NOKE, settings, store), mac_of(running, index), Action.UNLOCK
        )


def secret(code: str) -> SecretStr:
    return SecretStr(code)


# --- each rule, client side (nothing sent) and cloud side (the vendor's envelope) -------------

BROKEN = [
    pytest.param(("1021", 5), "1 and 0 only (rule 1)", "only 1's and 0's", id="rule 1: 0/1"),
    pytest.param(("10", 5), "3 to 24 characters, not 2 (rule 2)", "3 to 24", id="rule 2: short"),
    pytest.param(("1" * 25, 5), "not 25 (rule 2)", "3 to 24", id="rule 2: long"),
    pytest.param(("101", 0), "not 0 (rule 3)", "1-244", id="rule 3: none"),
    pytest.param(("101", 245), "not 245 (rule 3)", "1-244", id="rule 3: 245"),
    pytest.param(("101", 254), "not 254 (rule 3)", "1-244", id="rule 3: README's 254"),
]


@pytest.mark.parametrize(("click", "client_says", "cloud_says"), BROKEN)
async def test_a_malformed_quick_click_is_refused_on_both_sides(
    running_world: RunningWorld,
    cloud: NokeCloud,
    raw: httpx.AsyncClient,
    click: tuple[str, int],
    client_says: str,
    cloud_says: str,
) -> None:
    mac = mac_of(running_world)
    state = running_world.world.cloud
    asked = state.requests["qc"]
    with pytest.raises(UsageError) as refused:
        await cloud.issue_quick_clicks(mac, [(secret(click[0]), click[1])])
    assert client_says in refused.value.message and click[0] not in refused.value.message
    assert state.requests["qc"] == asked + 1  # only the listing it checked against
    answer = await qc(raw, issue(mac, click))
    assert (answer["result"], answer["error_code"]) == ("failure", 3)
    assert cloud_says in answer["message"]
    assert not state.locks[mac].quick_clicks  # refused whole: nothing kept


@pytest.mark.parametrize("click", [("101", 1), ("0" * 24, 244), ("010", 255)])
async def test_the_edges_of_each_rule_are_accepted(
    running_world: RunningWorld, cloud: NokeCloud, click: tuple[str, int]
) -> None:
    mac = mac_of(running_world)
    listing = await cloud.issue_quick_clicks(mac, [(secret(click[0]), click[1])])
    (held,) = listing.quick_clicks
    assert held.code.get_secret_value() == click[0] and held.uses == click[1]
    assert (held.pending, held.revoked) == (True, False)


async def test_rule_4_a_code_is_unique_on_its_lock(
    running_world: RunningWorld, cloud: NokeCloud, raw: httpx.AsyncClient
) -> None:
    mac, other = mac_of(running_world, 0), mac_of(running_world, 1)
    await cloud.issue_quick_clicks(mac, [(secret("1011"), 3)])
    with pytest.raises(UsageError, match=r"unique code \(rule 4\)"):
        await cloud.issue_quick_clicks(mac, [(secret("1011"), 3)])
    with pytest.raises(UsageError, match=r"quick click 2 of 2: .*rule 4"):
        await cloud.issue_quick_clicks(mac, [(secret("111"), 3), (secret("111"), 4)])
    answer = await qc(raw, issue(mac, ("1011", 9)))
    assert answer["error_code"] == 3 and "already exists" in answer["message"]
    answer = await qc(raw, issue(mac, ("0001", 9), ("0001", 2)))
    assert (
        answer["error_code"] == 3
        and "0001" not in running_world.world.cloud.locks[mac].quick_clicks
    )
    # Unique per lock: another lock may have the same code.
    assert (await cloud.issue_quick_clicks(other, [(secret("1011"), 3)])).quick_clicks


async def test_rule_5_a_code_is_reused_only_once_removed_from_the_lock(
    running_world: RunningWorld, cloud: NokeCloud, raw: httpx.AsyncClient
) -> None:
    mac = mac_of(running_world)
    lock = running_world.world.locks[0]
    await cloud.issue_quick_clicks(mac, [(secret("11001"), 5)])
    await online_unlock(running_world)
    assert "11001" in lock.quick_clicks
    revoked = await cloud.revoke_quick_clicks(mac, [secret("11001")])
    assert [(q.pending, q.revoked) for q in revoked.quick_clicks] == [(False, True)]
    with pytest.raises(UsageError, match=r"still on the lock.*rule 5"):
        await cloud.issue_quick_clicks(mac, [(secret("11001"), 5)])
    answer = await qc(raw, issue(mac, ("11001", 5)))
    assert answer["error_code"] == 3 and "not yet removed from the lock" in answer["message"]
    assert lock.press_sequence("11001")  # revoked, still on the lock: it still opens
    await online_unlock(running_world)  # carries the removal; its record confirms it
    assert (
        "11001" not in lock.quick_clicks and not (await cloud.quick_clicks([mac]))[0].quick_clicks
    )
    again = await cloud.issue_quick_clicks(mac, [(secret("11001"), 2)])
    assert [(q.uses, q.pending) for q in again.quick_clicks] == [(2, True)]


async def test_rule_6_a_lock_holds_at_most_100(
    running_world: RunningWorld, cloud: NokeCloud, raw: httpx.AsyncClient
) -> None:
    mac = mac_of(running_world)
    hundred = [(secret(format(n, "07b")), 1) for n in range(100)]
    assert len((await cloud.issue_quick_clicks(mac, hundred)).quick_clicks) == 100
    with pytest.raises(UsageError, match=r"holds 100 quick clicks; 1 more .*rule 6"):
        await cloud.issue_quick_clicks(mac, [(secret("11111111"), 1)])
    answer = await qc(raw, issue(mac, ("11111111", 1)))
    assert answer["error_code"] == 3 and "up to 100" in answer["message"]
    # All 100 reach the lock in one online unlock (one batch holds them).
    await online_unlock(running_world)
    assert len(running_world.world.locks[0].quick_clicks) == 100


async def test_rule_7_an_entry_names_a_lock_and_at_least_one_quick_click(
    running_world: RunningWorld, cloud: NokeCloud, raw: httpx.AsyncClient
) -> None:
    mac = mac_of(running_world)
    with pytest.raises(UsageError, match=r"at least one \(rule 7\)"):
        await cloud.issue_quick_clicks(mac, [])
    with pytest.raises(UsageError, match=r"at least one code \(rule 7\)"):
        await cloud.revoke_quick_clicks(mac, [])
    for body in (
        {"issue": [{"mac": mac, "quick_clicks": []}]},
        {"revoke": [{"mac": mac, "quick_clicks": []}]},
        {"issue": [{"quick_clicks": [{"code": "101", "uses": 1}]}]},
    ):
        answer = await qc(raw, body)
        assert answer["error_code"] == 3, body
    unknown = await qc(raw, issue("00:11:22:33:44:55", ("101", 1)))
    assert unknown["error_code"] == 7
    with pytest.raises(CloudRejected, match="does not know lock"):
        await cloud.quick_clicks([MacAddress("00:11:22:33:44:55")])


async def test_rule_8_quick_clicks_reach_the_lock_only_through_an_online_unlock(
    running_world: RunningWorld, cloud: NokeCloud
) -> None:
    mac = mac_of(running_world)
    lock = running_world.world.locks[0]
    await cloud.issue_quick_clicks(mac, [(secret("0110"), 2)])
    assert not lock.press_sequence("0110")  # pending: the lock has not heard of it
    (info,) = await cloud.locks([mac])
    assert "quick_clicks" in info.flags
    await online_unlock(running_world)
    (listed,) = await cloud.quick_clicks([mac])
    assert [(q.pending, q.revoked) for q in listed.quick_clicks] == [(False, False)]
    assert "quick_clicks" not in (await cloud.locks([mac]))[0].flags
    # Uses count down on the lock; a limited code stops opening when they are spent.
    assert lock.press_sequence("0110") and lock.press_sequence("0110")
    assert not lock.press_sequence("0110")
    assert lock.quick_click_unlocks == 2 and lock.quick_clicks["0110"] == 0
    assert len(lock.stored_events) == 2  # a record per use, sent on the next connection


async def test_a_pending_quick_click_stays_pending_until_the_lock_reports_the_unlock(
    running_world: RunningWorld, cloud: NokeCloud
) -> None:
    """The cloud marks it synced only on the lock's record of the unlock that carried it: if
    that record never arrives, the next unlock carries it again, and the lock keeps the uses
    it already counted down."""
    mac = mac_of(running_world)
    lock = running_world.world.locks[0]
    await cloud.issue_quick_clicks(mac, [(secret("1110"), 3)])
    # The unlock carries it, but its records cannot be uploaded (a wrong mobile key).
    settings = settings_for(running_world, BLELOCK_NOKE_MOBILE_KEY="wrong-mobile-key")
    async with open_store(settings) as store:
        outcome = await jobs.visit(context(NOKE, settings, store), mac, Action.UNLOCK)
        assert outcome.uploaded == 0 and await store.outbox("noke").pending_count() > 0
        assert not outcome.drained  # the kiosk's upkeep is to send them
    assert lock.quick_clicks == {"1110": 3}
    (listed,) = await cloud.quick_clicks([mac])
    assert listed.quick_clicks[0].pending  # its record did not reach the cloud
    assert lock.press_sequence("1110")
    await online_unlock(running_world)  # carries it again; uploads both sessions' records
    assert lock.quick_clicks == {"1110": 2}  # the use already spent stays spent
    (listed,) = await cloud.quick_clicks([mac])
    assert not listed.quick_clicks[0].pending


async def test_codes_never_reach_an_error_or_a_repr(
    running_world: RunningWorld, cloud: NokeCloud, raw: httpx.AsyncClient
) -> None:
    mac = mac_of(running_world)
    await qc(raw, issue(mac, ("100110", 4)))
    with pytest.raises(UsageError) as refused:
        await cloud.issue_quick_clicks(mac, [(secret("100110"), 4)])
    assert "100110" not in refused.value.one_line()
    (listed,) = await cloud.quick_clicks([mac])
    assert "100110" not in repr(listed) and "100110" not in str(listed.model_dump())


def test_uses_follow_the_seed_doc_not_the_public_readme() -> None:
    # The seed doc says 1-244 or 255; the vendor's README says 1-254 / 1-255 (rule 3).
    assert noke.QUICK_CLICK_MAX_LIMITED_USES == 244 and noke.QUICK_CLICK_UNLIMITED == 255


async def test_a_cloud_that_quotes_a_code_back_has_it_redacted(
    running_world: RunningWorld, cloud: NokeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two kiosks issuing the same code at once pass the client's check; the cloud refuses the
    second, and its message (which names the code) is quoted without it."""
    mac = mac_of(running_world)
    await cloud.issue_quick_clicks(mac, [(secret("1001101"), 2)])
    monkeypatch.setattr("blelock.vendors.noke.cloud.check_issue", lambda *args: None)
    with pytest.raises(CloudRejected) as refused:
        await cloud.issue_quick_clicks(mac, [(secret("1001101"), 2)])
    assert "already exists" in refused.value.message and "<code>" in refused.value.message
    assert "1001101" not in refused.value.one_line()


async def test_a_code_inside_another_is_no_key_to_the_longer_one(
    running_world: RunningWorld, cloud: NokeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redacting a short code first would leave the rest of a longer one that starts with it
    ("<code>1101") in the message."""
    mac = mac_of(running_world)
    await cloud.issue_quick_clicks(mac, [(secret("1001101"), 2)])
    monkeypatch.setattr("blelock.vendors.noke.cloud.check_issue", lambda *args: None)
    with pytest.raises(CloudRejected) as refused:
        await cloud.issue_quick_clicks(mac, [(secret("100"), 1), (secret("1001101"), 2)])
    said = refused.value.one_line()
    assert "<code>" in said and "1101" not in said
