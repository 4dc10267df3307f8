"""The simulated air: peripherals that advertise and accept one connection each, a latency model,
fault switches.

``Radio`` is the world's state, synchronous and free of I/O: who is in range, which links are
up, what a read/write does. :class:`simulators.radio_server.RadioServer` puts it on
``127.0.0.1`` and owns all timing; :mod:`simulators.radio_wire` is the line protocol's
encoding, shared with bleak's sim backend. Both an in-process test and a separate
``blelock-sim`` process go through the socket, so the companion has one code path.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid as uuidlib
from dataclasses import dataclass
from typing import ClassVar, Protocol

from simulators.faults import LinkFaults
from simulators.round_trip import WaitLog

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
    "ServiceSpec",
    "WritePacer",
    "normalize_uuid",
]

_log = logging.getLogger(__name__)

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
        self.waits = WaitLog()
        """Each of those waits as a window in time, with each scan's wait for each lock's first
        advert (and, in a world, its clouds' round trips): see :class:`WaitLog`."""

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
