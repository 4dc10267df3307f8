"""``RadioServer``: the simulated radio (:class:`simulators.radio.Radio`) on a loopback TCP port,
which owns all timing. Both an in-process test and a separate ``blelock-sim`` process reach
it through the socket, so the companion has one code path.

Wire protocol
-------------
One JSON object per line (UTF-8, ``\\n``-terminated); bytes travel as lowercase hex strings and
UUIDs as lowercase 128-bit strings. One TCP connection per bleak client or scanner ("session");
a session holds at most one link and may scan.

Requests (client → server) carry an integer ``id`` and an ``op``; every request gets exactly one
reply with the same ``id``, in request order (a session's requests are served one at a time,
which is also ATT's one-outstanding-request rule)::

    {"id": 1, "op": "scan-start"}                    → {"id": 1, "ok": true}
    {"id": 2, "op": "scan-stop"}                     → {"id": 2, "ok": true}
    {"id": 3, "op": "connect", "address": "AA:…"}    → {"id": 3, "ok": true, "name": str|null,
        "services": [{"uuid": u, "characteristics": [{"uuid": u, "properties": [str]}]}]}
    {"id": 4, "op": "read", "char": u}               → {"id": 4, "ok": true, "value": hex}
    {"id": 5, "op": "write", "char": u, "value": hex, "response": bool}  → {"id": 5, "ok": true}
    {"id": 6, "op": "subscribe", "char": u, "enabled": bool}           → {"id": 6, "ok": true}
    {"id": 7, "op": "cccd", "char": u}               → {"id": 7, "ok": true, "value": "0100"|"0000"}
    {"id": 8, "op": "disconnect"}                    → {"id": 8, "ok": true}

A failure is ``{"id": n, "ok": false, "error": code, "message": str}`` plus ``"att": int`` for
``"att"``. Codes: ``not-found`` (unknown, out of range or not advertising), ``busy`` (the
peripheral already has a link), ``refused`` (refuse fault), ``att`` (the peripheral refused the
request with an ATT error), ``disconnected`` (the link dropped during the request),
``not-connected``, ``bad-request``, ``internal`` (a peripheral raised something unexpected; the
server carries on).

Events (server → client, no ``id``)::

    {"event": "advert", "address": "AA:…", "local_name": str|null, "manufacturer_data":
        {"<company id, decimal>": hex}, "service_uuids": [u], "service_data": {u: hex},
        "rssi": int, "tx_power": int|null}
    {"event": "notify", "char": u, "value": hex}
    {"event": "disconnected", "reason": str}         (unsolicited: never after "disconnect")

Timing (per peripheral, scaled by its ``slow_factor``): a scanner hears each advertiser
``advertising_interval_s`` after ``scan-start`` and then every interval; ``connect`` answers after
``connect_s``; ``read``, write with response, ``subscribe`` and ``cccd`` after
``connection_interval_s``. ``connect`` negotiates the ATT MTU (the lower of the model's
``att_mtu`` and the peripheral's ``max_att_mtu``, 23 if it declares none; the exchange costs one
more interval) and returns it as ``"mtu"``; a write longer than MTU - 3 is refused (ATT 0x0D).
Writes without response are paced like a real link: each is L2CAP-fragmented into LL PDUs of
``data_length`` octets, and a connection event carries PDUs while the central's buffers
(``packets_per_interval``) and their airtime (:meth:`LatencyModel.pdu_airtime_s`) fit in the
interval (:class:`WritePacer`); a write whose PDUs do not fit waits for the next event before
it is delivered and acked, so a client that awaits each ack is held to the link's rate. Its
notifications follow ``write_round_trip_s`` after delivery; a write with response's
notifications follow its reply. Either waits on as long as the peripheral says it is busy
(``take_busy_s()``: a bootloader's flash erase and write). Notifications keep their order, go
only to subscribed characteristics, and die with their link. When a drop fault fires the server
sends ``disconnected``: after the ack of the write without response that was lost, or before
the ``disconnected`` failure of a write with response.
Closing the TCP connection tears its link down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from simulators.radio import (
    DEFAULT_ATT_MTU,
    Advertisement,
    GattRefused,
    Link,
    LinkDropped,
    Radio,
    RadioError,
    WritePacer,
    _NotConnected,
    normalize_uuid,
)
from simulators.radio_wire import (
    encode_advertisement,
    encode_services,
)

__all__ = ["RadioServer"]

_T = TypeVar("_T")
_log = logging.getLogger(__name__)


class _BadRequest(Exception):
    pass


class RadioServer:
    """``radio`` on a loopback TCP port; see the module docstring for the protocol."""

    def __init__(self, radio: Radio) -> None:
        self.radio = radio
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How a session waits out a link latency (connect, ATT request, write pacing). A test
        may swap it before sessions open to record what the model asks for without waiting."""
        self._server: asyncio.Server  # set by start(), the only way to make one
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, radio: Radio, host: str = "127.0.0.1", port: int = 0) -> RadioServer:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the simulated radio listens on loopback only, not {host}")
        radio_server = cls(radio)
        radio_server._server = await asyncio.start_server(radio_server._serve, host, port)
        return radio_server

    @property
    def address(self) -> str:
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def close(self) -> None:
        """Stop listening and end every session (their links go down with them)."""
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def __aenter__(self) -> RadioServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await _Session(self.radio, reader, writer, self.sleep).run()
        except asyncio.CancelledError:
            # close() ended the session (run() has cleaned up by now). Ending normally, because
            # Python 3.11's start_server calls exception() on this task, which raises for a
            # cancelled one and logs a spurious traceback (3.12 checks cancelled() first).
            pass
        finally:
            self._tasks.discard(task)


_Notes = tuple[float, Link, list[tuple[str, bytes]]]


class _Session:
    """One TCP connection: at most one link, maybe a scan."""

    def __init__(
        self,
        radio: Radio,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._radio = radio
        self._reader = reader
        self._writer = writer
        self._sleep = sleep
        self._link: Link | None = None
        self._pacer = WritePacer()
        self._scan: asyncio.Task[None] | None = None
        self._notes: asyncio.Queue[_Notes] = asyncio.Queue()
        self._after_reply: list[dict[str, Any]] = []
        self._charged_until = 0.0
        self._timeline = 0.0
        """Where the request being handled stands in modelled time: its arrival, plus the waits
        the model imposed on it so far. A wait ends at a point on this line, not a span after
        whenever the simulator got round to it: a real lock's answer time includes its own
        work, so the simulator's Python time must not be added on top of the model."""
        self._ops: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "scan-start": self._scan_start,
            "scan-stop": self._scan_stop,
            "connect": self._connect,
            "disconnect": self._disconnect,
            "read": self._read,
            "write": self._write,
            "subscribe": self._subscribe,
            "cccd": self._cccd,
        }

    async def run(self) -> None:
        sender = asyncio.create_task(self._deliver_notifications())
        try:
            while line := await self._reader.readline():
                await self._handle(line)
        except (ConnectionError, ValueError):  # ValueError: a line beyond the stream limit
            pass
        finally:
            if self._link is not None:
                self._link.close()
            tasks = [task for task in (sender, self._scan) if task is not None]
            for task in tasks:
                task.cancel()
            self._writer.close()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, message: dict[str, Any]) -> None:
        if self._writer.is_closing():
            return
        self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        await self._writer.drain()

    async def _handle(self, line: bytes) -> None:
        self._timeline = asyncio.get_running_loop().time()
        request_id: Any = None
        try:
            try:
                request = json.loads(line)
            except ValueError:
                raise _BadRequest("a request is one line of JSON") from None
            if not isinstance(request, dict) or not isinstance(request.get("id"), int):
                raise _BadRequest("a request is a JSON object with an integer id")
            request_id = request["id"]
            op = self._ops.get(str(request.get("op")))
            if op is None:
                raise _BadRequest(f"unknown op {request.get('op')!r}")
            reply = {"id": request_id, "ok": True, **await op(request)}
        except GattRefused as refusal:
            reply = _failure(request_id, "att", refusal.message, att=refusal.att_error)
        except LinkDropped as drop:
            await self._lose_link(str(drop))
            reply = _failure(request_id, drop.code, str(drop))
        except RadioError as exc:
            reply = _failure(request_id, exc.code, str(exc))
        except _BadRequest as exc:
            reply = _failure(request_id, "bad-request", str(exc))
        except Exception as exc:
            _log.exception("simulated radio: request %r failed", line[:200])
            reply = _failure(request_id, "internal", f"{type(exc).__name__}: {exc}")
        await self._send(reply)
        events, self._after_reply = self._after_reply, []
        for event in events:
            await self._send(event)

    async def _lose_link(self, reason: str) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        await self._send({"event": "disconnected", "reason": reason})

    def _need_link(self) -> Link:
        if self._link is None:
            raise _NotConnected("no link: connect first")
        return self._link

    async def _scan_start(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._scan is None:
            self._scan = asyncio.create_task(self._advertise())
        return {}

    async def _scan_stop(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._scan is not None:
            self._scan.cancel()
            self._scan = None
        return {}

    async def _connect(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._link is not None:
            raise _BadRequest("this session already holds a link; disconnect first")
        address = _field(request, "address", str)
        await self._wait(self._radio.latency_of(address).connect_s)
        link = self._radio.connect(address)
        self._link = link
        self._pacer = WritePacer()  # a new link starts with an empty transmit buffer
        if link.mtu > DEFAULT_ATT_MTU:  # the MTU exchange: one more ATT round trip
            await self._wait(link.latency.connection_interval_s)
        return {"name": link.name, "services": encode_services(link.services), "mtu": link.mtu}

    async def _disconnect(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._link is not None:
            self._link.close()
            self._link = None
        return {}

    async def _read(self, request: dict[str, Any]) -> dict[str, Any]:
        link = self._need_link()
        await self._wait(link.latency.connection_interval_s)
        return {"value": link.read(_uuid_field(request, "char")).hex()}

    async def _write(self, request: dict[str, Any]) -> dict[str, Any]:
        link = self._need_link()
        char = _uuid_field(request, "char")
        data = _hex_field(request, "value")
        if _field(request, "response", bool):
            await self._wait(link.latency.connection_interval_s)
            notes = link.write(char, data, response=True)
            self._queue_notifications(link, notes, delay=link.take_busy_s())
            return {}
        # Delivery (and so the drop fault and the notifications' clock) happens on air, after
        # the wait; the ack after delivery is what paces a client that awaits each write.
        delay = self._pacer.admit(self._timeline, link.latency, len(data)) - self._timeline
        if delay > 0:  # tiny test latencies mostly never wait: no timer for nothing
            await self._wait(delay)
        try:
            notes = link.write(char, data, response=False)
        except LinkDropped as drop:
            # The write command left the central and was lost in the air: it "succeeded",
            # and the central learns of the loss only from the disconnection that follows.
            self._link = None
            self._after_reply.append({"event": "disconnected", "reason": str(drop)})
            return {}
        delay = link.latency.write_round_trip_s + link.take_busy_s()
        self._queue_notifications(link, notes, delay=delay)
        return {}

    async def _subscribe(self, request: dict[str, Any]) -> dict[str, Any]:
        link = self._need_link()
        await self._wait(link.latency.connection_interval_s)
        link.subscribe(_uuid_field(request, "char"), _field(request, "enabled", bool))
        return {}

    async def _cccd(self, request: dict[str, Any]) -> dict[str, Any]:
        link = self._need_link()
        await self._wait(link.latency.connection_interval_s)
        subscribed = link.is_subscribed(_uuid_field(request, "char"))
        return {"value": "0100" if subscribed else "0000"}

    async def _wait(self, seconds: float) -> None:
        """A wait the latency model imposes on a link, counted in ``Radio.modelled_s``: it
        ends ``seconds`` after the request's previous point in modelled time."""
        self._charge(seconds)
        self._timeline += seconds
        loop = asyncio.get_running_loop()
        await self._sleep(max(0.0, self._timeline - loop.time()))
        # Never ahead of the clock: a test's recording sleep returns at once, and what follows
        # is then timed from now, as it would be after a real wait.
        self._timeline = min(self._timeline, loop.time())

    def _charge(self, seconds: float) -> None:
        """Add the part of a wait from the request's point in modelled time that no wait
        already counted covers: writes in flight together wait for their answers at once, and
        count once."""
        start = self._timeline
        end = start + seconds
        self._radio.waits.add(start, end, "link")
        self._radio.modelled_s += max(0.0, end - max(start, self._charged_until))
        self._charged_until = max(self._charged_until, end)

    def _queue_notifications(
        self, link: Link, notes: list[tuple[str, bytes]], delay: float
    ) -> None:
        if notes:
            self._charge(delay)
            self._notes.put_nowait((self._timeline + delay, link, notes))

    async def _deliver_notifications(self) -> None:
        # One queue per session keeps notifications in write order whatever the timer heap does.
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError):
            while True:
                due, link, notes = await self._notes.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                for char, value in notes:
                    if link is self._link and link.is_subscribed(char):
                        await self._send({"event": "notify", "char": char, "value": value.hex()})

    async def _advertise(self) -> None:
        loop = asyncio.get_running_loop()
        due: dict[str, float] = {}
        listened_since: dict[str, float] = {}
        heard: set[str] = set()
        with contextlib.suppress(ConnectionError):
            while True:
                now = loop.time()
                for address in self._radio.addresses:
                    interval = self._radio.latency_of(address).advertising_interval_s
                    if address not in due:
                        listened_since[address], due[address] = now, now + interval
                    if (advertised := due[address]) > now:
                        continue
                    due[address] = now + interval
                    if (advert := self._safe_advertisement(address)) is not None:
                        if address not in heard:
                            # The scan's wait for this lock, as modelled: from when it could
                            # first be heard, adverts suppressed meanwhile (out of range,
                            # connected) included.
                            heard.add(address)
                            self._radio.waits.add(
                                listened_since[address], advertised, f"advert {address}"
                            )
                        await self._send(encode_advertisement(address, advert))
                wake = min(due.values(), default=now + self._radio.latency.advertising_interval_s)
                await asyncio.sleep(max(0.0, wake - loop.time()))

    def _safe_advertisement(self, address: str) -> Advertisement | None:
        try:
            return self._radio.advertisement(address)
        except Exception:
            _log.exception("%s: advertisement() raised; skipping this advert", address)
            return None


def _failure(request_id: Any, code: str, message: str, *, att: int | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"id": request_id, "ok": False, "error": code, "message": message}
    if att is not None:
        reply["att"] = att
    return reply


def _field(request: dict[str, Any], name: str, kind: type[_T]) -> _T:
    value = request.get(name)
    if not isinstance(value, kind):
        raise _BadRequest(f"{name!r} must be a {kind.__name__}")
    return value


def _uuid_field(request: dict[str, Any], name: str) -> str:
    try:
        return normalize_uuid(_field(request, name, str))
    except ValueError:
        raise _BadRequest(f"{name!r} must be a UUID") from None


def _hex_field(request: dict[str, Any], name: str) -> bytes:
    try:
        return bytes.fromhex(_field(request, name, str))
    except ValueError:
        raise _BadRequest(f"{name!r} must be hex") from None
