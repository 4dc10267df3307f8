"""Nuki's part of access grants: a keypad code (type 13) on a smart lock, through the Web API.

The code carries the grant's UTC dates (``allowedFromDate`` / ``allowedUntilDate``), a weekday
mask and one pair of day times (minutes after midnight, **lock-local**): one window a day, the
same hours every allowed day, ending by 23:59. Anything else is rounded with ``--round`` (shown)
or refused. Locks are named by their Web API ``smartlockId`` (``nuki:1001``).

The Web API answers 204 before the lock has a change and then syncs (store-and-forward): the
client confirms by reading back (:mod:`blelock.vendors.nuki.web.ops`), and a create not confirmed
in time stays *applying*; the next run looks for it by listing the lock's codes and matching the
code (unique per lock). A removed code goes on opening until the lock has synced; the listing
shows it until then.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from blelock.errors import CloudRejected, UsageError
from blelock.grants import DAY_NAMES, AccessConstraints, Code, CodeRules, Grant, Item, Target
from blelock.vendors.base import (
    AccessSession,
    AccessTranslation,
    Applied,
    OptionSpec,
    VendorContext,
)

__all__ = ["ACCESS", "NUKI_ZONES", "NukiAccess"]

KEYPAD_CODE = "keypad_code"
ITEM = "keypad-code"
NUKI_ZONES = {37: "Europe/Berlin"}
"""Nuki's own time-zone enumeration, as far as it is public (research §B: 37 = Europe/Berlin);
a lock with another id gets no windows from blelock (refused, saying so)."""
LATEST_END = 23 * 60 + 59
"""``allowedUntilTime`` is a time of day: 23:59 is the latest."""


def _digits(text: str) -> str:
    value = text.strip()
    if not value.isdigit() or len(value) != 6:
        raise ValueError("a Nuki keypad code is 6 digits")
    return value


def code_ref(smartlock_id: str, code: Code) -> str:
    """How the store names a code: a digest of its keyed tag, never the digits nor anything
    the digits can be guessed back from."""
    return "code:" + hashlib.sha256(f"{smartlock_id}|{code.keyed()}".encode()).hexdigest()[:20]


class NukiAccess(AccessTranslation):
    codes: Sequence[OptionSpec] = (
        OptionSpec(KEYPAD_CODE, "the holder's Nuki keypad code (6 digits 1-9, not 12…)",
                   parse=_digits),
    )  # fmt: skip
    lead = dt.timedelta(days=2)

    def lock_id(self, text: str, *, named: bool) -> str:
        value = text.strip()
        if not value.isdigit():
            raise UsageError(
                f"{value!r} is not a Nuki smartlockId",
                hint="grants reach Nuki locks through the Web API: name one as nuki:SMARTLOCK_ID",
            )
        return value

    async def constraints(self, ctx: VendorContext, lock_id: str) -> AccessConstraints:
        from blelock.vendors.nuki.settings import nuki_settings
        from blelock.vendors.nuki.web.client import NukiWeb
        from blelock.vendors.nuki.web.rules import KEYPAD_CODE_TYPE, MAX_KEYPAD_CODES

        async with NukiWeb.from_settings(
            nuki_settings(ctx.settings), ctx.settings.timeouts, clock=ctx.clock
        ) as web:
            lock = await web.smartlock(int(lock_id))
            held = await web.auths(int(lock_id), types=[KEYPAD_CODE_TYPE])
        zone_id = lock.config.timezone_id if lock.config is not None else None
        return AccessConstraints(
            vendor="nuki",
            lock_id=lock_id,
            credential="keypad code",
            identity=None,
            enforces_period=True,
            weekly_windows=True,
            windows_per_day=1,
            same_hours_every_day=True,
            local_zone=NUKI_ZONES.get(zone_id) if zone_id is not None else None,
            latest_end=LATEST_END,
            code=CodeRules("123456789", (6,), ("12",), unique_per_lock=True),
            code_name=KEYPAD_CODE,
            name_length=20,
            capacity_left=MAX_KEYPAD_CODES - len(held),
            takes_effect="once the lock has synced with Nuki's server (the Web API says 204 "
            "first; blelock reads it back)",
            revocation="a removed code opens until the lock has synced",
            native="one keypad code: UTC from/until dates, a weekday mask and one lock-local "
            "from/until time",
        )

    def refusals(self, grant: Grant, rules: AccessConstraints) -> list[str]:
        if grant.schedule.windows and rules.local_zone is None:
            return [
                "the Nuki lock's time zone is not one blelock knows Nuki's id of; give the "
                "grant without windows"
            ]
        return []

    def items(self, target: Target, span_from: dt.datetime, span_to: dt.datetime) -> list[Item]:
        from blelock.vendors.nuki.web.rules import WEEKDAY_BITS

        schedule = target.schedule
        ends = schedule.ends_at
        if schedule.starts_at >= span_to or (ends is not None and ends <= span_from):
            return []
        code = target.holder.codes[KEYPAD_CODE]
        window = schedule.windows[0] if schedule.windows else None
        mask = None
        if window is not None:
            mask = sum(WEEKDAY_BITS[DAY_NAMES[day].lower()] for day in window.days)
        native: dict[str, object] = {
            "lock": target.lock.lock_id,
            "code": code_ref(target.lock.lock_id, code),
            "name": target.holder.name[:20],
            "from": schedule.starts_at.isoformat(),
            "until": None if ends is None else ends.isoformat(),
            "weekdays": mask,
            "from_time": None if window is None else window.start,
            "until_time": None if window is None else min(window.end, LATEST_END),
        }
        return [Item(ITEM, schedule.starts_at, ends, "vendor", native)]

    @contextlib.asynccontextmanager
    async def session(self, ctx: VendorContext) -> AsyncIterator[AccessSession]:
        from blelock.vendors.nuki.settings import nuki_settings
        from blelock.vendors.nuki.web.client import NukiWeb

        async with NukiWeb.from_settings(
            nuki_settings(ctx.settings), ctx.settings.timeouts, clock=ctx.clock
        ) as web:
            yield _Session(web)


def _window(native: Any) -> Any:
    from blelock.vendors.nuki.web.window import AccessWindow

    def at(minutes: object) -> dt.time | None:
        return None if minutes is None else dt.time(int(str(minutes)) // 60, int(str(minutes)) % 60)

    until = native["until"]
    return AccessWindow(
        from_date=dt.datetime.fromisoformat(str(native["from"])),
        until_date=None if until is None else dt.datetime.fromisoformat(str(until)),
        weekdays=native["weekdays"],
        from_time=at(native["from_time"]),
        until_time=at(native["until_time"]),
    )


class _Session:
    def __init__(self, web: Any) -> None:
        self._web = web

    async def _listed(self, target: Target, item: Item) -> Any:
        from blelock.vendors.nuki.web import ops

        code = int(target.holder.codes[KEYPAD_CODE].reveal())
        for auth in await ops.list_keypad_codes(self._web, int(str(item.native["lock"]))):
            if auth.code is not None and int(auth.code.get_secret_value()) == code:
                return auth
        return None

    async def find(self, target: Target, item: Item, taken: frozenset[str]) -> str | None:
        auth = await self._listed(target, item)
        return None if auth is None or auth.id in taken else str(auth.id)

    async def apply(self, target: Target, item: Item) -> Applied:
        from pydantic import SecretStr

        from blelock.vendors.nuki.web import ops

        code = SecretStr(target.holder.codes[KEYPAD_CODE].reveal())
        try:
            made = await ops.add_keypad_code(
                self._web,
                int(str(item.native["lock"])),
                code,
                str(item.native["name"]),
                _window(item.native),
            )
        except UsageError as exc:  # a rule the client checks first (a code already there, …)
            raise CloudRejected(exc.message, about_content=True) from None
        return Applied(str(made.id))

    async def confirm(self, target: Target, item: Item, ref: str) -> str | None:
        auth = await self._listed(target, item)
        return str(auth.id) if auth is not None else None

    async def revoke(self, target: Target, item: Item, ref: str | None) -> None:
        from blelock.vendors.nuki.web import ops

        if ref is None:
            return
        try:
            await ops.remove_keypad_code(self._web, int(str(item.native["lock"])), ref)
        except UsageError:
            return  # the lock lists no such code any more: gone already
        except CloudRejected as exc:
            if exc.status != 404:
                raise


ACCESS = NukiAccess()
