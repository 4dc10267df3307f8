"""One visit to a Nokē lock: protocol.noke driven over a LockLink, commands from the cloud.

The visit: connect → subscribe to answers → read the session → ask the cloud for the command
string made for that session → write it packet by packet, each after the lock's answer to the
one before → stay connected until the lock's SHUTDOWN packet (at most :data:`SHUTDOWN_WAIT_S`),
as Nokē's libraries do, so records the lock sends after its last answer are kept too → keep
every server record. If the link drops mid-visit, it starts over once with a
fresh connection, a fresh session and a fresh command string: a command string is bound to the
session it was made for, so resending it would only earn a refusal.

Offline: when the cloud cannot be reached (``mode="auto"``) or when asked (``"offline"``), the
single packet is built from a cached offline key and the session (Nokē's public algorithm).
Asked for offline, the key is looked up while the link is being opened: the store's read (an SD
card's, on a Pi) then costs the user nothing, and its refusal still comes with the session read.
Every server record the lock gave, in every attempt, success or not, is handed to the log sink
(the durable outbox) before ``run`` returns or raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from blelock.clock import Clock, SystemClock
from blelock.cloud._policy import OFFLINE_HINT, cannot_serve
from blelock.config import Timeouts
from blelock.errors import (
    CloudError,
    LinkLost,
    LinkTimeout,
    LockRefused,
    OfflineKeyError,
    UsageError,
    lock_context,
)
from blelock.model import LogRecord, MacAddress
from blelock.transport.base import LinkOpener, LockLink
from blelock.transport.drive import deadline, drive
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.values import Action, Outcome

__all__ = ["LogSink", "NokeCommandSource", "NokeVisit", "OfflineKeySource", "VisitMode"]

VisitMode = Literal["auto", "online", "offline"]

ATTEMPTS = 2
"""The first try and one retry after a dropped link; a third rarely helps a user at the lock."""
SHUTDOWN_WAIT_S = 2.0
"""How long after the last answer the visit waits for the lock's SHUTDOWN (the libraries wait
for it unbounded; a lock that never says it must not hold the user, and everything it owed has
been answered by then)."""

_log = logging.getLogger("blelock.vendors.noke")


class NokeCommandSource(Protocol):
    """Where command strings come from (the Nokē cloud client, or a test's stand-in)."""

    async def unlock_commands(
        self, mac: MacAddress, session_hex: str, tracking_key: str | None = None
    ) -> list[bytes]: ...

    async def unshackle_commands(
        self, mac: MacAddress, session_hex: str, tracking_key: str | None = None
    ) -> list[bytes]: ...

    async def fwupdate_commands(
        self, mac: MacAddress, session_hex: str, tracking_key: str | None = None
    ) -> list[bytes]: ...


class OfflineKey(Protocol):
    @property
    def tracking_key(self) -> str: ...
    @property
    def offline_key(self) -> bytes: ...
    @property
    def unlock_command(self) -> bytes: ...


class OfflineKeySource(Protocol):
    """The offline-key cache: the usable key or an OfflineKeyError saying why there is none."""

    async def usable(self, lock_id: MacAddress, tracking_key: str | None = None) -> OfflineKey: ...


class LogSink(Protocol):
    """Where server records go; durable when ``append`` returns."""

    async def append(self, records: Sequence[LogRecord]) -> None: ...


@dataclass(frozen=True, slots=True)
class _Attempt:
    battery_mv: int
    packets_sent: int
    offline: bool


_REFUSAL_HINTS: dict[noke.ResultCode, str] = {
    noke.ResultCode.INVALID_KEY: "the lock's keys may be out of sync with the cloud; wait 60 s "
    "(a lock being set up must not be rushed), try once more, then contact Nokē support",
    noke.ResultCode.INVALID_COMMAND: "this lock does not support that action "
    "(unshackling needs an HD padlock)",
    noke.ResultCode.INVALID_PERMISSION: "the command was refused as replayed or unauthorised; "
    "try again for a fresh command",
    noke.ResultCode.INVALID_DATA: "the command was malformed; try again, and report it if it "
    "persists",
    noke.ResultCode.FAILED_TO_UNLOCK: "take the tension off the shackle and try again",
    noke.ResultCode.FAILED_TO_UNSHACKLE: "take the tension off the shackle and try again",
}


class NokeVisit:
    def __init__(
        self,
        lock_id: MacAddress,
        open_link: LinkOpener,
        commands: NokeCommandSource | None,
        timeouts: Timeouts,
        clock: Clock | None = None,
        *,
        offline_keys: OfflineKeySource | None = None,
        logs: LogSink | None = None,
        radio_done: Callable[[], None] | None = None,
    ) -> None:
        self.lock_id = lock_id
        self._open_link = open_link
        self._commands = commands
        self._timeouts = timeouts
        self._clock = clock or SystemClock()
        self._offline_keys = offline_keys
        self._logs = logs
        self._radio_done = radio_done

    async def run(
        self, action: Action, *, tracking_key: str | None = None, mode: VisitMode = "auto"
    ) -> Outcome:
        """Unlock or unshackle. Raises a BlelockError naming the lock and the step on failure;
        the server records gathered before a failure reach the log sink either way."""
        if mode == "offline" and action is not Action.UNLOCK:
            raise UsageError(f"{action.value} needs the cloud: offline keys only unlock")
        kept: list[LogRecord] = []
        try:
            with lock_context(self.lock_id, action.value):
                async with deadline(self._timeouts.visit, "the visit"):
                    return await self._attempts(action, tracking_key, mode, kept)
        finally:
            # Every link is closed by now: the connection slot goes to the next visit while
            # the records are kept (a kiosk's visits queue for slots; keeping needs the disk).
            if self._radio_done is not None:
                self._radio_done()
            if self._logs is not None and kept:
                with lock_context(self.lock_id, "keep the lock's logs"):
                    await self._logs.append(kept)

    async def _attempts(
        self, action: Action, tracking_key: str | None, mode: VisitMode, kept: list[LogRecord]
    ) -> Outcome:
        looked_up = self._look_up_key(tracking_key) if mode == "offline" else None
        try:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    done = await self._attempt(action, tracking_key, mode, kept, looked_up)
                except LinkLost:
                    if attempt == ATTEMPTS:
                        raise
                    continue
                return Outcome(
                    lock_id=self.lock_id,
                    action=action,
                    battery_mv=done.battery_mv,
                    packets_sent=done.packets_sent,
                    attempts=attempt,
                    logs=tuple(kept),
                    offline=done.offline,
                )
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            if looked_up is not None:
                _settle(looked_up)

    def _look_up_key(self, tracking_key: str | None) -> asyncio.Task[OfflineKey]:
        if self._offline_keys is None:
            raise RuntimeError("an offline visit needs an offline-key source")
        return asyncio.ensure_future(self._offline_keys.usable(self.lock_id, tracking_key))

    async def _packets(
        self,
        action: Action,
        session: noke.Session,
        tracking_key: str | None,
        mode: VisitMode,
        looked_up: asyncio.Task[OfflineKey] | None,
    ) -> tuple[list[bytes], bool]:
        """The packets to write, and whether they came from an offline key (``looked_up``:
        the key's lookup, begun with the visit)."""
        if mode != "offline":
            if self._commands is None:
                raise RuntimeError("an online visit needs a command source")
            if action is Action.FIRMWARE_UPDATE:
                fetch = self._commands.fwupdate_commands
            elif action is Action.UNSHACKLE:
                fetch = self._commands.unshackle_commands
            else:
                fetch = self._commands.unlock_commands
            try:
                with lock_context(self.lock_id, "get commands from the cloud"):
                    return await fetch(self.lock_id, session.hex, tracking_key), False
            except CloudError as unreachable:
                if not cannot_serve(unreachable):
                    raise
                if mode == "online" or self._offline_keys is None or action is not Action.UNLOCK:
                    if action is Action.UNLOCK:
                        unreachable.hint = "; ".join(filter(None, (unreachable.hint, OFFLINE_HINT)))
                    raise
                try:
                    return await self._offline_packet(session, tracking_key), True
                except OfflineKeyError as missing:
                    missing.message = (
                        f"the cloud could not give commands ({unreachable.message}) and "
                        f"{missing.message}"
                    )
                    missing.args = (missing.message,)
                    raise missing from unreachable
        return await self._offline_packet(session, tracking_key, looked_up), True

    async def _offline_packet(
        self,
        session: noke.Session,
        tracking_key: str | None,
        looked_up: asyncio.Task[OfflineKey] | None = None,
    ) -> list[bytes]:
        if self._offline_keys is None:
            raise RuntimeError("an offline visit needs an offline-key source")
        with lock_context(self.lock_id, "offline key"):
            if looked_up is not None:
                key = await looked_up  # a retry after a dropped link has the same answer
            else:
                key = await self._offline_keys.usable(self.lock_id, tracking_key)
        now = int(self._clock.now_utc().timestamp())
        return [noke.build_offline_unlock(key.offline_key, key.unlock_command, session.raw, now)]

    async def _attempt(
        self,
        action: Action,
        tracking_key: str | None,
        mode: VisitMode,
        kept: list[LogRecord],
        looked_up: asyncio.Task[OfflineKey] | None,
    ) -> _Attempt:
        t = self._timeouts
        async with contextlib.AsyncExitStack() as stack:
            with lock_context(self.lock_id, "connect"):
                link = await stack.enter_async_context(self._open_link())
            with lock_context(self.lock_id, "read session"):
                await link.subscribe(noke.NOTIFY_UUID, timeout=t.gatt)
                session = noke.Session.parse(await link.read(noke.SESSION_UUID, timeout=t.gatt))
            packets, offline = await self._packets(action, session, tracking_key, mode, looked_up)
            with lock_context(self.lock_id, "send commands"):
                # The firmware-update command sends the lock to its bootloader: no SHUTDOWN.
                linger = action is not Action.FIRMWARE_UPDATE
                sent = await self._send(link, session, packets, kept, linger=linger)
            return _Attempt(session.battery_mv, sent, offline)

    async def _send(
        self,
        link: LockLink,
        session: noke.Session,
        packets: list[bytes],
        kept: list[LogRecord],
        *,
        linger: bool,
    ) -> int:
        exchange = noke.CompanionSession(packets)
        total = len(packets)

        def check(event: noke.Event) -> None:
            _check(event, total, self.lock_id)

        try:
            await drive(
                link,
                exchange,
                write_timeout=self._timeouts.gatt,
                answer_timeout=self._timeouts.command,
                handle=check,
                waiting_for=lambda: f"no answer to packet {exchange.packets_sent} of {total}",
            )
            if linger and exchange.done and not exchange.asleep:
                exchange.linger()
                wait = min(SHUTDOWN_WAIT_S, self._timeouts.command)
                try:
                    # Bounded in total, not per notification: a lock that keeps talking must
                    # not hold the user, nor run an opened visit into its deadline.
                    async with deadline(wait, "the wait for SHUTDOWN"):
                        await drive(
                            link,
                            exchange,
                            write_timeout=self._timeouts.gatt,
                            answer_timeout=wait,
                            handle=check,
                        )
                except (LinkTimeout, LinkLost):
                    # Every packet was answered: a lock that stays quiet or drops the link
                    # now has done what it was asked.
                    _log.info("%s: no SHUTDOWN after the last answer", self.lock_id)
        finally:
            now = int(self._clock.now_utc().timestamp())
            kept.extend(
                LogRecord(self.lock_id, session.hex, now, record.hex())
                for record in exchange.server_packets
            )
        return exchange.packets_sent


def _settle(task: asyncio.Task[OfflineKey]) -> None:
    """The key's lookup ends with the visit: cancelled if still running, else its outcome taken
    (a visit that failed before it needed the key leaves no error unretrieved)."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def _check(event: noke.Event, total: int, lock_id: str) -> None:
    """A refusal or a lock gone to sleep before the end ends the visit with its reason."""
    if isinstance(event, noke.NotificationIgnored):
        _log.warning("%s: ignored a %d-byte notification (%s)", lock_id, len(event.data), event.why)
        return
    if isinstance(event, noke.Refused):
        code = event.reason
        raise LockRefused(
            f"refused packet {event.index + 1} of {total}: {code.explanation} "
            f"(result 0x{code.value:02X}, Nokē error {code.library_code})",
            reason=code,
            hint=_REFUSAL_HINTS.get(code, "try again; report it if it persists"),
        )
    if isinstance(event, noke.LockAsleep) and not event.after_last:
        raise LinkLost(
            f"the lock went to sleep before packet {event.index + 1} of {total} was answered"
        )
