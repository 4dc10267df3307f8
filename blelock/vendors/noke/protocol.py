"""Nokē BLE protocol, sans-I/O: bytes in, typed values out, for the companion and the lock side.

What is public (``shared/research/noke.md``, from Nokē's own mobile libraries) is followed
exactly: UUIDs, the 20-byte session with the battery at bytes 2-3, ``+``-separated command strings
of 20-byte packets written one at a time, each answered by an app-destined (``0x51``) packet,
server-destined (``0x50``) packets kept for upload, result codes, the offline key combination
(session bytes 0-15 added bytewise to the key) and its cipher direction (the sender runs AES-128
*decryption* on one block, the lock runs the forward cipher).

What is not public is invented here, and only here (noke.md §12-13). The companion never depends
on it: it passes cloud packets through unchanged and reads only bytes 0-1 of the lock's answers.
The simulated cloud and lock use it to be honest with each other:

* **Command packet** = ``header(4) || AES-DEC(K, body)`` with ``K = lock_key ⊞ session[0:16]``.
  ``header = [key slot 0x00, 0x00, batch id, packets remaining after this one]`` (matches the
  observed ``00001f02, 00001f01, 02001f00`` countdown). ``body = [command type, argument,
  unix time u32le, 6 zero bytes, tag u32le]`` where ``tag = CRC32(header || body[0:12])``.
  Enciphering redundancy in one block authenticates it: under any other key (another lock, a
  stale session) or after any bit flip the tag matches with probability 2^-32.
* **Lock's acceptance rules**, one result code each (:data:`REFUSAL_RULES`).
* **Server record** (``0x50``) = ``[0x50, record type, sequence, 0x00] || AES-DEC(K, record)``,
  ``record = [event, detail, unix time u32le, battery mV u16le, counter u16le, 2 zero bytes,
  tag]`` (:class:`RecordEvent`), so that the simulated cloud can open what the companion uploads.
* **Quick clicks** ride in the online command string as ``ADD_QUICK_CLICK`` (argument = uses)
  and ``REMOVE_QUICK_CLICK`` packets whose body bytes 8-11 hold the code
  (:func:`quick_click_field`); the lock holds them and opens for the code pressed on it.
* **Offline keys** (the public algorithm is §6; which key the lock checks against is not):
  slot ``s`` (0-99, the documented pool of 100 offline + fob keys per lock) has
  ``offline_key = HMAC-SHA256(lock_key, "noke offline key" || s)[:16]`` and
  ``unlock_command = [0x00, 0x01 (offline key type), s, 0x00] || body`` with
  ``body = [UNLOCK, s, 0 x 4 (time, stamped by the phone), HMAC(lock_key, "noke offline body"
  || s)[:9], 0 (checksum, stamped by the phone)]``, so the lock can check any slot without a
  key table. The lock opens the phone's packet with ``offline_key ⊞ session`` and accepts it when
  every byte but time and checksum equals the body it derives, the checksum holds, the time is
  within :data:`OFFLINE_CLOCK_WINDOW_S` of its own clock and the slot is not revoked; or, for
  the unstamped packet iOS sends (time and checksum zero), without the time and checksum checks.
  Revocations reach the lock only inside an online command string (``REMOVE_OFFLINE_KEY``
  packets), so a revoked key keeps opening until then, as the Core API README documents
  (noke.md §9.4).
* **App answer** = ``[0x51, result, batch id, packets remaining, 0 x 16]``;
  shutdown = ``[0x51, 0x64, lock state, timeout flag, 0 x 16]`` (the documented layout).
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from blelock.errors import LocalProtocolError, RemoteProtocolError
from blelock.protocol._bytes import OpenByteEnum, crc32, expect_length, hex_bytes, u16le, u32le
from blelock.protocol.exchange import AwaitNotification, Write

# --- GATT and advertising (noke.md §1-2, public) --------------------------------------------

SERVICE_UUID = "1bc50001-0200-d29e-e511-446c609db825"
WRITE_UUID = "1bc50002-0200-d29e-e511-446c609db825"
"""App → lock, exactly 20 bytes, write without response (what iOS always uses)."""
NOTIFY_UUID = "1bc50003-0200-d29e-e511-446c609db825"
SESSION_UUID = "1bc50004-0200-d29e-e511-446c609db825"
COMPANY_ID = 0x038B

PACKET_SIZE = 20
SESSION_SIZE = 20
KEY_SIZE = 16
_COMMAND_PACKET = re.compile(r"[0-9A-Fa-f]{40}")


class Destination(enum.IntEnum):
    SERVER = 0x50
    APP = 0x51
    LOCK = 0x52


class ResultCode(OpenByteEnum):
    """Byte 1 of an app-destined packet (noke.md §5, §14 row 2). Unknown values stay readable."""

    SUCCESS = 0x60
    INVALID_KEY = 0x61
    INVALID_COMMAND = 0x62
    INVALID_PERMISSION = 0x63
    SHUTDOWN = 0x64
    INVALID_DATA = 0x65
    BATTERY_DATA = 0x66
    FAILED_TO_LOCK = 0x68
    FAILED_TO_UNLOCK = 0x69
    FAILED_TO_UNSHACKLE = 0x6A
    OUT_OF_SCHEDULE = 0x6D
    FREE_EXIT = 0x6F
    INVALID = 0xFF

    @property
    def library_code(self) -> int:
        """The error number Nokē's Android library reports (noke.md §14 row 3)."""
        # Android has no case for BATTERY_DATA (0x66): it falls through to 299 there too.
        if 0x60 <= self.value <= 0x65 or self.value == 0x68:
            return 200 + int(f"{self.value:x}")
        if self in _REPORTED_AS_267:
            return 267
        return 299

    @property
    def explanation(self) -> str:
        return _EXPLANATIONS.get(self, f"the lock answered with unknown result 0x{self.value:02X}")


_REPORTED_AS_267 = frozenset(
    {ResultCode.INVALID, ResultCode.FAILED_TO_UNLOCK, ResultCode.FAILED_TO_UNSHACKLE}
)

_EXPLANATIONS: dict[ResultCode, str] = {
    ResultCode.SUCCESS: "success",
    ResultCode.INVALID_KEY: "the lock refused the key (the command was made for another lock "
    "or another session, or the lock's keys are out of sync with the cloud)",
    ResultCode.INVALID_COMMAND: "the lock does not know this command",
    ResultCode.INVALID_PERMISSION: "the lock refused the command's permission (a replayed command "
    "or a wrong key)",
    ResultCode.SHUTDOWN: "the lock went to sleep",
    ResultCode.INVALID_DATA: "the lock refused malformed command data",
    ResultCode.BATTERY_DATA: "the lock sent battery data",
    ResultCode.FAILED_TO_LOCK: "the lock failed to lock (mechanism)",
    ResultCode.FAILED_TO_UNLOCK: "the lock failed to unlock (mechanism jammed?)",
    ResultCode.FAILED_TO_UNSHACKLE: "the lock failed to release the shackle",
    ResultCode.OUT_OF_SCHEDULE: "the key is outside its schedule",
    ResultCode.FREE_EXIT: "free exit",
    ResultCode.INVALID: "the lock reported an invalid packet",
}


class CommandType(enum.IntEnum):
    """Command types from the libraries' constants (noke.md §5); their bodies are invented."""

    SHUTDOWN = 0xA0
    SETUP = 0xA1
    UNLOCK = 0xA2
    REMOVE_OFFLINE_KEY = 0xA3
    GET_LOGS = 0xA5
    FIRMWARE_UPDATE = 0xAB
    ADD_QUICK_CLICK = 0xA7
    """Invented value and body (the libraries never build one: quick clicks ride in the cloud's
    command string): argument = uses, body bytes 8-11 = :func:`quick_click_field`."""
    REMOVE_QUICK_CLICK = 0xA8
    """Invented, as ADD_QUICK_CLICK (argument 0)."""


_QUICK_CLICK_COMMANDS = frozenset({CommandType.ADD_QUICK_CLICK, CommandType.REMOVE_QUICK_CLICK})


class RecordType(enum.IntEnum):
    """Server packet types (byte 1 of a 0x50 packet), from the libraries' constants."""

    KEY = 0x74
    UNLOCK = 0x75
    LOG = 0x76


class RecordEvent(enum.IntEnum):
    """Byte 4 (first sealed byte) of a server record: what happened (invented values; the
    cloud turns them into activity). UNLOCK records of online commands carry the command's
    argument (0 unlock, 1 unshackle)."""

    UNLOCKED = 0x00
    UNSHACKLED = 0x01
    OFFLINE_UNLOCKED = 0x02
    """An UNLOCK record; its detail byte is the offline key's slot."""
    QUICK_CLICK_UNLOCKED = 0x03
    """A LOG record of a quick click entered on the lock; detail = uses left (255 unlimited)."""
    RELOCKED = 0x10
    """A LOG record the lock sends after the last answer of a batch (the shackle closed)."""


UNSHACKLE_ARGUMENT = 0x01
"""Body byte 1 of an UNLOCK that frees the shackle (invented; there is no documented type)."""

OFFLINE_KEY_TYPE = 0x01
"""Header byte 1 of an offline unlock command (the observed ``0001e400`` has 0x01 there)."""
OFFLINE_SLOTS = 100
"""Offline and fob keys share a pool of 100 per lock (Core API README, noke.md §9.4)."""
OFFLINE_CLOCK_WINDOW_S = 300
"""How far the phone's timestamp may be from the lock's clock (invented; phones and locks
drift, and a technician's phone may be minutes off)."""

QUICK_CLICK_LENGTHS = range(3, 25)
"""Characters of a quick-click code (Core API seed doc: "between 3 to 24 characters")."""
QUICK_CLICK_UNLIMITED = 255
QUICK_CLICK_MAX_LIMITED_USES = 244
"""The seed doc allows 1-244 uses or 255 (unlimited). The vendor's public README says 1-254 in
one place and 1-255 in another; the seed doc is followed here (issue 11)."""
QUICK_CLICKS_PER_LOCK = 100
"""The seed doc: "Each lock can hold up to 100 quick clicks"."""

REFUSAL_RULES: tuple[tuple[str, ResultCode], ...] = (
    (
        "not 20 bytes, or its sealed position/total breaks the batch order (a batch starts only"
        " at position 0)",
        ResultCode.INVALID_DATA,
    ),
    ("tag mismatch: another lock's key, a stale session, tampering", ResultCode.INVALID_KEY),
    ("the exact packet was already executed this session (replay)", ResultCode.INVALID_PERMISSION),
    ("command type unknown, or not supported by this hardware", ResultCode.INVALID_COMMAND),
    ("offline: body is not this slot's under this session's key", ResultCode.INVALID_KEY),
    ("quick click: no valid code in bytes 8-11, or uses not 1-244 / 255", ResultCode.INVALID_DATA),
    ("offline: checksum over the stamped body does not hold", ResultCode.INVALID_DATA),
    ("offline: time too far from the lock's clock", ResultCode.OUT_OF_SCHEDULE),
    ("offline: the slot was revoked by an online sync", ResultCode.INVALID_PERMISSION),
)
"""The simulated lock's acceptance rules, in the order it checks them (invented, see above)."""

# --- the session (noke.md §3) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    raw: bytes

    @classmethod
    def parse(cls, data: bytes) -> Session:
        return cls(expect_length(data, SESSION_SIZE, "session"))

    @property
    def hex(self) -> str:
        return self.raw.hex()

    @property
    def battery_mv(self) -> int:
        return u16le(self.raw, 2)


def battery_percent(millivolts: int) -> int:
    """Core API README: 100 at ≥ 3000 mV, linear from 2800 mV."""
    if millivolts >= 3000:
        return 100
    return max(0, (millivolts - 2800) * 100 // 200)


# --- the companion side ---------------------------------------------------------------------


def split_commands(command_string: str) -> list[bytes]:
    """The cloud's ``+``-separated command string → 20-byte packets (empty parts skipped)."""
    parts = [part for part in command_string.strip().split("+") if part]
    if not parts:
        raise RemoteProtocolError("the command string holds no packets")
    for index, part in enumerate(parts, start=1):
        if not _COMMAND_PACKET.fullmatch(part):
            raise RemoteProtocolError(
                f"command packet {index} of {len(parts)} is not 40 hex digits ({len(part)} chars)"
            )
    return [bytes.fromhex(part) for part in parts]


@dataclass(frozen=True, slots=True)
class ServerPacket:
    """A 0x50 packet: opaque to us, kept whole for the cloud."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class AppAnswer:
    result: ResultCode
    raw: bytes


@dataclass(frozen=True, slots=True)
class ShutdownNotice:
    lock_state: int
    timed_out: bool


Notification = ServerPacket | AppAnswer | ShutdownNotice


def decode_notification(data: bytes) -> Notification:
    packet = expect_length(data, PACKET_SIZE, "notification")
    destination = packet[0]
    if destination == Destination.SERVER:
        return ServerPacket(packet)
    if destination == Destination.APP:
        result = ResultCode(packet[1])
        if result is ResultCode.SHUTDOWN:
            return ShutdownNotice(lock_state=packet[2], timed_out=packet[3] != 1)
        return AppAnswer(result, packet)
    raise RemoteProtocolError(f"notification for unknown destination 0x{destination:02X}")


@dataclass(frozen=True, slots=True)
class LogKept:
    packet: bytes


@dataclass(frozen=True, slots=True)
class PacketAccepted:
    index: int
    done: bool


@dataclass(frozen=True, slots=True)
class Refused:
    index: int
    reason: ResultCode


@dataclass(frozen=True, slots=True)
class LockAsleep:
    index: int
    after_last: bool = False
    """The SHUTDOWN came after every packet was accepted: the visit's normal end."""


@dataclass(frozen=True, slots=True)
class NotificationIgnored:
    """A notification the visit has no use for: shorter than 20 bytes (iOS ignores those, so
    does the companion), or an answer or unreadable packet after every packet was answered
    (the lock has done what it was asked; failing the visit then would report an opened lock
    as a failure)."""

    data: bytes
    why: str = "shorter than a Nokē packet's 20 bytes"


Event = LogKept | PacketAccepted | Refused | LockAsleep | NotificationIgnored


@dataclass
class CompanionSession:
    """Writes a batch one packet at a time; the next only after the lock's app answer.

    An exchange (:mod:`blelock.protocol.exchange`): ``next_action()`` is the next packet to
    write, a wait for the answer while one is owed, or None when finished or stopped;
    ``receive()`` takes every notification. Server packets are kept in ``server_packets`` in
    arrival order. Stops at the first refusal (noke.md §4.3: continuing after 0x61/0x63 only
    piles up errors).

    After the last answer, :meth:`linger` makes it wait for the lock's SHUTDOWN as both
    vendor libraries do, so server packets sent after the final SUCCESS are kept too.
    """

    packets: Sequence[bytes]
    server_packets: list[bytes] = field(default_factory=list)
    _index: int = 0
    _awaiting: bool = False
    _stopped: bool = False
    _lingering: bool = False

    def __post_init__(self) -> None:
        if not self.packets:
            raise LocalProtocolError("a command batch needs at least one packet")
        for packet in self.packets:
            if len(packet) != PACKET_SIZE:
                raise LocalProtocolError(f"command packets are 20 bytes, not {len(packet)}")

    @property
    def done(self) -> bool:
        return self._index == len(self.packets)

    @property
    def packets_sent(self) -> int:
        return self._index + (1 if self._awaiting else 0)

    @property
    def asleep(self) -> bool:
        return self._stopped and self.done

    def linger(self) -> None:
        """Once done: wait for the lock's SHUTDOWN (``next_action`` awaits it until then)."""
        self._lingering = True

    def next_action(self) -> Write | AwaitNotification | None:
        if self._stopped:
            return None
        if self.done:
            return AwaitNotification() if self._lingering else None
        if self._awaiting:
            return AwaitNotification()  # a server packet came first: the answer is still owed
        self._awaiting = True
        return Write(WRITE_UUID, bytes(self.packets[self._index]), expects_notification=True)

    def receive(self, notification: bytes) -> list[Event]:
        return [self._receive(notification)]

    def _receive(self, notification: bytes) -> Event:
        if len(notification) < PACKET_SIZE:
            return NotificationIgnored(bytes(notification))
        try:
            message = decode_notification(notification)
        except RemoteProtocolError as unreadable:
            if not self.done:
                raise
            return NotificationIgnored(bytes(notification), f"after the last answer: {unreadable}")
        if isinstance(message, ServerPacket):
            self.server_packets.append(message.raw)
            return LogKept(message.raw)
        if isinstance(message, ShutdownNotice):
            self._stopped = True
            return LockAsleep(self._index, after_last=self.done)
        if not self._awaiting and self.done:
            return NotificationIgnored(bytes(notification), "an answer after the last one")
        if not self._awaiting:
            raise RemoteProtocolError(
                f"the lock answered 0x{message.result.value:02X} with no command pending"
            )
        self._awaiting = False
        if message.result is not ResultCode.SUCCESS:
            self._stopped = True
            return Refused(self._index, message.result)
        self._index += 1
        return PacketAccepted(self._index - 1, self.done)


# --- the shared secret arithmetic (public: noke.md §6) --------------------------------------


def combined_key(key: bytes, session: bytes) -> bytes:
    """Bytewise ``(key[i] + session[i]) mod 256`` over session bytes 0-15."""
    if len(key) != KEY_SIZE or len(session) < KEY_SIZE:
        raise LocalProtocolError("a combined key needs a 16-byte key and a 20-byte session")
    return bytes((k + s) & 0xFF for k, s in zip(key, session[:KEY_SIZE], strict=False))


def _aes_ecb(key: bytes, block: bytes, *, forward: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    worker = cipher.encryptor() if forward else cipher.decryptor()
    return worker.update(block) + worker.finalize()


def seal_block(key: bytes, block: bytes) -> bytes:
    """What a sender (phone, cloud) does: one block of AES-128 *decryption*."""
    return _aes_ecb(key, block, forward=False)


def open_block(key: bytes, block: bytes) -> bytes:
    """What the lock does: the forward cipher, undoing :func:`seal_block`."""
    return _aes_ecb(key, block, forward=True)


# --- cloud side (used by the simulated cloud) -----------------------------------------------


def _tagged(header: bytes, body12: bytes) -> bytes:
    return body12 + crc32(header, body12).to_bytes(4, "little")


def encode_command(
    combined: bytes,
    command: CommandType,
    *,
    argument: int,
    unix_time: int,
    batch_id: int,
    remaining: int,
    position: int = 0,
    total: int | None = None,
    extra: bytes = bytes(4),
) -> bytes:
    """One sealed command packet; ``position`` (from 0) and ``total`` of its batch are sealed
    in the body, so no packet can be taken out of its batch unnoticed. ``extra``: body bytes
    8-11 (zero but for quick-click commands)."""
    total = position + remaining + 1 if total is None else total
    if not 0 <= position < total <= 0xFF or remaining != total - 1 - position:
        raise LocalProtocolError("a packet's position, total and countdown disagree")
    header = bytes([0x00, 0x00, batch_id & 0xFF, remaining])
    body12 = bytes([command, argument]) + (unix_time & 0xFFFFFFFF).to_bytes(4, "little")
    if len(extra) != 4:
        raise LocalProtocolError("a command's extra field is 4 bytes")
    body12 += bytes([position, total]) + extra
    return header + seal_block(combined, _tagged(header, body12))


def cloud_command_string(
    lock_key: bytes,
    session: bytes,
    action: str,
    *,
    unix_time: int,
    batch_id: int,
    setup: bool,
    revoke_slots: Sequence[int] = (),
    add_quick_clicks: Sequence[tuple[str, int]] = (),
    remove_quick_clicks: Sequence[str] = (),
) -> str:
    """The ``data.commands`` the cloud answers /unlock/, /unshackle/ or /fwupdate/ with: setup
    if pending, then the revocations the lock has not heard of, the quick clicks to remove and
    to add ((code, uses)), then the action."""
    if action not in ("unlock", "unshackle", "fwupdate"):
        raise LocalProtocolError(f"no command string for action {action!r}")
    combined = combined_key(lock_key, session)
    nothing = bytes(4)
    plan = [(CommandType.SETUP, 0, nothing)] if setup else []
    plan.extend((CommandType.REMOVE_OFFLINE_KEY, slot, nothing) for slot in revoke_slots)
    plan.extend(
        (CommandType.REMOVE_QUICK_CLICK, 0, quick_click_field(code)) for code in remove_quick_clicks
    )
    plan.extend(
        (CommandType.ADD_QUICK_CLICK, uses, quick_click_field(code))
        for code, uses in add_quick_clicks
    )
    if action == "fwupdate":
        plan.append((CommandType.FIRMWARE_UPDATE, 0, nothing))
    else:
        argument = UNSHACKLE_ARGUMENT if action == "unshackle" else 0
        plan.append((CommandType.UNLOCK, argument, nothing))
    if len(plan) > 0xFF:
        raise LocalProtocolError(f"a batch holds at most 255 packets, not {len(plan)}")
    packets = [
        encode_command(
            combined,
            command,
            argument=argument,
            unix_time=unix_time,
            batch_id=batch_id,
            remaining=len(plan) - 1 - position,
            position=position,
            total=len(plan),
            extra=extra,
        )
        for position, (command, argument, extra) in enumerate(plan)
    ]
    return "+".join(packet.hex() for packet in packets)


def quick_click_field(code: str) -> bytes:
    """A quick-click code in a command body: [length, the presses as a 24-bit big-endian
    number] with ``1`` a long press and ``0`` a short one (invented layout)."""
    if len(code) not in QUICK_CLICK_LENGTHS or code.strip("01"):
        raise LocalProtocolError("a quick-click code is 3-24 characters of 0 and 1")
    return bytes([len(code)]) + int(code, 2).to_bytes(3, "big")


def quick_click_code(field: bytes) -> str | None:
    """The code in a command body's quick-click field, or None if it holds none."""
    length, bits = field[0], int.from_bytes(field[1:4], "big")
    if length not in QUICK_CLICK_LENGTHS or bits >= 1 << length:
        return None
    return format(bits, f"0{length}b")


def _offline_body(lock_key: bytes, slot: int) -> bytes:
    filler = hmac.digest(lock_key, b"noke offline body" + bytes([slot]), "sha256")[:9]
    return bytes([CommandType.UNLOCK, slot]) + bytes(4) + filler + b"\x00"


def offline_key_for(lock_key: bytes, slot: int) -> bytes:
    if not 0 <= slot < OFFLINE_SLOTS:
        raise LocalProtocolError(f"offline slot {slot} is outside 0-{OFFLINE_SLOTS - 1}")
    return hmac.digest(lock_key, b"noke offline key" + bytes([slot]), "sha256")[:KEY_SIZE]


def offline_grant_material(lock_key: bytes, slot: int) -> tuple[bytes, bytes]:
    """What the cloud's /keys/ hands out for a slot: (offline_key, unlock_command)."""
    header = bytes([0x00, OFFLINE_KEY_TYPE, slot, 0x00])
    return offline_key_for(lock_key, slot), header + _offline_body(lock_key, slot)


@dataclass(frozen=True, slots=True)
class LockRecord:
    """A server record opened by the cloud."""

    record_type: RecordType | int
    sequence: int
    event: int
    unix_time: int
    battery_mv: int
    counter: int
    detail: int = 0
    """Sealed byte 5: the offline key's slot, a quick click's uses left (see RecordEvent)."""


def open_server_packet(lock_key: bytes, session: bytes, packet: bytes) -> LockRecord:
    """The cloud's view of an uploaded 0x50 packet; refuses one not made by this lock+session."""
    packet = expect_length(packet, PACKET_SIZE, "server packet")
    if packet[0] != Destination.SERVER:
        raise RemoteProtocolError(f"not a server packet (destination 0x{packet[0]:02X})")
    header, body = packet[:4], open_block(combined_key(lock_key, session), packet[4:])
    if crc32(header, body[:12]) != u32le(body, 12):
        raise RemoteProtocolError("server packet does not authenticate for this lock and session")
    record_type: RecordType | int = (
        RecordType(packet[1]) if packet[1] in RecordType._value2member_map_ else packet[1]
    )
    return LockRecord(
        record_type=record_type,
        sequence=packet[2],
        event=body[0],
        unix_time=u32le(body, 2),
        battery_mv=u16le(body, 6),
        counter=u16le(body, 8),
        detail=body[1],
    )


# --- lock side (used by the simulated lock) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """An authenticated command, as the lock executes it."""

    command: CommandType
    argument: int
    unix_time: int
    batch_id: int
    remaining: int
    offline_slot: int | None = None
    quick_click: str | None = None
    """The code of an ADD_ / REMOVE_QUICK_CLICK command."""


def answer(result: ResultCode, *, batch_id: int = 0, remaining: int = 0) -> bytes:
    return bytes([Destination.APP, result, batch_id & 0xFF, remaining]) + bytes(16)


def shutdown_notice(lock_state: int, *, timed_out: bool) -> bytes:
    return bytes([Destination.APP, ResultCode.SHUTDOWN, lock_state, 0 if timed_out else 1]) + bytes(
        16
    )


def seal_server_packet(
    combined: bytes,
    record_type: RecordType,
    *,
    sequence: int,
    event: int,
    unix_time: int,
    battery_mv: int,
    counter: int,
    detail: int = 0,
) -> bytes:
    header = bytes([Destination.SERVER, record_type, sequence & 0xFF, 0x00])
    body12 = (
        bytes([event, detail & 0xFF])
        + (unix_time & 0xFFFFFFFF).to_bytes(4, "little")
        + battery_mv.to_bytes(2, "little")
        + (counter & 0xFFFF).to_bytes(2, "little")
        + bytes(2)
    )
    return header + seal_block(combined, _tagged(header, body12))


class LockSession:
    """One connection's worth of the lock's checks (:data:`REFUSAL_RULES`, in order)."""

    def __init__(
        self,
        lock_key: bytes,
        session: bytes,
        *,
        can_unshackle: bool,
        revoked_slots: Collection[int] = frozenset(),
    ) -> None:
        self.combined = combined_key(lock_key, session)
        self._lock_key = lock_key
        self._session = session
        self._can_unshackle = can_unshackle
        self._revoked = revoked_slots
        self._executed: set[bytes] = set()
        self._batch: tuple[int, int, int] | None = None  # (batch id, next position, total)

    def accept(self, packet: bytes, *, now: int) -> Command | ResultCode:
        """``now`` is the lock's own clock (Unix seconds)."""
        if len(packet) != PACKET_SIZE:
            return ResultCode.INVALID_DATA
        if packet[1] == OFFLINE_KEY_TYPE:
            return self._accept_offline(packet, now)
        header, body = packet[:4], open_block(self.combined, packet[4:])
        if crc32(header, body[:12]) != u32le(body, 12):
            return ResultCode.INVALID_KEY
        if packet in self._executed:
            return ResultCode.INVALID_PERMISSION
        batch_id, remaining = header[2], header[3]
        position, total = body[6], body[7]
        quick_click = None
        if body[0] in _QUICK_CLICK_COMMANDS:
            quick_click = quick_click_code(body[8:12])
            uses = body[1]
            adding = body[0] == CommandType.ADD_QUICK_CLICK
            if quick_click is None or (
                adding
                and not (1 <= uses <= QUICK_CLICK_MAX_LIMITED_USES or uses == QUICK_CLICK_UNLIMITED)
            ):
                return ResultCode.INVALID_DATA
        elif body[8:12] != bytes(4):
            return ResultCode.INVALID_DATA
        if remaining != total - 1 - position:
            return ResultCode.INVALID_DATA
        # A batch starts only at position 0 and runs in order to its sealed total: a companion
        # cannot send the UNLOCK without the REMOVE_OFFLINE_KEY packets before it.
        if position == 0 and (self._batch is None or self._batch[0] != batch_id):
            self._batch = (batch_id, 0, total)
        elif self._batch != (batch_id, position, total):
            return ResultCode.INVALID_DATA
        if body[0] not in CommandType._value2member_map_ or (
            body[0] == CommandType.UNLOCK
            and body[1] == UNSHACKLE_ARGUMENT
            and not self._can_unshackle
        ):
            return ResultCode.INVALID_COMMAND
        self._executed.add(bytes(packet))
        self._batch = (batch_id, position + 1, total) if remaining else None
        return Command(
            command=CommandType(body[0]),
            argument=body[1],
            unix_time=u32le(body, 2),
            batch_id=batch_id,
            remaining=remaining,
            quick_click=quick_click,
        )

    def _accept_offline(self, packet: bytes, now: int) -> Command | ResultCode:
        slot = packet[2]
        if slot >= OFFLINE_SLOTS:
            return ResultCode.INVALID_KEY
        key = combined_key(offline_key_for(self._lock_key, slot), self._session)
        body, expected = open_block(key, packet[4:]), _offline_body(self._lock_key, slot)
        if body[:2] != expected[:2] or body[6:15] != expected[6:15]:
            return ResultCode.INVALID_KEY
        stamped = u32le(body, 2)
        # iOS (and Android's scheduled variant) send the packet unstamped: time and checksum
        # left as the cloud made them, zero. Real locks open for it, so this one does.
        unstamped = stamped == 0 and body[15] == 0
        if not unstamped and body[15] != sum(body[:15]) & 0xFF:
            return ResultCode.INVALID_DATA
        if not unstamped and abs(stamped - now) > OFFLINE_CLOCK_WINDOW_S:
            return ResultCode.OUT_OF_SCHEDULE
        if slot in self._revoked or packet in self._executed:
            return ResultCode.INVALID_PERMISSION
        self._executed.add(bytes(packet))
        return Command(
            command=CommandType.UNLOCK,
            argument=0,
            unix_time=stamped or now,
            batch_id=packet[2],
            remaining=0,
            offline_slot=slot,
        )


def session_from_hex(text: str) -> bytes:
    """A session as the cloud receives it: 40 hex digits, either case (noke.md §3)."""
    return hex_bytes(text, SESSION_SIZE, "session")


# --- offline unlock, companion side (public algorithm: noke.md §6.2, vectors §14) ------------


def build_offline_unlock(
    offline_key: bytes, unlock_command: bytes, session: bytes, unix_time: int | None
) -> bytes:
    """The packet Nokē's Android library builds; ``unix_time=None`` is the scheduled variant."""
    if len(offline_key) != KEY_SIZE or len(unlock_command) != PACKET_SIZE:
        raise LocalProtocolError("an offline key is 16 bytes and an unlock command 20")
    header, body = unlock_command[:4], bytearray(unlock_command[4:])
    if unix_time is not None:
        body[2:6] = (unix_time & 0xFFFFFFFF).to_bytes(4, "little")
        body[15] = sum(body[:15]) & 0xFF
    return header + seal_block(combined_key(offline_key, session), bytes(body))
