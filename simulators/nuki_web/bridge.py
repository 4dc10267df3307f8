"""The simulated Web API in front of a simulated Smart Lock (``simulators/nuki_lock.py``), as
Nuki's bridge stands between the real ones: what the Web API's operations carry reaches the
lock's own model, and what was changed at the lock reaches the Web API only with a sync.

* a keypad-code operation the lock takes (create, update, delete) becomes a code in the
  lock's keypad table, its time fields a time limit the lock itself enforces (dates in UTC,
  weekdays and day times on the lock's wall clock in its time zone); a code the lock already
  holds (added over Bluetooth, not yet synced) is refused there and never appears;
* a lock action moves the lock's state;
* a sync (``PUT .../sync``, or the daily one) reads the lock's keypad codes back, codes added
  over Bluetooth included.

Only keypad codes and lock states cross; app authorizations stay in the Web API's model (the
lock's authorizations carry keys that pairing makes, which the Web API never holds).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from blelock.vendors.nuki import protocol as nuki
from simulators.nuki_lock import Refusal, SimNukiLock
from simulators.nuki_web.state import (
    KEYPAD_CODE,
    LOCK_STATE_AFTER,
    Entry,
    NukiWebState,
    Operation,
    SimSmartLock,
)

__all__ = ["bridge"]


def bridge(web: NukiWebState, smartlock_id: int, lock: SimNukiLock) -> None:
    """Carry what the Web API's lock ``smartlock_id`` takes to ``lock`` from now on."""
    web_lock = web.locks[smartlock_id]
    carried: dict[str, int] = {}
    """Web API entry id → the lock's code id."""

    def take(web_lock: SimSmartLock, operation: Operation) -> None:
        if operation.kind == "action":
            lock.lock_state = nuki.LockState(web_lock.state if web_lock.state in _STATES else 0xFF)
            lock.lock_actions += 1
        elif operation.kind == "sync":
            _read_back(web, web_lock, lock, carried)
        else:
            _carry(web_lock, lock, carried)

    web_lock.on_taken = take


_STATES = set(LOCK_STATE_AFTER.values())


def _limit(entry: Entry) -> tuple[bool, nuki.TimeLimit]:
    restricted = any(getattr(entry, name) is not None for name in Entry.TIME_FIELDS)
    return restricted, nuki.TimeLimit(
        from_date=entry.allowed_from_date,
        until_date=entry.allowed_until_date,
        weekdays=entry.allowed_week_days or nuki.ALL_WEEKDAYS,
        from_time=_wall(entry.allowed_from_time),
        until_time=_wall(entry.allowed_until_time),
    )


def _wall(minutes: int | None) -> dt.time:
    return dt.time(0, 0) if minutes is None else dt.time(min(minutes, 1439) // 60, minutes % 60)


def _carry(web_lock: SimSmartLock, lock: SimNukiLock, carried: dict[str, int]) -> None:
    wanted = {key: e for key, e in web_lock.on_lock.items() if e.type == KEYPAD_CODE and e.code}
    for entry_id in [key for key in carried if key not in wanted]:
        lock.codes.pop(carried.pop(entry_id), None)
    for entry_id, entry in wanted.items():
        limited, limit = _limit(entry)
        code_id = carried.get(entry_id)
        held = lock.codes.get(code_id) if code_id is not None else None
        try:
            taken = lock.take_code(
                entry.code or 0, entry.name, into=None if held is None else code_id
            )
        except Refusal:
            # The lock refuses by its own rules (a code it holds already, added over Bluetooth
            # and not yet synced; a full table): the Web API took the write (204), but nothing
            # changes on the lock.
            if held is None:
                del web_lock.on_lock[entry_id]
            else:
                web_lock.on_lock[entry_id] = dataclasses.replace(
                    entry, code=held.code, name=held.name
                )
            continue
        carried[entry_id] = taken.code_id
        taken.enabled, taken.time_limited, taken.limit = entry.enabled, limited, limit


def _read_back(
    web: NukiWebState, web_lock: SimSmartLock, lock: SimNukiLock, carried: dict[str, int]
) -> None:
    by_code_id = {code_id: entry_id for entry_id, code_id in carried.items()}
    for entry_id in [key for key, code_id in carried.items() if code_id not in lock.codes]:
        web_lock.on_lock.pop(entry_id, None)
        del carried[entry_id]
    for code_id, code in lock.codes.items():
        entry_id = by_code_id.get(code_id)
        entry = web_lock.on_lock.get(entry_id) if entry_id is not None else None
        if entry is None:
            entry = Entry(
                id=web.new_id(),
                smartlock_id=web_lock.smartlock_id,
                auth_id=web_lock.next_auth_id,
                type=KEYPAD_CODE,
                name=code.name,
                creation_date=code.created,
                update_date=code.created,
            )
            web_lock.next_auth_id += 1
            carried[entry.id] = code_id
        limit = code.limit
        whole_day = limit.from_time == limit.until_time == dt.time(0, 0)
        day = not code.time_limited or whole_day
        web_lock.on_lock[entry.id] = dataclasses.replace(
            entry,
            name=code.name,
            code=code.code,
            enabled=code.enabled,
            lock_count=code.lock_count,
            allowed_from_date=limit.from_date if code.time_limited else None,
            allowed_until_date=limit.until_date if code.time_limited else None,
            allowed_week_days=limit.weekdays if code.time_limited else None,
            allowed_from_time=None if day else _minutes(limit.from_time),
            allowed_until_time=None if day else _minutes(limit.until_time),
        )


def _minutes(value: dt.time) -> int:
    return value.hour * 60 + value.minute
