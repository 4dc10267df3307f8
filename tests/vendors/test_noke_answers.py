"""How a visit reads each answer a lock can give, over a scripted link (no radio needed)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
from collections.abc import AsyncIterator, Sequence

import pytest

from blelock.config import Timeouts
from blelock.errors import LinkError, LinkLost, LinkTimeout, LockRefused, OfflineKeyMissing
from blelock.model import LogRecord, MacAddress, parse_mac
from blelock.transport.base import LinkInfo, LockLink
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.keys import CachedKey
from blelock.vendors.noke.values import Action
from blelock.vendors.noke.visit import SHUTDOWN_WAIT_S, NokeVisit

MAC = parse_mac("C7:E6:B0:C6:75:38")
SESSION = bytes.fromhex("0000040ba7b0d91f7f45ad25698a18375c7e4f16")
PACKETS = [bytes.fromhex("00000001" + "11" * 16), bytes.fromhex("00000000" + "22" * 16)]


class ScriptedLink:
    """Answers the n-th write with the n-th list of notifications."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = answers
        self.written: list[bytes] = []
        self.pending: list[bytes] = []

    @property
    def info(self) -> LinkInfo:
        return LinkInfo(mtu=23, rssi=None)

    async def read(self, char_uuid: str, *, timeout: float) -> bytes:
        assert char_uuid == noke.SESSION_UUID
        return SESSION

    async def subscribe(self, char_uuid: str, *, timeout: float) -> None:
        assert char_uuid == noke.NOTIFY_UUID

    async def write(
        self, char_uuid: str, data: bytes, *, timeout: float, response: bool = False
    ) -> None:
        assert not response  # Nokē commands go without response
        self.written.append(data)
        self.pending.extend(self.answers.pop(0) if self.answers else [])

    async def notification(self, *, timeout: float) -> bytes:
        if not self.pending:
            raise LinkTimeout("scripted silence")
        return self.pending.pop(0)


class Commands:
    async def unlock_commands(
        self, mac: MacAddress, session_hex: str, tracking_key: str | None = None
    ) -> list[bytes]:
        assert session_hex == SESSION.hex()
        return PACKETS

    unshackle_commands = unlock_commands


def visit_over(links: list[ScriptedLink]) -> NokeVisit:
    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[LockLink]:
        yield links.pop(0)

    return NokeVisit(MAC, opener, Commands(), Timeouts())


OK = noke.answer(noke.ResultCode.SUCCESS)
REFUSALS = [
    code
    for code in noke.ResultCode
    if code not in (noke.ResultCode.SUCCESS, noke.ResultCode.SHUTDOWN)
] + [noke.ResultCode(0x77)]


@pytest.mark.parametrize("code", REFUSALS, ids=lambda c: c.name)
async def test_every_refusal_code_stops_the_batch_and_is_named(code: noke.ResultCode) -> None:
    link = ScriptedLink([[OK], [noke.answer(code)]])
    with pytest.raises(LockRefused) as caught:
        await visit_over([link]).run(Action.UNLOCK)
    error = caught.value
    assert error.reason == code
    assert f"0x{code.value:02X}" in error.message and "packet 2 of 2" in error.message
    assert (error.lock_id, error.step) == (MAC, "send commands")
    assert error.hint
    assert len(link.written) == 2


async def test_server_packets_around_answers_are_all_kept() -> None:
    log_a, log_b = bytes([0x50]) + bytes(19), bytes([0x50, 1]) + bytes(18)
    link = ScriptedLink([[log_a, OK], [log_b, OK]])
    visit = visit_over([link])
    outcome = await visit.run(Action.UNLOCK, tracking_key="tech-7")
    assert outcome.packets_sent == 2
    assert [r.payload for r in outcome.logs] == [log_a.hex(), log_b.hex()]
    assert {r.context for r in outcome.logs} == {SESSION.hex()}


async def test_silent_lock_times_out_naming_the_packet() -> None:
    link = ScriptedLink([[OK], []])
    with pytest.raises(LinkTimeout) as caught:
        await visit_over([link]).run(Action.UNLOCK)
    assert "packet 2 of 2" in caught.value.message


async def test_lock_going_to_sleep_mid_batch_is_retried_then_reported() -> None:
    asleep = noke.shutdown_notice(2, timed_out=True)
    links = [ScriptedLink([[asleep]]), ScriptedLink([[asleep]])]
    with pytest.raises(LinkLost) as caught:
        await visit_over(links).run(Action.UNLOCK)
    assert "went to sleep" in caught.value.message
    assert not links  # both attempts used a fresh link


class SlowCommands(Commands):
    async def unlock_commands(
        self, mac: MacAddress, session_hex: str, tracking_key: str | None = None
    ) -> list[bytes]:
        await asyncio.Event().wait()  # a cloud that never answers
        raise AssertionError("unreachable")


async def test_the_visit_deadline_is_a_link_timeout_naming_lock_and_step() -> None:
    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[LockLink]:
        yield ScriptedLink([])

    visit = NokeVisit(MAC, opener, SlowCommands(), Timeouts(visit=0.05))
    with pytest.raises(LinkTimeout) as caught:
        await visit.run(Action.UNLOCK)
    assert "took longer than 0.05 s" in caught.value.message
    assert (caught.value.lock_id, caught.value.step) == (MAC, "unlock")


class Sink:
    def __init__(self) -> None:
        self.records: list[LogRecord] = []

    async def append(self, records: Sequence[LogRecord]) -> None:
        self.records.extend(records)


class StallingLink(ScriptedLink):
    """Answers as scripted, then waits forever, saying when it started waiting."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        super().__init__(answers)
        self.stalled = asyncio.Event()

    async def notification(self, *, timeout: float) -> bytes:
        if self.pending:
            return self.pending.pop(0)
        self.stalled.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_cancelled_visit_still_keeps_what_the_lock_gave() -> None:
    log = bytes([0x50]) + bytes(19)
    link, sink = StallingLink([[log, OK]]), Sink()

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[LockLink]:
        yield link

    visit = NokeVisit(MAC, opener, Commands(), Timeouts(), logs=sink)
    running = asyncio.create_task(visit.run(Action.UNLOCK))
    await link.stalled.wait()  # packet 1 answered, packet 2 written, no answer coming
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert [r.payload for r in sink.records] == [log.hex()]


class TimedLink(ScriptedLink):
    """Remembers how long the visit was ready to wait for each notification."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        super().__init__(answers)
        self.waits: list[float] = []

    async def notification(self, *, timeout: float) -> bytes:
        self.waits.append(timeout)
        return await super().notification(timeout=timeout)


async def test_the_wait_for_shutdown_is_bounded_whatever_the_command_timeout() -> None:
    """A lock that never says SHUTDOWN holds the user only for SHUTDOWN_WAIT_S after the last
    answer, even when each answer may take longer."""
    link = TimedLink([[OK], [OK]])

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[LockLink]:
        yield link

    visit = NokeVisit(MAC, opener, Commands(), Timeouts(command=30.0))
    outcome = await visit.run(Action.UNLOCK)
    assert outcome.packets_sent == 2
    assert link.waits[:2] == [30.0, 30.0]  # the answers
    assert link.waits[2:] == [SHUTDOWN_WAIT_S]  # then SHUTDOWN, briefly


async def test_a_stray_answer_after_the_last_success_does_not_fail_the_visit() -> None:
    """Once every packet was answered the lock has opened: an answer nobody asked for (a
    battery report, a repeated SUCCESS) or a packet it cannot read, while waiting for SHUTDOWN,
    is ignored, and a record after it is still kept."""
    late = bytes([0x50, 7]) + bytes(18)
    stray = noke.answer(noke.ResultCode.BATTERY_DATA)
    asleep = noke.shutdown_notice(3, timed_out=False)
    unreadable = bytes([0x00]) + bytes(19)  # no such destination
    link = ScriptedLink([[OK], [OK, stray, unreadable, late, asleep]])
    outcome = await visit_over([link]).run(Action.UNLOCK)
    assert outcome.packets_sent == 2 and outcome.attempts == 1
    assert [r.payload for r in outcome.logs] == [late.hex()]


class DribblingLink(ScriptedLink):
    """After the last answer, a record every millisecond and never a SHUTDOWN. The first few
    were sent with the answer (waiting already): they are kept however late the loop runs."""

    waiting = 3

    async def notification(self, *, timeout: float) -> bytes:
        if self.pending:
            return self.pending.pop(0)
        if self.waiting:
            self.waiting -= 1
        else:
            await asyncio.sleep(0.001)  # the lock's pace, well inside each wait's timeout
        return bytes([0x50]) + bytes(19)


async def test_the_wait_for_shutdown_is_bounded_in_total_not_per_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bound is how long the visit lingers after the last answer, whatever the lock sends
    meanwhile: a lock that keeps talking must not run the visit into its deadline (a failure,
    after the lock opened)."""
    monkeypatch.setattr("blelock.vendors.noke.visit.SHUTDOWN_WAIT_S", 0.05)
    link = DribblingLink([[OK], [OK]])

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[LockLink]:
        yield link

    visit = NokeVisit(MAC, opener, Commands(), Timeouts(visit=2.0))
    outcome = await visit.run(Action.UNLOCK)
    # What it sent meanwhile is kept: those waiting, and any heard before the bound.
    assert outcome.packets_sent == 2 and len(outcome.logs) >= DribblingLink.waiting


class OfflineKeys:
    """An offline-key cache that says when it is asked, and answers when let."""

    def __init__(self, *, missing: bool = False) -> None:
        self.asked = asyncio.Event()
        self.missing = missing
        self.lookups = 0

    async def usable(self, lock_id: MacAddress, tracking_key: str | None = None) -> CachedKey:
        self.lookups += 1
        self.asked.set()
        if self.missing:
            raise OfflineKeyMissing("no offline key for it was ever synced")
        now = dt.datetime.now(dt.UTC)
        return CachedKey(lock_id, "tech-1", now, now + dt.timedelta(days=1), bytes(16), bytes(20))


async def test_an_offline_visit_looks_its_key_up_while_the_link_opens() -> None:
    keys = OfflineKeys()
    link = ScriptedLink([[OK]])

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[LockLink]:
        # A link that opens only once the key is being looked up: a visit that asked for the
        # key after connecting would wait here for good.
        async with asyncio.timeout(5):
            await keys.asked.wait()
        yield link

    visit = NokeVisit(MAC, opener, None, Timeouts(), offline_keys=keys)
    outcome = await visit.run(Action.UNLOCK, mode="offline")
    assert outcome.offline and outcome.packets_sent == 1 and len(link.written) == 1
    assert keys.lookups == 1


async def test_a_retried_offline_visit_looks_its_key_up_once() -> None:
    keys = OfflineKeys()
    asleep = noke.shutdown_notice(1, timed_out=True)
    links = [ScriptedLink([[asleep]]), ScriptedLink([[OK]])]
    outcome = await visit_with_keys(links, keys).run(Action.UNLOCK, mode="offline")
    assert outcome.attempts == 2 and outcome.offline
    assert keys.lookups == 1


async def test_a_missing_offline_key_still_fails_at_its_own_step() -> None:
    keys = OfflineKeys(missing=True)
    with pytest.raises(OfflineKeyMissing) as caught:
        await visit_with_keys([ScriptedLink([])], keys).run(Action.UNLOCK, mode="offline")
    assert (caught.value.lock_id, caught.value.step) == (MAC, "offline key")


async def test_a_visit_that_cannot_connect_leaves_no_key_lookup_unsettled() -> None:
    keys = OfflineKeys(missing=True)
    loop = asyncio.get_running_loop()
    gc.collect()  # what earlier tests left behind reports now, not below
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[LockLink]:
        await keys.asked.wait()  # the lookup failed in the step that set it
        raise LinkError("the lock did not answer the connection")
        yield ScriptedLink([])  # pragma: no cover

    try:
        with pytest.raises(LinkError):
            await NokeVisit(MAC, opener, None, Timeouts(), offline_keys=keys).run(
                Action.UNLOCK, mode="offline"
            )
        gc.collect()  # a task whose error nobody took reports it when collected
    finally:
        loop.set_exception_handler(None)
    assert [c for c in reported if isinstance(c.get("exception"), OfflineKeyMissing)] == []


def visit_with_keys(links: list[ScriptedLink], keys: OfflineKeys) -> NokeVisit:
    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[LockLink]:
        yield links.pop(0)

    return NokeVisit(MAC, opener, None, Timeouts(), offline_keys=keys)
