"""Cloud clients kept as long as their owner (the kiosk's runner): made once under their name,
shared by every visit and upload, closed with the owner; without an owner, made per call."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from blelock.jobs import context, open_store
from blelock.model import LogRecord, parse_mac
from blelock.vendors.base import KeptClients, OperationRequest
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.plugin import PLUGIN as NOKE
from blelock.vendors.outbox import KeptForUpload
from simulators.world import RunningWorld
from tests.conftest import settings_for


class Client:
    def __init__(self) -> None:
        self.closed = False

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.closed = True


async def test_a_kept_client_is_made_once_and_closed_with_its_owner() -> None:
    made: list[Client] = []

    def make() -> Client:
        made.append(Client())
        return made[-1]

    async with KeptClients() as kept:
        first = await kept.get("cloud", make)
        assert await kept.get("cloud", make) is first
        assert await kept.get("other", make) is not first
        assert not first.closed
    assert len(made) == 2 and all(client.closed for client in made)


async def test_visits_share_the_kept_cloud_client(running_world: RunningWorld) -> None:
    settings = settings_for(running_world)
    mac = parse_mac(running_world.world.locks[0].mac)
    created: list[NokeCloud] = []
    original = NokeCloud.from_settings.__func__  # type: ignore[attr-defined]

    def counting(cls: type[NokeCloud], *args: object, **kwargs: object) -> NokeCloud:
        created.append(original(cls, *args, **kwargs))
        return created[-1]

    NokeCloud.from_settings = classmethod(counting)  # type: ignore[method-assign,assignment]
    try:
        async with open_store(settings) as store, KeptClients() as kept:
            for _ in range(2):
                ctx = context(NOKE, settings, store, clients=kept)
                result = await NOKE.run(ctx, mac, OperationRequest("unlock", "online"))
                assert result.online
            assert len(created) == 1 and not created[0]._client.is_closed
        assert created[0]._client.is_closed
        # Without an owner, a visit makes its own and closes it.
        async with open_store(settings) as store:
            await NOKE.run(
                context(NOKE, settings, store), mac, OperationRequest("unlock", "online")
            )
        assert len(created) == 2 and created[1]._client.is_closed
    finally:
        NokeCloud.from_settings = classmethod(original)  # type: ignore[method-assign,assignment]


async def test_an_online_visit_frees_the_radio_before_its_records_go_up(
    running_world: RunningWorld,
) -> None:
    """The kiosk frees a visit's connection slot when the plugin says its radio is done: a
    Nokē visit says so once the link is closed, before it uploads the session's records."""
    settings = settings_for(running_world)
    world = running_world.world
    mac = parse_mac(world.locks[0].mac)
    seen: list[tuple[bool, int]] = []

    def radio_done() -> None:
        seen.append((world.radio.is_connected(mac), world.cloud.requests["upload"]))

    async with open_store(settings) as store:
        ctx = context(NOKE, settings, store, radio_done=radio_done)
        result = await NOKE.run(ctx, mac, OperationRequest("unlock", "online"))
    assert result.online and result.details["uploaded"] and result.logs_uploaded
    assert seen == [(False, 0)]
    assert world.cloud.requests["upload"] == 1


async def test_a_visit_frees_the_radio_before_it_keeps_its_records(
    running_world: RunningWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keeping a session's records needs the disk, not the adapter: a kiosk's next visit gets
    the connection slot while the last one's records are written. They are kept all the same
    (and go up), once, after the link closed."""
    settings = settings_for(running_world)
    world = running_world.world
    mac = parse_mac(world.locks[0].mac)
    steps: list[str] = []
    keep = KeptForUpload.append

    async def kept(sink: KeptForUpload, records: Sequence[LogRecord]) -> None:
        steps.append(f"keep {len(records)}")
        await keep(sink, records)

    def radio_done() -> None:
        steps.append("radio done" if not world.radio.is_connected(mac) else "radio done, linked")

    monkeypatch.setattr(KeptForUpload, "append", kept)
    async with open_store(settings) as store:
        ctx = context(NOKE, settings, store, radio_done=radio_done)
        result = await NOKE.run(ctx, mac, OperationRequest("unlock", "online"))
        assert await store.outbox(NOKE.name).pending_count() == 0  # kept, then uploaded
    assert result.logs_kept > 0 and result.details["uploaded"] == result.logs_kept
    assert steps == ["radio done", f"keep {result.logs_kept}"]
