"""The kiosk's Nokē routes end to end: the service's API (bearer token) over a simulated world,
the Nokē cloud over real HTTP, the lock over the simulated radio.

The run the issue asks for: a quick click issued at the kiosk, an online unlock syncs it, the
code entered on the lock opens it, its use shows in /activity/ with its date range, it is
revoked, another online unlock removes it, and the code no longer opens.
"""

from __future__ import annotations

import datetime as dt

import pytest

from simulators.world import WorldSpec
from tests.conftest import FAST
from tests.service.test_api import AUTH, kiosk

CODE = "10110"


def world() -> WorldSpec:
    return WorldSpec(locks=2, seed=5, latency=FAST)


def at(unix: int) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).isoformat()


async def test_quick_click_from_kiosk_to_lock_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    async with kiosk(world(), monkeypatch) as k:
        mac = k.macs[0]
        lock, cloud = k.running.world.locks[0], k.running.world.cloud
        qc_path = f"/v1/noke/locks/{mac}/quick-clicks"

        issued = await k.client.post(
            qc_path, json={"quick_clicks": [{"code": CODE, "uses": 3}]}, headers=AUTH
        )
        assert issued.status_code == 201, issued.text
        assert CODE not in issued.text  # the code goes in, never out
        (row,) = issued.json()["quick_clicks"]
        assert row == {
            "lock_id": mac,
            "code": "5 presses",
            "uses": 3,
            "state": "pending (not on the lock yet)",
        }
        assert not lock.press_sequence(CODE)  # not synced: the lock does not know it

        synced = await k.client.post(f"/v1/locks/{mac}/unlock", json={}, headers=AUTH)
        assert synced.status_code == 200, synced.text
        sync_batch = cloud.commands_issued[-1]
        listed = await k.client.get(qc_path, headers=AUTH)
        assert [r["state"] for r in listed.json()["quick_clicks"]] == ["on the lock"]

        assert lock.press_sequence(CODE)  # entered on the shackle: it opens, 2 uses left
        assert lock.quick_clicks[CODE] == 2
        carried = await k.client.post(f"/v1/locks/{mac}/unlock", json={}, headers=AUTH)
        assert carried.status_code == 200 and carried.json()["result"]["uploaded"] > 0

        activity = await k.client.get(
            "/v1/noke/activity",
            params={"lock": mac, "action": "quick_click_unlocked"},
            headers=AUTH,
        )
        assert activity.status_code == 200, activity.text
        (use,) = activity.json()["activity"]
        (record,) = [
            r
            for r in cloud.uploaded.values()
            if r.session != sync_batch.session and r.response == lock.server_records[-2][1]
        ]
        # The range: from the cloud's last contact before (the sync unlock's commands) to when
        # the phone received the record.
        assert use["from"] == at(sync_batch.unix_time) and use["to"] == at(record.received_time)
        assert use["from"] <= use["to"] and use["tracking_key"] is None

        revoked = await k.client.post(f"{qc_path}/revoke", json={"codes": [CODE]}, headers=AUTH)
        assert revoked.status_code == 200, revoked.text
        assert [r["state"] for r in revoked.json()["quick_clicks"]] == [
            "revoked (still on the lock)"
        ]
        assert lock.press_sequence(CODE)  # honest: it opens until an online unlock removes it

        removed = await k.client.post(f"/v1/locks/{mac}/unlock", json={}, headers=AUTH)
        assert removed.status_code == 200
        assert (await k.client.get(qc_path, headers=AUTH)).json()["quick_clicks"] == []
        assert not lock.press_sequence(CODE) and CODE not in lock.quick_clicks
        uses = await k.client.get(
            "/v1/noke/activity", params={"action": "quick_click_unlocked"}, headers=AUTH
        )
        assert len(uses.json()["activity"]) == 2  # a record per use reached the cloud


async def test_the_routes_refuse_a_broken_rule_by_name_and_need_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(world(), monkeypatch) as k:
        path = f"/v1/noke/locks/{k.macs[0]}/quick-clicks"
        unauthorised = await k.client.post(path, json={"quick_clicks": [{"code": CODE, "uses": 1}]})
        assert unauthorised.status_code == 401
        assert not k.running.world.cloud.locks[k.macs[0]].quick_clicks
        for click, rule in (
            ({"code": "1021", "uses": 1}, "rule 1"),
            ({"code": "10", "uses": 1}, "rule 2"),
            ({"code": CODE, "uses": 250}, "rule 3"),
        ):
            refused = await k.client.post(path, json={"quick_clicks": [click]}, headers=AUTH)
            assert refused.status_code == 422, refused.text
            error = refused.json()["error"]
            assert rule in error["message"] and error["lock_id"] == k.macs[0]
            assert click["code"] not in error["message"]
        twice = {"quick_clicks": [{"code": CODE, "uses": 1}, {"code": CODE, "uses": 2}]}
        refused = await k.client.post(path, json=twice, headers=AUTH)
        assert refused.status_code == 422 and "rule 4" in refused.json()["error"]["message"]
        bad_mac = await k.client.get("/v1/noke/locks/not-a-mac/quick-clicks", headers=AUTH)
        assert bad_mac.status_code == 422
        window = await k.client.get(
            "/v1/noke/activity",
            params={"after": "2026-01-02T00:00:00Z", "before": "2026-01-01T00:00:00Z"},
            headers=AUTH,
        )
        said = window.json()["error"]["message"]
        assert window.status_code == 422 and "later than" in said and "--" not in said
        naive = await k.client.get(
            "/v1/noke/activity", params={"before": "2026-01-01T00:00:00"}, headers=AUTH
        )
        said = naive.json()["error"]["message"]
        assert naive.status_code == 422 and "before" in said and "--" not in said  # no CLI option


async def test_lock_info_at_the_kiosk(monkeypatch: pytest.MonkeyPatch) -> None:
    async with kiosk(world(), monkeypatch) as k:
        answer = await k.client.get("/v1/noke/locks", headers=AUTH)
        assert answer.status_code == 200
        rows = {row["lock_id"]: row for row in answer.json()["locks"]}
        assert set(rows) == set(k.macs)
        assert rows[k.macs[0]]["waiting_to_sync"] == "setup"
        one = await k.client.get("/v1/noke/locks", params={"lock": k.macs[1]}, headers=AUTH)
        assert [row["lock_id"] for row in one.json()["locks"]] == [k.macs[1]]
