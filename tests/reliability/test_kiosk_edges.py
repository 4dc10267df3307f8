"""The kiosk API's edges: every route needs the token (and refusing changes nothing), a body
limit, 422s that do not echo the input, the documented error shape, logged 401s without the
token, and no package from outside the firmware folder through a symlink."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from blelock.service.api_guard import MAX_BODY_BYTES
from tests.service.test_api import TOKEN, kiosk, spec

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ERROR_FIELDS = {"kind", "message", "lock_id", "step", "hint"}


async def test_every_route_but_openapi_refuses_without_the_token_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="blelock.service")
    async with kiosk(spec(2), monkeypatch) as k:
        schema = (await k.client.get("/openapi.json")).json()
        lock = k.running.world.locks[0]
        routes = [
            (method.upper(), path.replace("{lock_id}", lock.mac).replace("{job_id}", "0" * 32))
            for path, item in schema["paths"].items()
            for method in item
        ]
        assert len(routes) >= 6 and any("firmware-update" in p for _, p in routes)
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong-token-123"}):
                answer = await k.client.request(method, path, headers=headers, json={})
                assert answer.status_code == 401, (method, path)
                assert set(answer.json()["error"]) == ERROR_FIELDS
        assert k.runner.job("0" * 32) is None and lock.connections == 0
        assert lock.unlocks + lock.offline_unlocks == 0
    refusals = [r for r in caplog.records if "bearer token" in r.getMessage()]
    assert 1 <= len(refusals) < len(routes)  # logged, and rate limited
    assert all("wrong-token-123" not in str(r.__dict__) for r in caplog.records)


async def test_a_large_body_is_refused_before_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    async with kiosk(spec(1), monkeypatch) as k:
        mac = k.running.world.locks[0].mac
        body = b'{"tracking_key": "' + b"x" * (2 * MAX_BODY_BYTES) + b'"}'
        answer = await k.client.post(f"/v1/locks/{mac}/unlock", content=body, headers=AUTH)
        assert answer.status_code == 413 and len(answer.content) < 1000
        assert set(answer.json()["error"]) == ERROR_FIELDS


async def test_a_422_names_the_field_and_does_not_echo_the_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with kiosk(spec(1), monkeypatch) as k:
        mac = k.running.world.locks[0].mac
        secretish = "SECRET" + "y" * 2000
        answer = await k.client.post(
            f"/v1/locks/{mac}/unlock", json={"tracking_key": secretish}, headers=AUTH
        )
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert set(error) == ERROR_FIELDS and "tracking_key" in error["message"]
        assert "SECRET" not in answer.text and len(answer.content) < 2000


async def test_a_symlink_out_of_the_firmware_folder_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder, outside = tmp_path / "firmware", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    (outside / "app.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    (folder / "app.zip").symlink_to(outside / "app.zip")
    async with kiosk(spec(1), monkeypatch, BLELOCK_SERVE_FIRMWARE_DIR=str(folder)) as k:
        mac = k.running.world.locks[0].mac
        answer = await k.client.post(
            f"/v1/locks/{mac}/firmware-update", json={"package": "app.zip"}, headers=AUTH
        )
        assert answer.status_code == 422
        assert "outside the firmware folder" in answer.json()["error"]["message"]
