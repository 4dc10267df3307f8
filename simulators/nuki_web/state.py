"""The simulated Nuki Web API's world: an account, its users, its smart locks, and — per lock —
what the lock holds and what the Web API last heard of it.

The two are kept apart because that is how users see the real one behave (research §B.3, §D):

* A write is validated and answered 204 at once; it becomes an :class:`Operation` on its lock
  that the lock takes ``delay_s`` later (only while the lock is online). Meanwhile the entries
  it touches show ``operationId``, and every other change to that lock is refused with 423.
* When the lock has taken an operation, the Web API's copy is refreshed from the lock (the
  "fast sync"). A fault switch skips that refresh: a deleted entry then lingers in the list
  (and a new code equal to it is refused with 409) until a sync (``PUT .../sync``) or the
  daily sync.
* A change made on the lock itself (:meth:`NukiWebState.change_on_lock`, the app over BLE)
  reaches the Web API only with a sync or the daily sync.

Time comes from a clock object: :class:`ManualClock` (tests and benchmarks: nothing moves until
``advance`` or a client's ``sleep``) or :class:`WallClock` (the ``blelock-sim`` process).
:meth:`NukiWebState.settle` runs whatever is due; every request settles first.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Entry",
    "ManualClock",
    "NukiWebFaults",
    "NukiWebState",
    "Operation",
    "SimAccountUser",
    "SimSmartLock",
    "WallClock",
]

KEYPAD_CODE = 13
LOCK_STATE_AFTER = {1: 3, 2: 1, 3: 5, 4: 1, 5: 1}
"""Lock action → the state the lock ends in (unlock 3 unlocked, lock 1 locked, unlatch 5)."""
WEB_TRIGGER = 4
MOTOR_BLOCKED = 1
DAY_S = 86_400.0


class SimClock(Protocol):
    def now_utc(self) -> dt.datetime: ...


class ManualClock:
    """UTC and monotonic time that move only when told to: ``advance`` or ``sleep`` (so a
    client given this clock moves the world's time as it waits, with no real sleep)."""

    def __init__(self, start: dt.datetime = dt.datetime(2030, 3, 4, 8, 0, tzinfo=dt.UTC)) -> None:
        self._now = start
        self._mono = 1000.0

    def now_utc(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)


class WallClock:
    def now_utc(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@dataclass
class Entry:
    """One authorization as the simulated API models it (not blelock's model)."""

    id: str
    smartlock_id: int
    auth_id: int
    type: int
    name: str
    creation_date: dt.datetime
    update_date: dt.datetime
    enabled: bool = True
    remote_allowed: bool = False
    smart_actions_enabled: bool = False
    account_user_id: int | None = None
    code: int | None = None
    allowed_from_date: dt.datetime | None = None
    allowed_until_date: dt.datetime | None = None
    allowed_week_days: int | None = None
    allowed_from_time: int | None = None
    allowed_until_time: int | None = None
    lock_count: int = 0

    TIME_FIELDS = (
        "allowed_from_date",
        "allowed_until_date",
        "allowed_week_days",
        "allowed_from_time",
        "allowed_until_time",
    )

    def to_json(self, operation_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "smartlockId": self.smartlock_id,
            "authId": self.auth_id,
            "type": self.type,
            "name": self.name,
            "enabled": self.enabled,
            "remoteAllowed": self.remote_allowed,
            "smartActionsEnabled": self.smart_actions_enabled,
            "lockCount": self.lock_count,
            "creationDate": _iso(self.creation_date),
            "updateDate": _iso(self.update_date),
            "accountUserId": self.account_user_id,
            "code": self.code,
            "allowedFromDate": _iso(self.allowed_from_date),
            "allowedUntilDate": _iso(self.allowed_until_date),
            "allowedWeekDays": self.allowed_week_days,
            "allowedFromTime": self.allowed_from_time,
            "allowedUntilTime": self.allowed_until_time,
            "operationId": operation_id,
        }
        return {key: value for key, value in body.items() if value is not None}


@dataclass
class Operation:
    id: str
    kind: str
    """"create", "update", "delete", "action", "sync"."""
    due: dt.datetime
    entry_ids: frozenset[str]
    apply: Callable[[SimSmartLock, dt.datetime], None]


@dataclass
class SimSmartLock:
    smartlock_id: int
    name: str
    type: int = 4
    """4: Smart Lock 3.0 (the Web API's device type)."""
    keypad_paired: bool = True
    timezone_id: int = 37
    """37: Europe/Berlin in Nuki's table."""
    state: int = 1
    battery_charge: int = 87
    server_state: int = 0
    """0 ok, 4 offline: operations wait until the lock is back."""
    jammed: bool = False
    """Lock actions end "motor blocked"."""
    on_lock: dict[str, Entry] = field(default_factory=dict)
    listed: dict[str, Entry] = field(default_factory=dict)
    """The Web API's copy, as last synced."""
    pending: Operation | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    """Oldest first; served newest first."""
    next_auth_id: int = 2
    creation_date: dt.datetime = dt.datetime(2029, 6, 1, tzinfo=dt.UTC)
    on_taken: Callable[[SimSmartLock, Operation], None] | None = None
    """Called when the lock has taken an operation, before the Web API's copy is refreshed:
    the seam :mod:`simulators.nuki_web.bridge` carries operations to a simulated lock by."""

    def refresh_listing(self) -> None:
        self.listed = {key: dataclasses.replace(entry) for key, entry in self.on_lock.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "smartlockId": self.smartlock_id,
            "accountId": 1,
            "type": self.type,
            "name": self.name,
            "favorite": False,
            "config": {
                "name": self.name,
                "keypadPaired": self.keypad_paired,
                "timezoneId": self.timezone_id,
            },
            "state": {
                "mode": 2,
                "state": self.state,
                "trigger": 0,
                "lastAction": 0,
                "batteryCritical": self.battery_charge < 20,
                "batteryCharge": self.battery_charge,
            },
            "serverState": self.server_state,
            "adminPinState": 0,
            "virtualDevice": False,
            "creationDate": _iso(self.creation_date),
        }


@dataclass
class SimAccountUser:
    account_user_id: int
    email: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"accountUserId": self.account_user_id, "email": self.email, "name": self.name}


@dataclass
class NukiWebFaults:
    """Counts are "the next N operations"; -1 = always."""

    skip_fast_sync: int = 0
    """The lock takes the operation, but the Web API's copy is not refreshed (lingering
    deletes, stale updates) until a sync."""
    create_drops_window: int = 0
    """A new entry reaches the lock without its time fields ("the pin shows today's date and
    unlimited end", vendor forum)."""

    def take(self, name: str) -> bool:
        count = getattr(self, name)
        if count == 0:
            return False
        if count > 0:
            setattr(self, name, count - 1)
        return True


@dataclass
class NukiWebState:
    api_token: str = "sim-nuki-web-token"
    clock: SimClock = field(default_factory=WallClock)
    delay_s: float = 3.0
    """From a write's 204 to the lock having it."""
    locks: dict[int, SimSmartLock] = field(default_factory=dict)
    users: dict[int, SimAccountUser] = field(default_factory=dict)
    faults: NukiWebFaults = field(default_factory=NukiWebFaults)
    invites_sent: list[tuple[str, int, str]] = field(default_factory=list)
    """(e-mail, smartlockId, key name) of each invite e-mail the account's users were sent."""
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    """"METHOD /path-pattern" → count."""
    writes: list[tuple[str, str, Any]] = field(default_factory=list)
    """(method, path, JSON body) of every write accepted (204), in order."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _next_daily_sync: dt.datetime | None = None

    # --- set-up ---------------------------------------------------------------------------

    def add_lock(self, smartlock_id: int, name: str, **options: Any) -> SimSmartLock:
        lock = SimSmartLock(smartlock_id, name, **options)
        self.locks[smartlock_id] = lock
        return lock

    def add_user(self, email: str, name: str) -> SimAccountUser:
        user = SimAccountUser(next(self._ids) + 10_000, email, name)
        self.users[user.account_user_id] = user
        return user

    def new_id(self) -> str:
        return secrets.token_hex(12)

    # --- time -----------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.clock.now_utc()

    def settle(self) -> None:
        """Run every operation that is due on an online lock, then the daily sync if due."""
        now = self.now()
        for lock in self.locks.values():
            operation = lock.pending
            if operation is None or lock.server_state != 0 or operation.due > now:
                continue
            lock.pending = None
            operation.apply(lock, now)
            if lock.on_taken is not None:
                lock.on_taken(lock, operation)
            if operation.kind == "sync" or not self.faults.take("skip_fast_sync"):
                lock.refresh_listing()
        if self._next_daily_sync is None:
            self._next_daily_sync = now + dt.timedelta(seconds=DAY_S)
        elif now >= self._next_daily_sync:
            for lock in self.locks.values():
                if lock.on_taken is not None:
                    daily = Operation(self.new_id(), "sync", now, frozenset(), _nothing)
                    lock.on_taken(lock, daily)
                lock.refresh_listing()
            self._next_daily_sync = now + dt.timedelta(seconds=DAY_S)

    def complete_pending(self) -> int:
        """The "advance" switch: every pending operation (on online locks) is due now."""
        due = 0
        for lock in self.locks.values():
            if lock.pending is not None and lock.server_state == 0:
                lock.pending.due = self.now()
                due += 1
        self.settle()
        return due

    def schedule(
        self,
        lock: SimSmartLock,
        kind: str,
        apply: Callable[[SimSmartLock, dt.datetime], None],
        entry_ids: frozenset[str] = frozenset(),
    ) -> Operation:
        operation = Operation(
            id=self.new_id(),
            kind=kind,
            due=self.now() + dt.timedelta(seconds=self.delay_s),
            entry_ids=entry_ids,
            apply=apply,
        )
        lock.pending = operation
        return operation

    def change_on_lock(self, smartlock_id: int, change: Callable[[SimSmartLock], None]) -> None:
        """A change made at the lock (the app over BLE): the Web API sees it after a sync."""
        change(self.locks[smartlock_id])

    def log(self, lock: SimSmartLock, now: dt.datetime, **fields: Any) -> None:
        lock.logs.append(
            {
                "id": f"{next(self._ids):024x}",
                "smartlockId": lock.smartlock_id,
                "deviceType": 0,
                "name": "",
                "trigger": WEB_TRIGGER,
                "state": 0,
                "autoUnlock": False,
                "date": _iso(now),
                **fields,
            }
        )


def _nothing(lock: SimSmartLock, now: dt.datetime) -> None:
    return None


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
