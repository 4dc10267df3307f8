"""The companion's side of a Secure DFU transfer as a pure state machine: :class:`DfuSession`
says what to write next and checks every answer (running CRC32, PRN receipts, Select-based
resume). A thin async driver runs it over a link; see :mod:`blelock.protocol.dfu`."""

from __future__ import annotations

import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import ClassVar

from blelock.errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from blelock.protocol._bytes import crc32
from blelock.protocol.dfu import (
    BOOTLOADER_MAX_ATT_MTU,
    CONTROL_POINT_UUID,
    DATA_OBJECT_MAX_SIZE,
    DATA_PACKET_UUID,
    DEFAULT_PRN,
    INIT_COMMAND_MAX_SIZE,
    MAX_OBJECT_ATTEMPTS,
    MAX_PACKET_SIZE,
    MIN_PACKET_SIZE,
    ChecksumResponse,
    ErrorResponse,
    ExtendedError,
    ObjectType,
    Opcode,
    Response,
    ResultCode,
    SelectResponse,
    decode_response,
    encode_calc_checksum,
    encode_create,
    encode_execute,
    encode_select,
    encode_set_prn,
    explain,
)
from blelock.protocol.dfu_package import DfuPackage

__all__ = [
    "Acknowledged",
    "Action",
    "AwaitReceipt",
    "Confirmed",
    "DfuSession",
    "Event",
    "Executed",
    "Finished",
    "Progress",
    "Refused",
    "Retrying",
    "Selected",
    "WriteControl",
    "WritePacket",
    "packet_size_for_mtu",
]


# --- the transfer planner (companion side) ----------------------------------------------------


def packet_size_for_mtu(mtu: int) -> int:
    """Bytes per data-packet write: ATT MTU - 3, capped by what the bootloader negotiates."""
    if mtu < MIN_PACKET_SIZE + 3:
        raise LocalProtocolError(f"ATT MTU {mtu} is below the minimum of 23")
    return min(mtu, BOOTLOADER_MAX_ATT_MTU) - 3


@dataclass(frozen=True, slots=True)
class WriteControl:
    """Write ``data`` to the control point *with response*, then wait for one control-point
    notification and hand it to :meth:`DfuSession.receive`."""

    data: bytes
    request: Opcode
    characteristic: ClassVar[str] = CONTROL_POINT_UUID
    response: ClassVar[bool] = True
    expects_notification: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class WritePacket:
    """Write ``data`` to the data packet characteristic *without response*; wait for nothing."""

    data: bytes
    characteristic: ClassVar[str] = DATA_PACKET_UUID
    response: ClassVar[bool] = False
    expects_notification: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class AwaitReceipt:
    """Write nothing: wait for the packet receipt notification the bootloader sends after every
    PRN packets, and hand it to :meth:`DfuSession.receive`. Also the flow control: sending on
    before it arrives would overrun a real bootloader's buffers."""

    object_type: ObjectType
    offset: int
    """The offset the receipt should report."""
    data: ClassVar[bytes] = b""
    request: ClassVar[Opcode] = Opcode.CALCULATE_CHECKSUM
    characteristic: ClassVar[None] = None
    response: ClassVar[bool] = False
    expects_notification: ClassVar[bool] = True


Action = WriteControl | WritePacket | AwaitReceipt


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A request without new bytes succeeded (SetPRN, Create)."""

    request: Opcode


@dataclass(frozen=True, slots=True)
class Selected:
    """The bootloader's Select answer and what the planner does with it: ``resume_offset`` is
    where sending continues (0: from the start of the object type)."""

    object_type: ObjectType
    max_size: int
    offset: int
    crc: int
    resume_offset: int


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The bootloader holds exactly our first ``offset`` bytes (CRC and offset checked)."""

    object_type: ObjectType
    offset: int


@dataclass(frozen=True, slots=True)
class Executed:
    """An object was executed: for the init packet, the bootloader accepted it."""

    object_type: ObjectType
    offset: int


@dataclass(frozen=True, slots=True)
class Retrying:
    """A check failed; the planner resends from ``offset`` (0 for DATA after a restart means the
    whole update starts over with the init packet)."""

    object_type: ObjectType
    offset: int
    reason: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The bootloader said no. The session is over; nothing more will be sent."""

    request: Opcode
    result: ResultCode
    extended: ExtendedError | None

    @property
    def message(self) -> str:
        return explain(self.result, self.extended)


@dataclass(frozen=True, slots=True)
class Finished:
    """The last Execute succeeded: the image verified, the bootloader activates it and resets
    (the link drops)."""

    size: int
    fw_version: int | None
    """The init packet's (None: it names none, as for a SoftDevice)."""


Event = Acknowledged | Selected | Confirmed | Executed | Retrying | Refused | Finished
_EVENTS = (Acknowledged, Selected, Confirmed, Executed, Retrying, Refused, Finished)


@dataclass(frozen=True, slots=True)
class Progress:
    confirmed: int
    """Image bytes the bootloader has confirmed holding (CRC-checked), including resumed ones."""
    total: int

    @property
    def fraction(self) -> float:
        return self.confirmed / self.total if self.total else 1.0


class _Stop(Exception):
    """The bootloader refused: unwind the plan."""


class _Restart(Exception):
    """The bootloader's saved progress is unusable: start over with a fresh init packet."""


@dataclass(frozen=True, slots=True)
class _Resume:
    max_size: int
    offset: int
    crc: int
    verify_base: bool
    """The bytes at ``offset`` are not CRC-confirmed yet: check after the first Create."""


_Plan = Generator[Action | Event, Response | None, None]


class DfuSession:
    """One connection's worth of a Secure DFU transfer, planned without I/O.

    Contract for the (async) driver, per connection to the bootloader::

        session = DfuSession(package, packet_size=packet_size_for_mtu(mtu), prn=prn)
        # enable control-point notifications first (the bootloader refuses writes before)
        while (action := session.next_action()) is not None:
            if action.characteristic is not None:
                await write(action.characteristic, action.data, response=action.response)
            if action.expects_notification:
                for event in session.receive(await next_notification(timeout=RESPONSE_TIMEOUT_S)):
                    if isinstance(event, Refused): raise …(event.message)   # session is over
                report(session.progress)
        assert session.finished

    * ``next_action()`` returns the next step, or None when the transfer is finished or refused.
      Calling it while a notification is owed raises RuntimeError.
    * ``receive()`` takes the one control-point notification a WriteControl or AwaitReceipt asked
      for and returns what it meant (one event, in a list as every exchange's). It raises
      RemoteProtocolError (the session is then dead) on malformed bytes, a response to the
      wrong request, a bootloader whose state contradicts itself, or an object that failed its
      CRC :data:`MAX_OBJECT_ATTEMPTS` times.
    * A lost link: drop the session, reconnect, and start a **new** session with the same
      package. It Selects the bootloader's state and continues from the last verified offset:
      the bootloader holds the progress, not this object.

    The flow (nrfutil's, bleak.md §3): SetPRN; Select the command object — if the bootloader
    already holds a prefix of this init packet (CRC match) finish and execute it, else Create,
    stream, check, Execute; Select the data object — if its offset and CRC match a prefix of the
    image, continue from there (finishing a partly sent object, or executing a complete one),
    else re-create the partly sent object (or, if even the executed part does not match, start
    over with the init packet); then per object: Create, stream in ``packet_size`` writes,
    await a receipt every ``prn`` packets, CalcChecksum (skipped when a receipt already
    confirmed the object's end), Execute. Every CRC is the running CRC32 of everything sent of
    that object type so far. A CRC or offset mismatch re-creates the object (the bootloader then
    rolls back to its last executed object).
    """

    def __init__(
        self,
        package: DfuPackage,
        *,
        packet_size: int = MIN_PACKET_SIZE,
        prn: int = DEFAULT_PRN,
        max_attempts: int = MAX_OBJECT_ATTEMPTS,
    ) -> None:
        if not MIN_PACKET_SIZE <= packet_size <= MAX_PACKET_SIZE:
            raise LocalProtocolError(
                f"packet size {packet_size} is outside {MIN_PACKET_SIZE}-{MAX_PACKET_SIZE}"
            )
        if not 0 <= prn <= 0xFFFF:
            raise LocalProtocolError(f"PRN {prn} is outside 0-65535")
        if max_attempts < 1:
            raise LocalProtocolError("an object needs at least one attempt")
        if package.init.command.image_size != len(package.firmware) or not package.firmware:
            raise LocalProtocolError("the package's image and init packet disagree on its size")
        if len(package.init_packet) > INIT_COMMAND_MAX_SIZE:
            raise LocalProtocolError(f"init packet is larger than {INIT_COMMAND_MAX_SIZE} bytes")
        self.package = package
        self.packet_size = packet_size
        self.prn = prn
        self.max_attempts = max_attempts
        self.refusal: Refused | None = None
        self.finished = False
        self.packets_sent = 0
        self.image_bytes_sent = 0
        """Image bytes written in this session (a resumed session sends fewer)."""
        self.retries = 0
        self._confirmed = 0
        self._since_reset = 0  # packets since Create/SetPRN: the bootloader's PRN counter
        self._restarted = False
        self._max_object_size = DATA_OBJECT_MAX_SIZE  # replaced by the data Select's answer
        self._awaiting: WriteControl | AwaitReceipt | None = None
        self._closed = False
        self._plan: _Plan = self._run()

    # -- the driver's interface --

    @property
    def progress(self) -> Progress:
        return Progress(self._confirmed, len(self.package.firmware))

    @property
    def awaiting(self) -> WriteControl | AwaitReceipt | None:
        """The action whose notification :meth:`receive` expects, if any."""
        return self._awaiting

    def next_action(self) -> Action | None:
        if self._awaiting is not None:
            raise RuntimeError(f"a notification is owed for {self._awaiting}: call receive()")
        if self._closed:
            return None
        try:
            item = self._plan.send(None)
        except StopIteration:
            self._closed = True
            return None
        if isinstance(item, _EVENTS):
            raise RuntimeError(f"planner produced {item} where an action was due")
        if isinstance(item, WritePacket):
            self.packets_sent += 1
        elif isinstance(item, WriteControl | AwaitReceipt):
            self._awaiting = item
        return item

    def receive(self, notification: bytes) -> list[Event]:
        if self._awaiting is None:
            raise RemoteProtocolError(
                f"unexpected DFU notification {bytes(notification).hex()}: nothing was asked"
            )
        self._awaiting = None
        try:
            item = self._plan.send(decode_response(notification))
        except ProtocolError:
            self._close()
            raise
        except StopIteration:
            raise RuntimeError("planner ended while handling a notification") from None
        if not isinstance(item, _EVENTS):
            raise RuntimeError(f"planner produced {item} where an event was due")
        return [item]

    def _close(self) -> None:
        self._closed = True
        self._plan.close()

    # -- the plan --

    def _run(self) -> _Plan:
        try:
            yield from self._request(WriteControl(encode_set_prn(self.prn), Opcode.SET_PRN))
            self._since_reset = 0
            yield Acknowledged(Opcode.SET_PRN)
            while True:
                try:
                    yield from self._send_init_packet()
                    resume = yield from self._select_data()
                    yield from self._send_image(resume)
                    return
                except _Restart:
                    self._restarted = True
                    self._confirmed = 0
        except _Stop:
            return

    def _request(
        self, action: WriteControl | AwaitReceipt, *, tolerate: ResultCode | None = None
    ) -> Generator[Action | Event, Response | None, Response]:
        """Yield ``action``, take its reply, check it answers ``action``. A refusal yields the
        Refused event and stops the plan, unless its result is ``tolerate`` (then it is
        returned, and the caller yields the event)."""
        reply = yield action
        if reply is None:
            raise RuntimeError("the plan was resumed without the notification it waits for")
        if reply.request is not action.request:
            raise RemoteProtocolError(
                f"expected a response to {action.request.name}, got one to {reply.request.name}"
            )
        if isinstance(reply, ErrorResponse) and reply.result is not tolerate:
            self.refusal = Refused(reply.request, reply.result, reply.extended)
            yield self.refusal
            raise _Stop
        return reply

    def _checksum(
        self, action: WriteControl | AwaitReceipt
    ) -> Generator[Action | Event, Response | None, ChecksumResponse]:
        reply = yield from self._request(action)
        if not isinstance(reply, ChecksumResponse):  # decode_response guarantees it
            raise RemoteProtocolError(f"expected a checksum, got {reply}")
        return reply

    def _restart(self, reason: str) -> Retrying:
        """The event announcing a fresh start; a second one in a session means the bootloader
        contradicts itself."""
        if self._restarted:
            raise RemoteProtocolError(f"the bootloader's state is inconsistent: {reason}")
        self.retries += 1
        return Retrying(ObjectType.DATA, 0, f"{reason}; starting over", 1)

    def _send_init_packet(self) -> _Plan:
        init = self.package.init_packet
        reply = yield from self._request(
            WriteControl(encode_select(ObjectType.COMMAND), Opcode.SELECT)
        )
        if not isinstance(reply, SelectResponse):
            raise RemoteProtocolError(f"expected a Select answer, got {reply}")
        if reply.max_size < len(init):
            raise LocalProtocolError(
                f"the init packet is {len(init)} bytes; this bootloader takes {reply.max_size}"
            )
        held = reply.offset
        resumable = (
            not self._restarted and 0 < held <= len(init) and reply.crc == crc32(init[:held])
        )
        yield Selected(
            ObjectType.COMMAND, reply.max_size, held, reply.crc, held if resumable else 0
        )
        if resumable:
            problem = None
            if held < len(init):
                problem = yield from self._stream(ObjectType.COMMAND, init, held, len(init))
            if problem is None:
                yield from self._execute(ObjectType.COMMAND, len(init))
                return
            self.retries += 1
            yield Retrying(ObjectType.COMMAND, 0, problem, 1)
        yield from self._send_object(ObjectType.COMMAND, init, 0, verify_base=False)

    def _select_data(self) -> Generator[Action | Event, Response | None, _Resume]:
        image = self.package.firmware
        reply = yield from self._request(
            WriteControl(encode_select(ObjectType.DATA), Opcode.SELECT)
        )
        if not isinstance(reply, SelectResponse):
            raise RemoteProtocolError(f"expected a Select answer, got {reply}")
        size, held = reply.max_size, reply.offset
        if size == 0:
            raise RemoteProtocolError("the bootloader reports a maximum object size of 0")
        self._max_object_size = size
        if held > len(image):
            yield self._restart(f"the bootloader holds {held} bytes of a {len(image)}-byte image")
            raise _Restart
        if held == 0 or reply.crc == crc32(image[:held]):
            self._confirmed = held
            yield Selected(ObjectType.DATA, size, held, reply.crc, held)
            return _Resume(size, held, reply.crc, verify_base=False)
        # The bytes since the last object boundary are suspect; the bootloader rolls back to
        # its last executed object when that object is created again.
        start = (held - 1) // size * size
        yield Selected(ObjectType.DATA, size, held, reply.crc, start)
        return _Resume(size, start, crc32(image[:start]), verify_base=True)

    def _send_image(self, resume: _Resume) -> _Plan:
        image, size = self.package.firmware, resume.max_size
        offset = resume.offset
        if offset and not resume.verify_base:
            into_object = offset % size
            if into_object and offset < len(image):
                start = offset - into_object
                end = min(start + size, len(image))
                problem = yield from self._stream(ObjectType.DATA, image, offset, end)
                if problem is None:
                    yield from self._execute(ObjectType.DATA, end)
                    offset = end
                else:
                    self.retries += 1
                    self._confirmed = start
                    yield Retrying(ObjectType.DATA, start, problem, 1)
                    offset = start
            else:
                # A complete object may be waiting for its Execute (the link fell in between).
                yield from self._execute(ObjectType.DATA, offset, resuming=offset < len(image))
        verify = resume.verify_base
        while offset < len(image):
            yield from self._send_object(ObjectType.DATA, image, offset, verify_base=verify)
            verify = False
            offset = min(offset + size, len(image))

    def _object_end(self, kind: ObjectType, data: bytes, start: int) -> int:
        if kind is ObjectType.COMMAND:
            return len(data)
        return min(start + self._max_object_size, len(data))

    def _send_object(
        self, kind: ObjectType, data: bytes, start: int, *, verify_base: bool
    ) -> _Plan:
        end = self._object_end(kind, data, start)
        for attempt in range(1, self.max_attempts + 1):
            yield from self._request(WriteControl(encode_create(kind, end - start), Opcode.CREATE))
            self._since_reset = 0
            yield Acknowledged(Opcode.CREATE)
            if verify_base:
                held = yield from self._checksum(
                    WriteControl(encode_calc_checksum(), Opcode.CALCULATE_CHECKSUM)
                )
                if (held.offset, held.crc) != (start, crc32(data[:start])):
                    yield self._restart(
                        f"after rollback the bootloader holds {held.offset} bytes with CRC "
                        f"{held.crc:08X}, not the first {start} bytes of this image"
                    )
                    raise _Restart
                self._confirm(kind, start)
                yield Confirmed(kind, start)
                verify_base = False
            problem = yield from self._stream(kind, data, start, end)
            if problem is None:
                yield from self._execute(kind, end)
                return
            if attempt == self.max_attempts:
                raise RemoteProtocolError(
                    f"the {kind.name.lower()} object at offset {start} failed its check "
                    f"{attempt} times ({problem}); the link corrupts data"
                )
            self.retries += 1
            if kind is ObjectType.DATA:
                self._confirmed = min(self._confirmed, start)
            yield Retrying(kind, start, problem, attempt)

    def _stream(
        self, kind: ObjectType, data: bytes, start: int, end: int
    ) -> Generator[Action | Event, Response | None, str | None]:
        """Write ``data[start:end]``, checking receipts, then the checksum unless the last
        receipt fell on ``end``. None when the bootloader confirmed ``data[:end]``, else what
        went wrong (the event for the failing notification is the caller's to yield)."""
        offset, crc = start, crc32(data[:start])
        confirmed_at = -1
        while offset < end:
            chunk = data[offset : min(offset + self.packet_size, end)]
            yield WritePacket(chunk)
            offset += len(chunk)
            crc = zlib.crc32(chunk, crc)  # continues the running CRC32
            if kind is ObjectType.DATA:
                self.image_bytes_sent += len(chunk)
            self._since_reset += 1
            if self.prn and self._since_reset % self.prn == 0:
                receipt = yield from self._checksum(AwaitReceipt(kind, offset))
                if problem := _mismatch("receipt", receipt, offset, crc):
                    return problem
                self._confirm(kind, offset)
                yield Confirmed(kind, offset)
                confirmed_at = offset
        if confirmed_at == end:
            return None
        checksum = yield from self._checksum(
            WriteControl(encode_calc_checksum(), Opcode.CALCULATE_CHECKSUM)
        )
        if problem := _mismatch("checksum", checksum, end, crc):
            return problem
        self._confirm(kind, end)
        yield Confirmed(kind, end)
        return None

    def _execute(
        self, kind: ObjectType, end: int, *, resuming: bool = False
    ) -> Generator[Action | Event, Response | None, bool]:
        """Execute the current object; True when it was executed. ``resuming`` (at an object
        boundary short of the end, on reconnect): an *empty* object may be current, created
        just before the link fell, and the bootloader answers OPERATION_NOT_PERMITTED. That
        means "nothing to execute" (a Create discards unexecuted data, so everything before
        ``end`` was executed): carry on with the next Create."""
        tolerate = ResultCode.OPERATION_NOT_PERMITTED if resuming else None
        action = WriteControl(encode_execute(), Opcode.EXECUTE)
        reply = yield from self._request(action, tolerate=tolerate)
        if isinstance(reply, ErrorResponse):
            yield Acknowledged(Opcode.EXECUTE)
            return False
        if kind is ObjectType.DATA and end == len(self.package.firmware):
            self.finished = True
            yield Finished(end, self.package.init.command.fw_version)
        else:
            yield Executed(kind, end)
        return True

    def _confirm(self, kind: ObjectType, offset: int) -> None:
        if kind is ObjectType.DATA:
            self._confirmed = offset


def _mismatch(what: str, reply: ChecksumResponse, offset: int, crc: int) -> str | None:
    if (reply.offset, reply.crc) == (offset, crc):
        return None
    return (
        f"{what} says {reply.offset} bytes with CRC {reply.crc:08X}, "
        f"expected {offset} bytes with CRC {crc:08X}"
    )
