"""The kiosk's access routes under the bearer token: a grant asked for over HTTP is stored,
reconciled by the upkeep (the simulated Nokē and Keyless clouds hold it), shown with its
status, revoked, and counted in /v1/health."""

from __future__ import annotations

import datetime as dt

import pytest

from simulators.world import WorldSpec
from tests.conftest import FAST
from tests.service.test_api import AUTH, kiosk


async def test_a_grant_over_http_reaches_both_clouds_and_leaves_them_when_revoked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = WorldSpec(locks=1, seed=3, latency=FAST, keyless_locks=1)
    async with kiosk(spec, monkeypatch) as k:
        world = k.running.world
        assert world.keyless is not None
        mac, device = k.macs[0], world.keyless.locks[0].locking_device_id
        user = world.keyless.technician_user_id
        ends = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).replace(microsecond=0)
        body = {
            "id": "lease-214",
            "holder": "Renter 214",
            "locks": [mac, device],
            "ends_at": ends.isoformat(),
            "identities": {"tracking_key": "renter-214", "keyless_user": user},
        }
        refused = await k.client.post("/v1/access/grants", json=body, headers=AUTH)
        assert refused.status_code == 422
        assert "only with --round" in refused.json()["error"]["message"]
        assert (await k.client.get("/v1/access/grants", headers=AUTH)).json() == []

        made = await k.client.post("/v1/access/grants", json=body | {"round": True}, headers=AUTH)
        assert made.status_code == 201, made.text
        again = await k.client.post("/v1/access/grants", json=body | {"round": True}, headers=AUTH)
        assert again.json()["id"] == "lease-214"  # sent twice, one grant
        await k.runner.wait_for_sync_rounds(k.runner.sync_rounds + 1)

        shown = (await k.client.get("/v1/access/grants/lease-214", headers=AUTH)).json()
        assert shown["status"] == "active", shown
        noke_lock = world.cloud.locks[mac]
        assert "renter-214" in noke_lock.offline_keys
        permissions = [
            p for p in world.keyless.platform.permissions.values()
            if p.user_id == user and p.locking_device_id == device and p.end == ends
        ]  # fmt: skip
        assert len(permissions) == 1
        health = (await k.client.get("/v1/health", headers=AUTH)).json()
        assert health["grants"] == {"active": 2}

        revoked = await k.client.delete("/v1/access/grants/lease-214", headers=AUTH)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        await k.runner.wait_for_sync_rounds(k.runner.sync_rounds + 1)
        shown = (await k.client.get("/v1/access/grants/lease-214", headers=AUTH)).json()
        assert shown["status"] == "revoked"
        assert "renter-214" not in noke_lock.offline_keys
        assert not any(
            p.id == permissions[0].id for p in world.keyless.platform.permissions.values()
        )

        missing = await k.client.get("/v1/access/grants/nope", headers=AUTH)
        assert missing.status_code == 404
        rules = await k.client.get(f"/v1/access/constraints/{mac}", headers=AUTH)
        assert rules.json()["enforces_period"] is False
        assert (await k.client.get("/v1/access/grants")).status_code == 401
