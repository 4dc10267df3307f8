"""A simulated Nokē padlock: the lock side of :mod:`blelock.vendors.noke.protocol` on the
simulated radio.

Honest in the ways a real lock is: a fresh random session on every connection; it executes only
packets the cloud sealed for *this* lock's key and *this* session, once each, in batch order, and
refuses everything else with the protocol's result code (``REFUSAL_RULES``). It notifies exactly
20 bytes, keeps count of what it did, and remembers every server record it gave so a test can
check that the companion delivered them all.

Like the vendor's locks it ends every batch with a SHUTDOWN packet (``0x51 0x64``) once the last
answer is out, after any records it sends "late" (the ``trailing_records`` switch). Quick clicks
reach it only inside an online command string; :meth:`SimNokeLock.press_sequence` is someone
entering a code on the shackle or button: it opens for a code it holds with uses left, counts
the use down, and keeps a record that goes out as a 0x50 packet on the next connection.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from blelock.vendors.noke import protocol as noke
from simulators.radio import Advertisement, CharacteristicSpec, GattRefused, ServiceSpec

__all__ = ["LockHabits", "MechanicalFaults", "SimNokeLock"]

_ATT_REQUEST_NOT_SUPPORTED = 0x06
_ATT_WRITE_NOT_PERMITTED = 0x03

# Advertised flags bits 7..5 for HD locks (Android's 3-bit state, noke.md §1.3).
_FLAGS_LOCKED = 3 << 5
_FLAGS_UNLOCKED = 0
_FLAGS_UNSHACKLED = 2 << 5


@dataclass
class MechanicalFaults:
    """Switches for what the motor does; the protocol side stays honest regardless."""

    jam_unlock: int = 0
    """Fail the next N unlocks / unshackles with FAILED_TO_UNLOCK / FAILED_TO_UNSHACKLE."""


@dataclass
class LockHabits:
    """How the lock talks after a batch; switches a test flips to check the companion."""

    trailing_records: int = 0
    """Server records (RELOCKED) sent after the last answer of every batch, before SHUTDOWN."""
    sends_shutdown: bool = True
    """End every batch with a SHUTDOWN packet, as the vendor's locks do."""
    short_notifications: int = 0
    """Notify a 4-byte packet before the next N answers (iOS ignores them)."""


@dataclass(frozen=True)
class _StoredEvent:
    """Something the lock did with nobody connected: reported on the next connection."""

    record_type: noke.RecordType
    event: noke.RecordEvent
    detail: int
    unix_time: int
    counter: int


DEVICE_INFORMATION_UUID = "0000180a-0000-1000-8000-00805f9b34fb"
FIRMWARE_REVISION_UUID = "00002a26-0000-1000-8000-00805f9b34fb"
DEVICE_INFORMATION_FROM = (2, 11)
"""The first firmware with the Device Information service (a model choice of the simulator)."""


@dataclass
class SimNokeLock:
    mac: str
    key: bytes
    hardware: str = "4I"
    firmware: tuple[int, int] = (3, 14)
    battery_mv: int = 2950
    rssi: int = -60
    mechanical: MechanicalFaults = field(default_factory=MechanicalFaults)
    habits: LockHabits = field(default_factory=LockHabits)
    clock: Callable[[], int] = field(default=lambda: int(time.time()))
    clock_drift_s: int = 0
    """How far the lock's own clock is off (a fault switch: offline packets are checked against
    the lock's clock, not the phone's)."""

    connections: int = 0
    setups: int = 0
    unlocks: int = 0
    unshackles: int = 0
    offline_unlocks: int = 0
    revoked_slots: set[int] = field(default_factory=set)
    """Offline key slots revoked by an online sync; the cloud may know of more."""
    refusals: collections.Counter[noke.ResultCode] = field(default_factory=collections.Counter)
    quick_clicks: dict[str, int] = field(default_factory=dict)
    """Codes the lock holds → uses left (255: unlimited), as online syncs left them."""
    quick_click_unlocks: int = 0
    presses_refused: int = 0
    stored_events: list[_StoredEvent] = field(default_factory=list)
    server_records: list[tuple[str, str]] = field(default_factory=list)
    """(session hex, packet hex) of every 0x50 packet this lock sent, in order."""
    state: str = "locked"
    in_dfu_mode: bool = False
    """After a firmware-update command the lock is its bootloader: silent as a lock."""
    on_firmware_update: Callable[[], None] | None = None
    """Tells the bootloader to take over (the world wires it to its SimDfuTarget)."""

    _session: bytes | None = None
    _checks: noke.LockSession | None = None
    _record_sequence: int = 0

    def press_sequence(self, code: str) -> bool:
        """Someone enters ``code`` (``1`` long press, ``0`` short) on the lock: True if it
        opened. A limited code with no use left, or one the lock does not hold, does nothing."""
        uses = self.quick_clicks.get(code, 0)
        if self.in_dfu_mode or uses == 0:
            self.presses_refused += 1
            return False
        if uses != noke.QUICK_CLICK_UNLIMITED:
            uses -= 1
            self.quick_clicks[code] = uses
        self.quick_click_unlocks += 1
        self.state = "unlocked"
        self.stored_events.append(
            _StoredEvent(
                noke.RecordType.LOG,
                noke.RecordEvent.QUICK_CLICK_UNLOCKED,
                detail=uses,
                unix_time=self.clock() + self.clock_drift_s,
                counter=self._opened(),
            )
        )
        if self._session is None:
            self.state = "locked"  # nobody is connected: the shackle is closed again after use
        return True

    def _opened(self) -> int:
        return self.unlocks + self.unshackles + self.offline_unlocks + self.quick_click_unlocks

    @property
    def address(self) -> str:
        return self.mac

    @property
    def local_name(self) -> str:
        return f"NOKE{self.hardware}_{self.mac.replace(':', '')}"

    @property
    def session(self) -> bytes | None:
        return self._session

    def boot_firmware(self, version: int) -> None:
        """The bootloader installed ``version`` (major << 16 | minor) and restarted the lock."""
        self.firmware = (version >> 16, version & 0xFFFF)
        self.in_dfu_mode = False

    def advertisement(self) -> Advertisement | None:
        if self.in_dfu_mode:
            return None
        flags = {
            "locked": _FLAGS_LOCKED,
            "unlocked": _FLAGS_UNLOCKED,
            "unshackled": _FLAGS_UNSHACKLED,
        }[self.state]
        major, minor = self.firmware
        return Advertisement(
            local_name=self.local_name,
            manufacturer_data={noke.COMPANY_ID: bytes([flags, major, minor, 0x00, 0x01])},
            service_uuids=(noke.SERVICE_UUID,),
            service_data={},
            rssi=self.rssi,
        )

    def services(self) -> tuple[ServiceSpec, ...]:
        # The GATT table changes with the firmware, as real firmware releases change it: from
        # 2.11 on the lock also has the Device Information service, declared first, so every
        # Nokē handle moves (what a phone's or a Pi's stale cache of it then gets wrong).
        info = (
            (
                ServiceSpec(
                    DEVICE_INFORMATION_UUID,
                    (CharacteristicSpec(FIRMWARE_REVISION_UUID, ("read",)),),
                ),
            )
            if self.firmware >= DEVICE_INFORMATION_FROM
            else ()
        )
        return (
            *info,
            ServiceSpec(
                uuid=noke.SERVICE_UUID,
                characteristics=(
                    CharacteristicSpec(noke.WRITE_UUID, ("write", "write-without-response")),
                    CharacteristicSpec(noke.NOTIFY_UUID, ("notify",)),
                    CharacteristicSpec(noke.SESSION_UUID, ("read",)),
                ),
            ),
        )

    def on_connect(self) -> None:
        self.connections += 1
        # Bytes 0-1 and 4-19 are not public; random per connection is what the lock needs.
        noise = os.urandom(18)
        self._session = noise[:2] + self.battery_mv.to_bytes(2, "little") + noise[2:]
        self._checks = noke.LockSession(
            self.key,
            self._session,
            can_unshackle="I" in self.hardware,
            revoked_slots=self.revoked_slots,
        )

    def on_disconnect(self) -> None:
        self._session = None
        self._checks = None
        if self.state != "locked":
            self.state = "locked"  # the shackle re-engages when the visit ends

    def on_subscribe(self, char_uuid: str, enabled: bool) -> None:
        if char_uuid != noke.NOTIFY_UUID:
            raise GattRefused(_ATT_REQUEST_NOT_SUPPORTED, f"{char_uuid} does not notify")

    def on_read(self, char_uuid: str) -> bytes:
        if char_uuid == FIRMWARE_REVISION_UUID and self.firmware >= DEVICE_INFORMATION_FROM:
            return "{}.{}".format(*self.firmware).encode()
        if char_uuid != noke.SESSION_UUID or self._session is None:
            raise GattRefused(_ATT_REQUEST_NOT_SUPPORTED, f"{char_uuid} is not readable")
        return self._session

    def on_write(self, char_uuid: str, data: bytes) -> list[tuple[str, bytes]]:
        if char_uuid != noke.WRITE_UUID or self._checks is None or self._session is None:
            raise GattRefused(_ATT_WRITE_NOT_PERMITTED, f"{char_uuid} is not writable")
        verdict = self._checks.accept(bytes(data), now=self.clock() + self.clock_drift_s)
        if isinstance(verdict, noke.ResultCode):
            self.refusals[verdict] += 1
            return [(noke.NOTIFY_UUID, noke.answer(verdict))]
        records = [self._stored_record(stored) for stored in self.stored_events]
        self.stored_events.clear()
        more, result = self._execute(verdict)
        records += more
        notes = [(noke.NOTIFY_UUID, packet) for packet in records]
        if self.habits.short_notifications:
            self.habits.short_notifications -= 1
            notes.append((noke.NOTIFY_UUID, bytes([noke.Destination.APP, 0x60, 0, 0])))
        answer = noke.answer(result, batch_id=verdict.batch_id, remaining=verdict.remaining)
        notes.append((noke.NOTIFY_UUID, answer))
        if verdict.remaining == 0 and result is noke.ResultCode.SUCCESS and not self.in_dfu_mode:
            notes += self._batch_end()
        return notes

    def _batch_end(self) -> list[tuple[str, bytes]]:
        """What follows the last answer: late records, then SHUTDOWN (lock state, no timeout)."""
        notes = [
            (
                noke.NOTIFY_UUID,
                self._record(
                    noke.RecordType.LOG, event=noke.RecordEvent.RELOCKED, counter=self._opened()
                ),
            )
            for _ in range(self.habits.trailing_records)
        ]
        if self.habits.sends_shutdown:
            state = _FLAGS_LOCKED >> 5 if self.state == "locked" else 0
            notes.append((noke.NOTIFY_UUID, noke.shutdown_notice(state, timed_out=False)))
        return notes

    def _stored_record(self, stored: _StoredEvent) -> bytes:
        return self._record(
            stored.record_type,
            event=stored.event,
            counter=stored.counter,
            detail=stored.detail,
            unix_time=stored.unix_time,
        )

    def _execute(self, command: noke.Command) -> tuple[list[bytes], noke.ResultCode]:
        """Act on an authenticated command: the server records it produces, and the result."""
        if command.command is noke.CommandType.SETUP:
            self.setups += 1
            record = self._record(noke.RecordType.KEY, event=command.command, counter=self.setups)
            return [record], noke.ResultCode.SUCCESS
        if command.command is noke.CommandType.FIRMWARE_UPDATE:
            self.in_dfu_mode = True
            if self.on_firmware_update is not None:
                self.on_firmware_update()
            return [], noke.ResultCode.SUCCESS
        if command.command is noke.CommandType.REMOVE_OFFLINE_KEY:
            self.revoked_slots.add(command.argument)
            return [], noke.ResultCode.SUCCESS
        if command.command is noke.CommandType.REMOVE_QUICK_CLICK:
            assert command.quick_click is not None  # LockSession checked the field
            self.quick_clicks.pop(command.quick_click, None)
            return [], noke.ResultCode.SUCCESS
        if command.command is noke.CommandType.ADD_QUICK_CLICK:
            assert command.quick_click is not None
            if command.quick_click in self.quick_clicks:
                # Sent again until the cloud saw it arrive: the uses already spent stay spent.
                return [], noke.ResultCode.SUCCESS
            if len(self.quick_clicks) >= noke.QUICK_CLICKS_PER_LOCK:
                return [], noke.ResultCode.INVALID_DATA
            self.quick_clicks[command.quick_click] = command.argument
            return [], noke.ResultCode.SUCCESS
        if command.command is not noke.CommandType.UNLOCK:
            return [], noke.ResultCode.SUCCESS
        unshackle = command.argument == noke.UNSHACKLE_ARGUMENT
        if self.mechanical.jam_unlock:
            self.mechanical.jam_unlock -= 1
            failure = (
                noke.ResultCode.FAILED_TO_UNSHACKLE
                if unshackle
                else noke.ResultCode.FAILED_TO_UNLOCK
            )
            record = self._record(noke.RecordType.LOG, event=failure, counter=self.unlocks)
            return [record], failure
        if unshackle:
            self.unshackles += 1
            self.state = "unshackled"
        elif command.offline_slot is not None:
            self.offline_unlocks += 1
            self.state = "unlocked"
            record = self._record(
                noke.RecordType.UNLOCK,
                event=noke.RecordEvent.OFFLINE_UNLOCKED,
                counter=self._opened(),
                detail=command.offline_slot,
            )
            return [record], noke.ResultCode.SUCCESS
        else:
            self.unlocks += 1
            self.state = "unlocked"
        record = self._record(
            noke.RecordType.UNLOCK, event=command.argument, counter=self._opened()
        )
        return [record], noke.ResultCode.SUCCESS

    def _record(
        self,
        record_type: noke.RecordType,
        *,
        event: int,
        counter: int,
        detail: int = 0,
        unix_time: int | None = None,
    ) -> bytes:
        assert self._checks is not None and self._session is not None
        self._record_sequence = (self._record_sequence + 1) & 0xFF
        packet = noke.seal_server_packet(
            self._checks.combined,
            record_type,
            sequence=self._record_sequence,
            event=event,
            unix_time=self.clock() if unix_time is None else unix_time,
            battery_mv=self.battery_mv,
            counter=counter,
            detail=detail,
        )
        self.server_records.append((self._session.hex(), packet.hex()))
        return packet
