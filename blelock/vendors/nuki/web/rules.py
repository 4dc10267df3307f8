"""The Nuki Web API's rules, checked before a request leaves (one place for each).

Sources: the vendor documents in ``shared/vendor-docs/nuki-web-api-*.txt`` and
``shared/research/keyless-nuki-unloc.md`` §B.3. A code is a secret: no message here quotes it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from pydantic import SecretStr

from blelock.errors import UsageError
from blelock.vendors.nuki.protocol import check_code

__all__ = [
    "AUTH_NAME_MAX",
    "KEYPAD_CODE_TYPE",
    "KEYPAD_NAME_MAX",
    "LOG_LIMIT_DEFAULT",
    "LOG_LIMIT_MAX",
    "MAX_AUTHORIZATIONS",
    "MAX_KEYPAD_CODES",
    "WEEKDAY_BITS",
    "AuthType",
    "LockAction",
    "check_auth_name",
    "check_keypad_code",
    "check_log_limit",
    "weekday_mask",
]

KEYPAD_CODE_TYPE = 13
AUTH_NAME_MAX = 32
KEYPAD_NAME_MAX = 20
LOG_LIMIT_DEFAULT = 20
LOG_LIMIT_MAX = 50
WEEKDAY_BITS = {"mon": 64, "tue": 32, "wed": 16, "thu": 8, "fri": 4, "sat": 2, "sun": 1}
"""``allowedWeekDays``: 64 = Monday … 1 = Sunday; 127 is every day."""


class AuthType(enum.IntEnum):
    """What an authorization is, as the Web API numbers it (create takes 0, 2 and 13)."""

    APP = 0
    BRIDGE = 1
    FOB = 2
    KEYPAD = 3
    KEYPAD_CODE = 13
    Z_KEY = 14
    VIRTUAL = 15


class LockAction(enum.IntEnum):
    """``POST /smartlock/{id}/action``'s ``action`` for a Smart Lock."""

    UNLOCK = 1
    LOCK = 2
    UNLATCH = 3
    LOCK_N_GO = 4
    LOCK_N_GO_UNLATCH = 5


def check_keypad_code(code: SecretStr, *, lock: str | None = None) -> int:
    """The code as the API takes it (an integer), or a UsageError: the lock's rule
    (:func:`blelock.vendors.nuki.protocol.check_code`: 6 digits 1-9, not starting "12")."""
    try:
        return check_code(code.get_secret_value().strip())
    except ValueError as exc:
        where = f" (lock {lock})" if lock else ""
        raise UsageError(
            f"{exc}{where}", hint="choose another code; the keypad has no 0 key"
        ) from None


def check_auth_name(name: str, *, keypad: bool) -> str:
    """A keypad code's name is at most 20 characters, any other authorization's 32."""
    limit = KEYPAD_NAME_MAX if keypad else AUTH_NAME_MAX
    what = "keypad code" if keypad else "authorization"
    if not name.strip():
        raise UsageError(f"a Nuki {what} needs a name", hint="give it one with --name")
    if len(name) > limit:
        raise UsageError(
            f"a Nuki {what}'s name is at most {limit} characters; "
            f"{name[:limit]!r}… has {len(name)}",
            hint="shorten the name",
        )
    return name


def check_log_limit(limit: int) -> int:
    if not 1 <= limit <= LOG_LIMIT_MAX:
        raise UsageError(
            f"the Nuki Web API hands out 1 to {LOG_LIMIT_MAX} log entries per request, not {limit}",
            hint="ask for fewer; read_logs pages through more",
        )
    return limit


def weekday_mask(days: Iterable[str]) -> int:
    """``["mon", "fri"]`` (or ``"mon-fri"`` ranges) → the ``allowedWeekDays`` bitmask."""
    order = list(WEEKDAY_BITS)
    mask = 0
    for raw in days:
        item = raw.strip().lower()
        first, _, last = item.partition("-")
        if first[:3] not in WEEKDAY_BITS or (last and last[:3] not in WEEKDAY_BITS):
            raise UsageError(
                f"unknown weekday {raw!r}", hint="use mon, tue, wed, thu, fri, sat, sun or mon-fri"
            )
        start = order.index(first[:3])
        stop = order.index(last[:3]) if last else start
        if stop < start:
            raise UsageError(f"weekday range {raw!r} runs backwards", hint="write it as mon-fri")
        for day in order[start : stop + 1]:
            mask |= WEEKDAY_BITS[day]
    return mask


MAX_KEYPAD_CODES = 100
"""Keypad codes a lock holds (Nuki staff say 99 and 100 in one thread; the lock refuses more)."""
MAX_AUTHORIZATIONS = 200
"""Authorizations other than keypad codes a Smart Lock 2.0 and later holds."""
