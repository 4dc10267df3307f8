"""Nokē's part of access grants: an offline key for the holder's tracking key, and/or a quick
click (a code of long and short presses, with a use count) for the holder's code.

The Core API has no schedules (vendor doc, /keys/): a key lasts until revoked. So a grant with
a start in the future or an end is honest only as "issued at the start and revoked at the end
by the reconciler", which needs ``--round``; weekly windows cannot be kept at all (rounded away,
shown). A revoked offline key keeps opening the lock until an online unlock carries the
revocation to it (the lock learns only then); ``blelock access show`` says so.

Issuing is idempotent at the cloud (one key per tracking key and lock), and an interrupted run
is matched by listing the lock's keys for the tracking key. A quick click reaches the lock only
with its next online unlock: it stays *applying* (unconfirmed) until the cloud no longer lists it
as pending, and a revoked one opens until an online unlock removes it. Its code is a secret: the
stored item names it by a digest, never by its presses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from blelock.errors import CloudRejected, UsageError
from blelock.grants import AccessConstraints, Code, CodeRules, Grant, Item, Target
from blelock.model import MacAddress
from blelock.vendors.base import (
    AccessSession,
    AccessTranslation,
    Applied,
    OptionSpec,
    VendorContext,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = ["ACCESS", "NokeAccess"]

TRACKING_KEY = "tracking_key"
QUICK_CLICK = "quick_click"
OFFLINE_KEY = "offline-key"
UNLIMITED = 255
"""The Core API's use count for an unlimited quick click."""
QC_ITEM = "quick-click"


def code_ref(mac: str, code: Code) -> str:
    """How the store names a quick click: a digest of lock and the code's keyed tag, never the
    presses nor anything they can be guessed back from."""
    return "qc:" + hashlib.sha256(f"{mac}|{code.keyed()}".encode()).hexdigest()[:20]


def _presses(text: str) -> str:
    value = text.strip()
    if value.strip("01") or not 3 <= len(value) <= 24:
        raise ValueError("a quick click is 3-24 presses written as 1 (long) and 0 (short)")
    return value


def _tracking_key(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 64 or not value.isprintable():
        raise ValueError("must be 1 to 64 printable characters")
    return value


class NokeAccess(AccessTranslation):
    identities: Sequence[OptionSpec] = (
        OptionSpec(
            TRACKING_KEY,
            "the holder's Nokē tracking key (offline keys are issued to it)",
            metavar="K",
            parse=_tracking_key,
        ),
    )
    codes: Sequence[OptionSpec] = (
        OptionSpec(QUICK_CLICK, "the holder's Nokē quick click (1 long, 0 short press)",
                   parse=_presses),
    )  # fmt: skip
    confirm_after = dt.timedelta(minutes=10)
    """A quick click waits for the lock's next online unlock: no need to ask every second."""

    async def constraints(self, ctx: VendorContext, lock_id: str) -> AccessConstraints:
        from blelock.errors import BlelockError
        from blelock.vendors.noke import quick_clicks as qc
        from blelock.vendors.noke.cloud import NokeCloud
        from blelock.vendors.noke.protocol import QUICK_CLICK_LENGTHS

        capacity: int | None = None
        try:
            async with NokeCloud.from_settings(ctx.settings) as cloud:
                listed = await cloud.quick_clicks([MacAddress(lock_id)])
            capacity = qc.PER_LOCK - sum(len(lock.quick_clicks) for lock in listed)
        except BlelockError:
            capacity = None  # unknown without the cloud; it checks again when issuing
        return AccessConstraints(
            vendor="noke",
            lock_id=lock_id,
            credential="offline key or quick click",
            identity=None,  # a tracking key, a quick click, or both (see refusals)
            enforces_period=False,
            uses=(1, qc.MAX_LIMITED_USES),
            code=CodeRules("01", tuple(QUICK_CLICK_LENGTHS), unique_per_lock=True),
            capacity_left=capacity,
            takes_effect="an offline key when the holder's app next fetches it from the Nokē "
            "cloud; a quick click with the lock's next online unlock (pending until then)",
            revocation="a revoked offline key or quick click still opens the lock until an "
            "online unlock carries the revocation to it",
            native="an offline key for the tracking key (/keys/) and/or a quick click with its "
            "uses (/qc/; 255 = unlimited)",
        )

    def refusals(self, grant: Grant, rules: AccessConstraints) -> list[str]:
        holder = grant.holder
        tracking, code = holder.identities.get(TRACKING_KEY), holder.codes.get(QUICK_CLICK)
        out = []
        if tracking is None and code is None:
            out.append(
                "Nokē needs the holder's tracking key (--tracking-key) or a quick click "
                "(--quick-click -)"
            )
        if code is not None and rules.code is not None:
            problem = rules.code.problem(code.reveal())
            if problem is not None:
                out.append(f"Nokē quick click: {problem}")  # never the presses themselves
        if grant.uses is not None and tracking is not None:
            out.append(
                "Nokē offline keys do not count uses: give a counted grant as a quick click "
                "only (no --tracking-key)"
            )
        return out

    def items(self, target: Target, span_from: dt.datetime, span_to: dt.datetime) -> list[Item]:
        schedule = target.schedule
        ends = schedule.ends_at
        if schedule.starts_at >= span_to or (ends is not None and ends <= span_from):
            return []
        mac, holder = target.lock.lock_id, target.holder
        items = []
        if TRACKING_KEY in holder.identities:
            native: dict[str, object] = {"mac": mac, TRACKING_KEY: holder.identities[TRACKING_KEY]}
            items.append(Item(OFFLINE_KEY, schedule.starts_at, ends, "reconciler", native))
        code = holder.codes.get(QUICK_CLICK)
        if code is not None:
            uses = target.uses if target.uses is not None else UNLIMITED
            native = {"mac": mac, "code": code_ref(mac, code), "uses": uses}
            items.append(Item(QC_ITEM, schedule.starts_at, ends, "reconciler", native))
        return items

    @contextlib.asynccontextmanager
    async def session(self, ctx: VendorContext) -> AsyncIterator[AccessSession]:
        from blelock.vendors.noke.cloud import NokeCloud

        async with NokeCloud.from_settings(ctx.settings) as cloud:
            yield _Session(cloud)


class _Session:
    def __init__(self, cloud: object) -> None:
        from blelock.vendors.noke.cloud import NokeCloud

        assert isinstance(cloud, NokeCloud)
        self._cloud = cloud

    async def _listed(self, mac: str, tracking_key: str) -> bool:
        keys = await self._cloud.offline_keys([MacAddress(mac)])
        return any(key.tracking_key == tracking_key for key in keys)

    async def _quick_click(self, target: Target, item: Item) -> tuple[Any, SecretStr]:
        """The quick click as the cloud lists it (None: not listed, or revoked), and its code."""
        from pydantic import SecretStr

        mac = MacAddress(str(item.native["mac"]))
        code = target.holder.codes[QUICK_CLICK].reveal()
        listed = [
            q
            for lock in await self._cloud.quick_clicks([mac])
            for q in lock.quick_clicks
            if q.code.get_secret_value() == code and not q.revoked
        ]
        return (listed[0] if listed else None), SecretStr(code)

    async def find(self, target: Target, item: Item, taken: frozenset[str]) -> str | None:
        if item.key == QC_ITEM:
            listed, _ = await self._quick_click(target, item)
            ref = str(item.native["code"])
            return ref if listed is not None and ref not in taken else None
        mac, tracking_key = str(item.native["mac"]), str(item.native[TRACKING_KEY])
        ref = f"{mac}/{tracking_key}"
        return ref if ref not in taken and await self._listed(mac, tracking_key) else None

    async def apply(self, target: Target, item: Item) -> Applied:
        from blelock.vendors.noke.models import KeyScope, KeysRequest

        if item.key == QC_ITEM:
            from pydantic import SecretStr

            mac = MacAddress(str(item.native["mac"]))
            code = SecretStr(target.holder.codes[QUICK_CLICK].reveal())
            try:
                await self._cloud.issue_quick_clicks(mac, [(code, int(str(item.native["uses"])))])
            except UsageError as exc:  # a rule of the doc, checked against what the lock holds
                raise CloudRejected(exc.message, about_content=True) from None
            # Pending until the lock's next online unlock carries it (confirm asks).
            return Applied(str(item.native["code"]), confirmed=False)

        mac, tracking_key = MacAddress(str(item.native["mac"])), str(item.native[TRACKING_KEY])
        body = KeysRequest(issue=[KeyScope(macs=[mac], tracking_keys=[tracking_key])])
        # The issue request alone (offline_keys() would list every key of the lock after it).
        await self._cloud._post("keys", body, mac=mac)
        return Applied(f"{mac}/{tracking_key}")

    async def confirm(self, target: Target, item: Item, ref: str) -> str | None:
        if item.key != QC_ITEM:
            return ref  # the cloud holds the key once it answered; the lock needs no copy
        listed, _ = await self._quick_click(target, item)
        if listed is None:
            raise CloudRejected("the Nokē cloud no longer lists the quick click", status=404)
        return None if listed.pending else ref

    async def revoke(self, target: Target, item: Item, ref: str | None) -> None:
        mac = MacAddress(str(item.native["mac"]))
        if item.key == QC_ITEM:
            listed, code = await self._quick_click(target, item)
            if listed is not None:  # gone or revoked already: nothing to do
                await self._cloud.revoke_quick_clicks(mac, [code])
            return
        await self._cloud.revoke_offline_keys([mac], [str(item.native[TRACKING_KEY])])


ACCESS = NokeAccess()
