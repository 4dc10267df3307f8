"""The simulated air: peripherals that advertise and accept one connection each, a latency model,
fault switches, and a loopback TCP server through which bleak's sim backend reaches them.

``Radio`` is the world's state, synchronous and free of I/O: who is in range, which links are
up, what a read/write does. ``RadioServer`` puts it on ``127.0.0.1`` and owns all timing.
Both an in-process test and a separate ``blelock-sim`` process go through the socket, so the
companion has one code path.

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
import dataclasses
import ipaddress
import json
import logging
import math
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from simulators.faults import LinkFaults

__all__ = [
    "ATT_READ_NOT_PERMITTED",
    "ATT_REQUEST_NOT_SUPPORTED",
    "ATT_WRITE_NOT_PERMITTED",
    "DEFAULT_ATT_MTU",
    "PROPERTY_NAMES",
    "Advertisement",
    "CharacteristicSpec",
    "ConnectionRefused",
    "GattRefused",
    "LatencyModel",
    "Link",
    "LinkDropped",
    "LinkStats",
    "NotInRange",
    "Peripheral",
    "PeripheralBusy",
    "Radio",
    "RadioError",
    "RadioServer",
    "ServiceSpec",
    "WritePacer",
    "decode_advertisement",
    "decode_services",
    "encode_advertisement",
    "encode_services",
    "normalize_uuid",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

ATT_READ_NOT_PERMITTED = 0x02
ATT_WRITE_NOT_PERMITTED = 0x03
ATT_REQUEST_NOT_SUPPORTED = 0x06
ATT_INVALID_ATTRIBUTE_VALUE_LENGTH = 0x0D

PROPERTY_NAMES = frozenset(
    {
        "broadcast", "read", "write-without-response", "write", "notify", "indicate",
        "authenticated-signed-writes", "extended-properties", "reliable-write",
        "writable-auxiliaries", "encrypt-read", "encrypt-write", "encrypt-authenticated-read",
        "encrypt-authenticated-write", "authorize",
    }
)  # fmt: skip
"""bleak's characteristic property names (``bleak.assigned_numbers.CharacteristicPropertyName``)."""

_BLUETOOTH_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def normalize_uuid(value: str) -> str:
    """Lowercase 128-bit form; 16- and 32-bit short forms are expanded on the Bluetooth base."""
    text = value.strip().lower()
    if len(text) == 4:
        text = f"0000{text}{_BLUETOOTH_BASE_SUFFIX}"
    elif len(text) == 8:
        text = f"{text}{_BLUETOOTH_BASE_SUFFIX}"
    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        raise ValueError(f"{value!r} is not a Bluetooth UUID") from None


# Peripherals may declare short or upper-case UUIDs: the specs normalize on construction, so
# every lookup in the radio and in bleak compares like with like.


@dataclass(frozen=True)
class Advertisement:
    local_name: str | None
    manufacturer_data: dict[int, bytes]
    service_uuids: tuple[str, ...]
    service_data: dict[str, bytes]
    rssi: int
    tx_power: int | None = None

    def __post_init__(self) -> None:
        uuids = tuple(normalize_uuid(u) for u in self.service_uuids)
        object.__setattr__(self, "service_uuids", uuids)
        data = {normalize_uuid(k): bytes(v) for k, v in self.service_data.items()}
        object.__setattr__(self, "service_data", data)


@dataclass(frozen=True)
class CharacteristicSpec:
    uuid: str
    properties: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "uuid", normalize_uuid(self.uuid))
        if unknown := set(self.properties) - PROPERTY_NAMES:
            raise ValueError(f"characteristic {self.uuid}: unknown properties {sorted(unknown)}")


@dataclass(frozen=True)
class ServiceSpec:
    uuid: str
    characteristics: tuple[CharacteristicSpec, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "uuid", normalize_uuid(self.uuid))


class GattRefused(Exception):
    """Raised by a peripheral to refuse a read, write or subscription with an ATT error code."""

    def __init__(self, att_error: int, message: str) -> None:
        if not 0 < att_error <= 0xFF:
            raise ValueError(f"ATT error codes are 1..255, not {att_error}")
        super().__init__(message)
        self.att_error = att_error
        self.message = message


class Peripheral(Protocol):
    @property
    def address(self) -> str: ...

    def advertisement(self) -> Advertisement | None: ...

    def services(self) -> tuple[ServiceSpec, ...]: ...

    def on_connect(self) -> None: ...

    def on_disconnect(self) -> None: ...

    def on_read(self, char_uuid: str) -> bytes: ...

    def on_write(self, char_uuid: str, data: bytes) -> list[tuple[str, bytes]]: ...

    def on_subscribe(self, char_uuid: str, enabled: bool) -> None: ...


DEFAULT_ATT_MTU = 23
"""What a peripheral that declares no ``max_att_mtu`` keeps (no MTU exchange)."""
_LL_OVERHEAD_BYTES = 10
"""A 1M PHY LL data PDU around its payload: preamble 1, access address 4, header 2, CRC 3
(Core spec Vol 6 Part B §2.1; no MIC: the links here are unencrypted)."""
_L2CAP_ATT_HEADER = 4 + 3
"""L2CAP basic header (length, channel) + ATT Write Command header (opcode, handle)."""


@dataclass(frozen=True)
class LatencyModel:
    advertising_interval_s: float = 0.1
    """A scanner hears each advertiser this long after it starts scanning, then every interval."""
    connect_s: float = 0.1
    """Connection setup + service discovery."""
    connection_interval_s: float = 0.03
    """One ATT request/response (read, write with response, CCCD write, MTU exchange)."""
    write_round_trip_s: float = 0.03
    """A write without response → its answering notifications."""
    packets_per_interval: int = 6
    """The most LL data PDUs the central sends in one connection event: its controller's
    transmit buffers (typical stacks: 4-7). Airtime may allow fewer (:meth:`pdu_airtime_s`).
    Not a latency: :meth:`scaled` leaves it alone."""
    att_mtu: int = 517
    """The ATT MTU the central asks for (BlueZ asks 517, nrfutil 247); the link gets the lower
    of it and the peripheral's ``max_att_mtu``. bleak reports it as ``mtu_size``."""
    data_length: int = 27
    """LL payload octets per PDU after the data length update (27 without one, 251 with the
    LE Data Length Extension both sides support)."""
    phy_byte_s: float = 8e-6
    """Air time of one byte: 8 µs on the 1M PHY (4 µs on 2M)."""
    ifs_s: float = 150e-6
    """T_IFS, between a PDU and its acknowledgement (Core spec Vol 6 Part B §4.1.1). A test
    model with intervals shorter than real airtime sets this and ``phy_byte_s`` to 0, so the
    buffers alone bind."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            if not getattr(self, item.name) >= 0:
                raise ValueError(f"LatencyModel.{item.name} must be ≥ 0")
        if self.advertising_interval_s <= 0:
            raise ValueError("LatencyModel.advertising_interval_s must be > 0")
        # bool is an int: reject it, it would read as "1 packet" by accident.
        per_interval = self.packets_per_interval
        if not isinstance(per_interval, int) or isinstance(per_interval, bool) or per_interval < 1:
            raise ValueError("LatencyModel.packets_per_interval must be a whole number ≥ 1")
        if not 23 <= self.att_mtu <= 517:
            raise ValueError("LatencyModel.att_mtu must be 23-517")
        if not 27 <= self.data_length <= 251:
            raise ValueError("LatencyModel.data_length must be 27-251")

    def scaled(self, factor: float) -> LatencyModel:
        """Every duration times ``factor``; the packets per interval stay (a slow link has longer
        intervals, not smaller ones), so throughput scales by 1 / ``factor`` too."""
        return dataclasses.replace(
            self,
            advertising_interval_s=self.advertising_interval_s * factor,
            connect_s=self.connect_s * factor,
            connection_interval_s=self.connection_interval_s * factor,
            write_round_trip_s=self.write_round_trip_s * factor,
        )

    def pdu_airtime_s(self, payload: int) -> float:
        """One LL data PDU of ``payload`` octets and its acknowledgement: the PDU, T_IFS, the
        peripheral's empty PDU, T_IFS (1M PHY: 2.47 ms at 251 octets, 0.68 ms at 27)."""
        return (
            (_LL_OVERHEAD_BYTES + payload) * self.phy_byte_s
            + self.ifs_s
            + _LL_OVERHEAD_BYTES * self.phy_byte_s
            + self.ifs_s
        )

    def write_pdus(self, payload: int) -> list[int]:
        """The LL PDU payloads one ATT Write Command of ``payload`` bytes goes in."""
        left, sizes = payload + _L2CAP_ATT_HEADER, []
        while left > 0:
            sizes.append(min(left, self.data_length))
            left -= sizes[-1]
        return sizes


class WritePacer:
    """One link's flow control for writes without response, free of I/O and of any clock:
    :meth:`admit` says when a write may go on air, given when it was offered.

    A connection event opens with the first write offered to an idle link (one whose last
    event has ended) and carries LL PDUs while both hold: at most ``packets_per_interval`` of
    them (the central's buffers) and their airtime, acks included, within
    ``connection_interval_s``. A write is L2CAP-fragmented into ``data_length`` PDUs
    (:meth:`LatencyModel.write_pdus`); the PDUs that do not fit wait for the next event, which
    starts exactly one interval later, and the write goes when its last PDU does. So at MTU 23
    the buffers bind (6 x 20 bytes per event) and at MTU 247 / data length 251 the airtime
    does (a 251-octet PDU takes 2.47 ms). Opening events at the first write rather than on a
    fixed grid is a simplification in the client's favour: an idle link never makes a write
    wait. A zero interval means no pacing."""

    def __init__(self) -> None:
        self._start = -math.inf  # when the current event opened
        self._sent = 0  # PDUs it carries so far
        self._air = 0.0  # their airtime

    def admit(self, now: float, model: LatencyModel, payload: int = 20) -> float:
        """When the ``payload``-byte write offered at ``now`` goes on air (never before
        ``now``); counts its PDUs. The model is read on every call, so a slow factor set
        mid-link applies at once."""
        interval = model.connection_interval_s
        if interval <= 0:
            return now
        if now >= self._start + interval:
            self._start, self._sent, self._air = now, 0, 0.0
        for size in model.write_pdus(payload):
            air = model.pdu_airtime_s(size)
            full = self._sent >= model.packets_per_interval or self._air + air > interval
            if full and self._sent:
                self._start += interval
                self._sent, self._air = 0, 0.0
            self._sent += 1
            self._air += air
        # An event may open after ``now`` when the caller offers writes faster than the
        # waits it was given (a test's sleep that returns at once): such a write waits too.
        return max(now, self._start)

    @staticmethod
    def ceiling(model: LatencyModel, payload: int, writes: int = 600) -> float:
        """Bytes/s of ``payload``-byte writes offered back to back: the link's raw ceiling."""
        pacer = WritePacer()
        last = 0.0
        for _ in range(writes):
            last = pacer.admit(0.0, model, payload)
        return writes * payload / (last + model.connection_interval_s) if last > 0 else math.inf


class RadioError(Exception):
    """Why the air refused an operation; ``code`` is its name on the wire."""

    code: ClassVar[str] = "internal"


class NotInRange(RadioError):
    code = "not-found"


class PeripheralBusy(RadioError):
    code = "busy"


class ConnectionRefused(RadioError):
    code = "refused"


class LinkDropped(RadioError):
    code = "disconnected"


class _NotConnected(RadioError):
    code = "not-connected"


@dataclass
class LinkStats:
    connections: int = 0
    """Connections established."""
    writes_delivered: int = 0
    """Characteristic writes handed to ``on_write`` (CCCD writes are not counted)."""
    links_dropped: int = 0
    """Links torn down by the drop fault."""


@dataclass
class _Slot:
    peripheral: Peripheral
    faults: LinkFaults
    stats: LinkStats
    link: Link | None = None


class Link:
    """One connection between a central and a peripheral. Closing it is idempotent and calls
    ``on_disconnect`` exactly once."""

    def __init__(self, slot: _Slot, radio: Radio, name: str | None) -> None:
        self._slot = slot
        self._radio = radio
        self.name = name
        peripheral_mtu = getattr(slot.peripheral, "max_att_mtu", DEFAULT_ATT_MTU)
        self.mtu = min(radio.latency_of(_address(slot.peripheral)).att_mtu, peripheral_mtu)
        """The ATT MTU after the exchange (23 when either side keeps the default)."""
        self.services = slot.peripheral.services()
        self._characteristics = {
            char.uuid: char for service in self.services for char in service.characteristics
        }
        self._subscribed: set[str] = set()
        self.writes = 0
        self.is_open = True

    @property
    def address(self) -> str:
        return _address(self._slot.peripheral)

    @property
    def latency(self) -> LatencyModel:
        return self._radio.latency_of(self.address)

    def is_subscribed(self, char_uuid: str) -> bool:
        return char_uuid in self._subscribed

    def read(self, char_uuid: str) -> bytes:
        char = self._characteristic(char_uuid, ("read",), ATT_READ_NOT_PERMITTED)
        return bytes(self._slot.peripheral.on_read(char.uuid))

    def write(self, char_uuid: str, data: bytes, *, response: bool) -> list[tuple[str, bytes]]:
        """Deliver a write; the notifications it causes. A write without response that the
        peripheral refuses yields none: the ATT command has no reply to carry the error."""
        self._ensure_open()
        if self._slot.faults.spend_drop(self.writes):
            self._slot.stats.links_dropped += 1
            self.close()
            raise LinkDropped(f"link lost after {self.writes} write(s) (drop fault)")
        kind = "write" if response else "write-without-response"
        char = self._characteristic(char_uuid, (kind,), ATT_WRITE_NOT_PERMITTED)
        if len(data) > self.mtu - 3:
            raise GattRefused(
                ATT_INVALID_ATTRIBUTE_VALUE_LENGTH,
                f"{len(data)}-byte write on a link with ATT MTU {self.mtu}",
            )
        self.writes += 1
        self._slot.stats.writes_delivered += 1
        try:
            notes = self._slot.peripheral.on_write(char.uuid, bytes(data))
        except GattRefused as refusal:
            if response:
                raise
            _log.debug("%s ignored a write command: %s", self.address, refusal)
            return []
        return [(normalize_uuid(uuid), bytes(value)) for uuid, value in notes]

    def take_busy_s(self) -> float:
        """Seconds the peripheral is busy after the last write (a bootloader erasing or
        writing flash: ``take_busy_s()`` on the peripheral, if it has one): its answering
        notifications wait that long."""
        take = getattr(self._slot.peripheral, "take_busy_s", None)
        return float(take()) if callable(take) else 0.0

    def subscribe(self, char_uuid: str, enabled: bool) -> None:
        char = self._characteristic(char_uuid, ("notify", "indicate"), ATT_REQUEST_NOT_SUPPORTED)
        self._slot.peripheral.on_subscribe(char.uuid, enabled)
        if enabled:
            self._subscribed.add(char.uuid)
        else:
            self._subscribed.discard(char.uuid)

    def close(self) -> None:
        if not self.is_open:
            return
        self.is_open = False
        self._subscribed.clear()
        if self._slot.link is self:
            self._slot.link = None
        try:
            self._slot.peripheral.on_disconnect()
        except Exception:
            _log.exception("%s: on_disconnect raised; the link is down anyway", self.address)

    def _ensure_open(self) -> None:
        if not self.is_open:
            raise LinkDropped("the link is down")

    def _characteristic(
        self, char_uuid: str, any_of: tuple[str, ...], att: int
    ) -> CharacteristicSpec:
        self._ensure_open()
        char = self._characteristics.get(normalize_uuid(char_uuid))
        if char is None:
            raise GattRefused(ATT_REQUEST_NOT_SUPPORTED, f"no characteristic {char_uuid}")
        if not set(any_of) & set(char.properties):
            raise GattRefused(att, f"{char.uuid} does not support {' or '.join(any_of)}")
        return char


def _address(peripheral: Peripheral) -> str:
    return peripheral.address.upper()


class Radio:
    """The peripherals on the air and their links. A connected peripheral stops advertising and
    refuses a second central ("busy"), as single-connection locks do."""

    def __init__(self, latency: LatencyModel | None = None) -> None:
        self.latency = latency if latency is not None else LatencyModel()
        self._slots: dict[str, _Slot] = {}
        self.modelled_s = 0.0
        """Seconds the latency model has made links wait (connection set-up, ATT round trips,
        write pacing, answers' delay): a benchmark's floor for the visits it ran, one at a time."""

    def add(self, peripheral: Peripheral, faults: LinkFaults | None = None) -> LinkFaults:
        """Put ``peripheral`` on the air; returns its (live) fault switches."""
        address = _address(peripheral)
        if address in self._slots:
            raise ValueError(f"{address} is already on the radio")
        uuids = [c.uuid for s in peripheral.services() for c in s.characteristics]
        if len(uuids) != len(set(uuids)):
            raise ValueError(f"{address}: characteristic UUIDs must be unique per peripheral")
        slot = _Slot(peripheral, faults if faults is not None else LinkFaults(), LinkStats())
        self._slots[address] = slot
        return slot.faults

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(self._slots)

    def peripheral(self, address: str) -> Peripheral:
        return self._slot(address).peripheral

    def faults_of(self, address: str) -> LinkFaults:
        return self._slot(address).faults

    def stats_of(self, address: str) -> LinkStats:
        return self._slot(address).stats

    @property
    def totals(self) -> LinkStats:
        """Counters summed over every peripheral (a fresh snapshot)."""
        total = LinkStats()
        for slot in self._slots.values():
            total.connections += slot.stats.connections
            total.writes_delivered += slot.stats.writes_delivered
            total.links_dropped += slot.stats.links_dropped
        return total

    def latency_of(self, address: str) -> LatencyModel:
        slot = self._slots.get(address.upper())
        return self.latency if slot is None else self.latency.scaled(slot.faults.slow_factor)

    def is_connected(self, address: str) -> bool:
        return self._slot(address).link is not None

    def advertisement(self, address: str) -> Advertisement | None:
        slot = self._slot(address)
        if slot.faults.out_of_range or slot.link is not None:
            return None
        return slot.peripheral.advertisement()

    def connect(self, address: str) -> Link:
        slot = self._slots.get(address.upper())
        if slot is None:
            raise NotInRange("no such peripheral on the air")
        if slot.link is not None:
            raise PeripheralBusy("already in use by another connection")
        advert = self.advertisement(address)
        if advert is None:
            raise NotInRange("out of range or not advertising")
        if slot.faults.spend_refusal():
            raise ConnectionRefused("refuse fault")
        link = Link(slot, self, advert.local_name)
        slot.link = link
        try:
            slot.peripheral.on_connect()
        except BaseException:
            slot.link = None
            raise
        slot.stats.connections += 1
        return link

    def _slot(self, address: str) -> _Slot:
        try:
            return self._slots[address.upper()]
        except KeyError:
            raise KeyError(f"no peripheral {address.upper()} on this radio") from None


# --- wire encoding, shared with simulators.bleak_backend -----------------------------------------


def encode_services(services: tuple[ServiceSpec, ...]) -> list[dict[str, Any]]:
    return [
        {
            "uuid": service.uuid,
            "characteristics": [
                {"uuid": char.uuid, "properties": list(char.properties)}
                for char in service.characteristics
            ],
        }
        for service in services
    ]


def decode_services(data: Any) -> tuple[ServiceSpec, ...]:
    """Inverse of :func:`encode_services`; ``ValueError`` on anything malformed."""
    try:
        return tuple(
            ServiceSpec(
                uuid=_text(service["uuid"]),
                characteristics=tuple(
                    CharacteristicSpec(
                        _text(char["uuid"]), tuple(_text(p) for p in char["properties"])
                    )
                    for char in service["characteristics"]
                ),
            )
            for service in data
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed services: {exc!r}") from None


def encode_advertisement(address: str, advert: Advertisement) -> dict[str, Any]:
    return {
        "event": "advert",
        "address": address,
        "local_name": advert.local_name,
        "manufacturer_data": {str(k): v.hex() for k, v in advert.manufacturer_data.items()},
        "service_uuids": list(advert.service_uuids),
        "service_data": {k: v.hex() for k, v in advert.service_data.items()},
        "rssi": advert.rssi,
        "tx_power": advert.tx_power,
    }


def decode_advertisement(message: dict[str, Any]) -> tuple[str, Advertisement]:
    """Inverse of :func:`encode_advertisement`; ``ValueError`` on anything malformed."""
    try:
        name = message["local_name"]
        tx_power = message["tx_power"]
        advert = Advertisement(
            local_name=None if name is None else _text(name),
            manufacturer_data={
                int(k): bytes.fromhex(_text(v)) for k, v in message["manufacturer_data"].items()
            },
            service_uuids=tuple(_text(u) for u in message["service_uuids"]),
            service_data={
                _text(k): bytes.fromhex(_text(v)) for k, v in message["service_data"].items()
            },
            rssi=int(message["rssi"]),
            tx_power=None if tx_power is None else int(tx_power),
        )
        return _text(message["address"]), advert
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed advert: {exc!r}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


# --- the server ----------------------------------------------------------------------------------


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
        with contextlib.suppress(ConnectionError):
            while True:
                now = loop.time()
                for address in self._radio.addresses:
                    interval = self._radio.latency_of(address).advertising_interval_s
                    if due.setdefault(address, now + interval) > now:
                        continue
                    due[address] = now + interval
                    if (advert := self._safe_advertisement(address)) is not None:
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
