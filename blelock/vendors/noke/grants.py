"""Nokē's part of access grants: an offline key for the holder's tracking key.

The Core API has no schedules (vendor doc, /keys/): a key lasts until revoked. So a grant with
a start in the future or an end is honest only as "issued at the start and revoked at the end
by the reconciler", which needs ``--round``; weekly windows cannot be kept at all (rounded away,
shown). A revoked offline key keeps opening the lock until an online unlock carries the
revocation to it (the lock learns only then); ``blelock access show`` says so.

Issuing is idempotent at the cloud (one key per tracking key and lock), and an interrupted run
is matched by listing the lock's keys for the tracking key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence

from blelock.grants import AccessConstraints, Item, Target
from blelock.model import MacAddress
from blelock.vendors.base import (
    AccessSession,
    AccessTranslation,
    Applied,
    OptionSpec,
    VendorContext,
)

__all__ = ["ACCESS", "NokeAccess"]

TRACKING_KEY = "tracking_key"
OFFLINE_KEY = "offline-key"


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

    async def constraints(self, ctx: VendorContext, lock_id: str) -> AccessConstraints:
        return AccessConstraints(
            vendor="noke",
            lock_id=lock_id,
            credential="offline key",
            identity=TRACKING_KEY,
            enforces_period=False,
            takes_effect="when the holder's app next fetches its offline keys from the Nokē cloud",
            revocation="a revoked offline key still opens the lock until an online unlock "
            "carries the revocation to it",
            native="one offline key for the holder's tracking key (/keys/ issue, /keys/ revoke)",
        )

    def items(self, target: Target, span_from: dt.datetime, span_to: dt.datetime) -> list[Item]:
        schedule = target.schedule
        ends = schedule.ends_at
        if schedule.starts_at >= span_to or (ends is not None and ends <= span_from):
            return []
        native = {"mac": target.lock.lock_id, TRACKING_KEY: target.holder.identities[TRACKING_KEY]}
        return [Item(OFFLINE_KEY, schedule.starts_at, ends, "reconciler", native)]

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

    async def find(self, target: Target, item: Item, taken: frozenset[str]) -> str | None:
        mac, tracking_key = str(item.native["mac"]), str(item.native[TRACKING_KEY])
        ref = f"{mac}/{tracking_key}"
        return ref if ref not in taken and await self._listed(mac, tracking_key) else None

    async def apply(self, target: Target, item: Item) -> Applied:
        from blelock.vendors.noke.models import KeyScope, KeysRequest

        mac, tracking_key = MacAddress(str(item.native["mac"])), str(item.native[TRACKING_KEY])
        body = KeysRequest(issue=[KeyScope(macs=[mac], tracking_keys=[tracking_key])])
        # The issue request alone (offline_keys() would list every key of the lock after it).
        await self._cloud._post("keys", body, mac=mac)
        return Applied(f"{mac}/{tracking_key}")

    async def confirm(self, target: Target, item: Item, ref: str) -> bool:
        return True  # the cloud holds the key once it answered; the lock needs no copy

    async def revoke(self, target: Target, item: Item, ref: str | None) -> None:
        from blelock.vendors.noke.models import KeyScope, KeysRequest

        mac, tracking_key = MacAddress(str(item.native["mac"])), str(item.native[TRACKING_KEY])
        body = KeysRequest(revoke=[KeyScope(macs=[mac], tracking_keys=[tracking_key])])
        await self._cloud._post("keys", body, mac=mac)


ACCESS = NokeAccess()
