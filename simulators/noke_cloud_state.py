"""The world the simulated Nokē cloud knows (its locks, their offline keys and quick clicks,
the command batches it issued, the records it received) and what an uploaded record teaches it.

Activity is built from the records received: each authentic record uploaded for the first time
becomes one :class:`ActivityEntry` (the vendor doc's shape: ``lock_mac``, ``action``,
``recorded_time``, ``range_date_start``, ``range_date_end``, ``tracking_key``). Our reading of
what the doc leaves open:

* ``recorded_time`` is the upload's ``received_time`` (the doc: "date that the log was received
  by the mobile device").
* An online unlock's time is known: the range is the instant the cloud issued that session's
  commands, start = end. An offline unlock or a quick click happened at some time the cloud can
  only bound (the doc names exactly these two): from the cloud's last contact with the lock
  before that session (an earlier session's command batch or record; the lock's registration
  if none) to the ``received_time`` of the record.
* Action names: ``unlocked``, ``unshackled``, ``offline_unlocked``, ``quick_click_unlocked``,
  ``locked`` (the lock's late record after a batch), ``setup``, ``unlock_failed``. The doc lists
  only "unlocked, locked" as examples (and its request example filters on ``unlock``): filters
  match these names exactly.
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass, field
from typing import Any

from blelock.errors import ProtocolError
from blelock.vendors.noke.protocol import (
    OFFLINE_SLOTS,
    LockRecord,
    RecordEvent,
    RecordType,
    ResultCode,
    offline_grant_material,
    open_server_packet,
)
from simulators.noke_cloud_http import _iso, _Refusal, _unix
from simulators.round_trip import ModelledWaits

__all__ = [
    "ActivityEntry",
    "CloudFaults",
    "IssuedCommands",
    "NokeCloudState",
    "OfflineKey",
    "QuickClick",
    "RegisteredLock",
    "UploadedRecord",
    "confirm_quick_clicks",
    "note_contact",
    "record_activity",
]


# --- the world the cloud knows --------------------------------------------------------------


@dataclass
class RegisteredLock:
    mac: str
    """``AA:BB:CC:DD:EE:FF``."""
    key: bytes
    """The lock's 16-byte base key, shared with the simulated lock."""
    hw_version: str
    fw_version: str
    serial: str
    setup_pending: bool = True
    """A new lock is set up by its first online unlock."""
    created_by: str = "blelock simulator"
    created_date: str = "2018-04-04T16:00:00Z"
    setup_count: int = 0
    internal_battery: int = 0
    external_battery: int = 0
    offline_keys: dict[str, OfflineKey] = field(default_factory=dict)
    """Active offline keys by tracking key."""
    revoked_slots: set[int] = field(default_factory=set)
    """Revoked here; sent to the lock in every online command string until it confirms."""
    confirmed_revocations: set[int] = field(default_factory=set)
    """Revocations the lock has executed (seen in an uploaded record of the session they
    were sent in)."""
    slot_holders: dict[int, str] = field(default_factory=dict)
    """Tracking key each offline slot was issued to (revoked ones too: activity names them)."""
    quick_clicks: dict[str, QuickClick] = field(default_factory=dict)
    """By code, in the order issued: pending, on the lock, or revoked and not yet removed."""
    contacts: list[tuple[int, str]] = field(default_factory=list)
    """(Unix time, session) of every command batch and record: activity's date ranges."""

    @property
    def flags(self) -> list[str]:
        """What waits for an online unlock to carry it to the lock."""
        flags = ["setup"] if self.setup_pending else []
        if self.revocations_to_send:
            flags.append("keys")
        if any(qc.pending or qc.revoked for qc in self.quick_clicks.values()):
            flags.append("quick_clicks")
        return flags

    def issue_offline_key(self, tracking_key: str) -> OfflineKey:
        """The tracking key's active key, or a new one in the lowest never-used slot."""
        if (existing := self.offline_keys.get(tracking_key)) is not None:
            return existing
        used = {key.slot for key in self.offline_keys.values()} | self.revoked_slots
        slot = next((n for n in range(OFFLINE_SLOTS) if n not in used), None)
        if slot is None:
            raise _Refusal(3, f"Offline key pool of {OFFLINE_SLOTS} is full for {self.mac}")
        offline_key, unlock_command = offline_grant_material(self.key, slot)
        issued = OfflineKey(tracking_key, slot, offline_key.hex(), unlock_command.hex())
        self.offline_keys[tracking_key] = issued
        self.slot_holders[slot] = tracking_key
        return issued

    def revoke_offline_key(self, tracking_key: str) -> None:
        if (revoked := self.offline_keys.pop(tracking_key, None)) is not None:
            self.revoked_slots.add(revoked.slot)

    @property
    def revocations_to_send(self) -> list[int]:
        return sorted(self.revoked_slots - self.confirmed_revocations)


@dataclass(frozen=True)
class OfflineKey:
    tracking_key: str
    slot: int
    offline_key: str
    """Hex, as /keys/ hands it out."""
    unlock_command: str


@dataclass
class CloudFaults:
    """Switches a test or benchmark flips; counts are "the next N requests", -1 = always."""

    fail_with_500: int = 0
    garbage_json: int = 0
    rate_limit: int = 0
    retry_after_s: int = 2
    """The ``Retry-After`` (seconds) sent with an injected 429."""
    latency_s: float = 0.0
    """Added to every request; part of the benchmark's latency model."""

    @staticmethod
    def _take(count: int) -> tuple[bool, int]:
        if count == 0:
            return False, 0
        return True, count if count < 0 else count - 1

    def draw(self) -> str | None:
        """Which fault (if any) answers this request; uses up one of its count."""
        for name in ("rate_limit", "fail_with_500", "garbage_json"):
            hit, left = self._take(getattr(self, name))
            if hit:
                setattr(self, name, left)
                return name
        return None


@dataclass(frozen=True)
class IssuedCommands:
    """One command batch the cloud handed out."""

    mac: str
    action: str
    session: str
    """Lower-case hex."""
    tracking_key: str | None
    batch_id: int
    setup: bool
    unix_time: int
    commands: str
    revoked_slots: tuple[int, ...] = ()
    quick_clicks_removed: tuple[str, ...] = ()
    quick_clicks_added: tuple[str, ...] = ()


@dataclass(frozen=True)
class UploadedRecord:
    mac: str
    """Upper-case."""
    session: str
    """Lower-case hex."""
    response: str
    """The 0x50 packet, lower-case hex."""
    received_time: int


@dataclass
class NokeCloudState:
    locks: dict[str, RegisteredLock] = field(default_factory=dict)
    """By upper-case MAC."""
    api_key: str = "sim-noke-api-key"
    mobile_key: str = "sim-noke-mobile-key"
    faults: CloudFaults = field(default_factory=CloudFaults)

    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    """Requests received per route (``"unlock"``, …), faulted ones included."""
    modelled: ModelledWaits = field(default_factory=ModelledWaits)
    """The latency charged (``faults.latency_s`` a request), overlapping round trips once."""
    faulted: collections.Counter[str] = field(default_factory=collections.Counter)
    """Requests answered by an injected fault, per fault name."""
    commands_issued: list[IssuedCommands] = field(default_factory=list)
    uploaded: dict[tuple[str, str, str], UploadedRecord] = field(default_factory=dict)
    """Distinct records, by (mac, session, response)."""
    records_received: int = 0
    """Every record in every accepted upload, duplicates included."""
    records_duplicate: int = 0
    revocations_sent: dict[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    """Revoked slots carried by the commands issued for (mac, session)."""
    upload_keys: dict[str, str] = field(default_factory=dict)
    """Idempotency-Key of each upload already processed → SHA-256 of its body."""
    uploads_replayed: int = 0
    """Uploads answered from ``upload_keys`` without being processed again."""
    batches: dict[tuple[str, str], IssuedCommands] = field(default_factory=dict)
    """The latest command batch issued per (mac, session)."""
    activity: list[ActivityEntry] = field(default_factory=list)
    """Built from the records received, oldest first (see :mod:`simulators.noke_activity`)."""
    _batch_id: int = 0

    def __post_init__(self) -> None:
        self.locks = {mac.upper(): lock for mac, lock in self.locks.items()}

    def add_lock(self, lock: RegisteredLock) -> RegisteredLock:
        self.locks[lock.mac.upper()] = lock
        return lock

    def find_lock(self, mac: str) -> RegisteredLock | None:
        return self.locks.get(mac.upper())

    def next_batch_id(self) -> int:
        self._batch_id = self._batch_id % 255 + 1
        return self._batch_id

    def record_uploaded(self, record: UploadedRecord) -> None:
        """Read what the lock reported: a key record acknowledges setup; any authentic record
        from a session confirms the revocations that session's commands carried."""
        lock = self.find_lock(record.mac)
        if lock is None:
            return
        try:
            opened = open_server_packet(
                lock.key, bytes.fromhex(record.session), bytes.fromhex(record.response)
            )
        except ProtocolError:
            return  # kept as received, but it proves nothing
        record_activity(self, lock, record, opened)
        note_contact(lock, record.received_time, record.session)
        lock.internal_battery = opened.battery_mv
        if opened.record_type == RecordType.KEY and lock.setup_pending:
            lock.setup_pending = False
            lock.setup_count += 1
        if opened.record_type == RecordType.UNLOCK:
            # The lock ran the action, so it ran the REMOVE packets sent before it in that
            # string (a setup record alone proves nothing: the link may have dropped after it).
            sent = self.revocations_sent.get((lock.mac.upper(), record.session), ())
            lock.confirmed_revocations.update(sent)
            batch = self.batches.get((lock.mac.upper(), record.session))
            if batch is not None:
                confirm_quick_clicks(lock, batch.quick_clicks_removed, batch.quick_clicks_added)


# --- quick clicks on a lock (the /qc/ route's rules: simulators.noke_quick_clicks) -----------


@dataclass
class QuickClick:
    code: str
    uses: int
    pending: bool = True
    """Issued, not yet known to be on the lock."""
    revoked: bool = False
    """Revoked, not yet known to be removed from the lock."""

    def view(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "pending": self.pending,
            "revoked": self.revoked,
            "uses": self.uses,
        }


def confirm_quick_clicks(
    lock: RegisteredLock, removed: tuple[str, ...], added: tuple[str, ...]
) -> None:
    """The lock's record of an unlock arrived: the quick-click packets before it in that
    command string ran. A code revoked since (or re-issued) keeps its newer state."""
    for code in removed:
        held = lock.quick_clicks.get(code)
        if held is not None and held.revoked:
            del lock.quick_clicks[code]
    for code in added:
        held = lock.quick_clicks.get(code)
        if held is not None and held.pending:
            held.pending = False


# --- activity, from the records received ----------------------------------------------------


@dataclass(frozen=True)
class ActivityEntry:
    lock_mac: str
    action: str
    recorded_time: int
    range_date_start: int
    range_date_end: int
    tracking_key: str

    def view(self) -> dict[str, Any]:
        return {
            "lock_mac": self.lock_mac,
            "action": self.action,
            "recorded_time": _iso(self.recorded_time),
            "range_date_start": _iso(self.range_date_start),
            "range_date_end": _iso(self.range_date_end),
            "tracking_key": self.tracking_key,
        }


def note_contact(lock: RegisteredLock, unix: int, session: str) -> None:
    """The cloud heard of the lock at ``unix`` in ``session`` (a command batch, a record)."""
    bisect.insort(lock.contacts, (unix, session))


def _contact_before(lock: RegisteredLock, unix: int, session: str) -> int:
    index = bisect.bisect_right(lock.contacts, (unix, "\uffff"))
    for when, other in reversed(lock.contacts[:index]):
        if other != session:
            return when
    return _unix(lock.created_date)


_UNLOCK_ACTIONS: dict[int, str] = {
    RecordEvent.UNLOCKED: "unlocked",
    RecordEvent.UNSHACKLED: "unshackled",
    RecordEvent.OFFLINE_UNLOCKED: "offline_unlocked",
}


def _action(opened: LockRecord) -> str | None:
    if opened.record_type == RecordType.KEY:
        return "setup"
    if opened.record_type == RecordType.UNLOCK:
        return _UNLOCK_ACTIONS.get(opened.event)
    if opened.record_type == RecordType.LOG:
        if opened.event == RecordEvent.QUICK_CLICK_UNLOCKED:
            return "quick_click_unlocked"
        if opened.event == RecordEvent.RELOCKED:
            return "locked"
        if opened.event in (ResultCode.FAILED_TO_UNLOCK, ResultCode.FAILED_TO_UNSHACKLE):
            return "unlock_failed"
    return None


def record_activity(
    state: NokeCloudState, lock: RegisteredLock, record: UploadedRecord, opened: LockRecord
) -> None:
    """One entry for a record received for the first time (before its own contact is noted)."""
    action = _action(opened)
    if action is None:
        return
    batch = state.batches.get((lock.mac.upper(), record.session))
    received = record.received_time
    tracking_key = ""
    if action in ("offline_unlocked", "quick_click_unlocked") or batch is None:
        start, end = min(_contact_before(lock, received, record.session), received), received
        if action == "offline_unlocked":
            tracking_key = lock.slot_holders.get(opened.detail, "")
    else:
        start = end = batch.unix_time
        tracking_key = batch.tracking_key or ""
    state.activity.append(
        ActivityEntry(lock.mac.upper(), action, received, start, end, tracking_key)
    )
