"""Keyless's part of access grants: OPEN permissions (SINGLE_INTERVAL, UTC start and end) for the
holder's Keyless user.

A permission is one interval; the platform has no weekly windows of its own in the documented
API. So a grant with windows becomes one permission per opening (Mon 06:00-22:00 Oslo time is
the interval of that day in UTC, its offset taken on that day, so it keeps its local hours across
a daylight-saving change), made up to :attr:`lead` ahead and removed after. That is exact, not
rounded: the operating keys the platform signs under a permission never outlast it, so the lock
refuses the holder outside the window. A grant without an end needs ``--round`` (a permission has
one).

The platform takes no idempotency key: an interrupted create is found by listing the
permissions and matching user, lock, operation, start and end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence

from blelock.errors import CloudRejected
from blelock.grants import AccessConstraints, Item, Target
from blelock.vendors.base import (
    AccessSession,
    AccessTranslation,
    Applied,
    OptionSpec,
    VendorContext,
)

__all__ = ["ACCESS", "KeylessAccess"]

USER = "keyless_user"
PAGE = 100
"""The documented maximum page size of a list."""


def _user_id(text: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise ValueError("must be a Keyless user id (a UUID)") from None


class KeylessAccess(AccessTranslation):
    identities: Sequence[OptionSpec] = (
        OptionSpec(USER, "the holder's Keyless user id (permissions are given to it)",
                   metavar="UUID", parse=_user_id),
    )  # fmt: skip
    lead = dt.timedelta(days=2)

    async def constraints(self, ctx: VendorContext, lock_id: str) -> AccessConstraints:
        from blelock.vendors.keyless.models import KeylessLimits

        validity = KeylessLimits.OPERATING_KEY_VALIDITY_DEFAULT
        return AccessConstraints(
            vendor="keyless",
            lock_id=lock_id,
            credential="permission",
            identity=USER,
            enforces_period=True,
            needs_end=True,
            weekly_windows=True,
            takes_effect="when the holder's phone next downloads its operating keys",
            revocation=f"operating keys already downloaded open until they expire (at most "
            f"{validity.days} days after download, never past the permission's end)",
            native="one OPEN permission (SINGLE_INTERVAL, UTC) per opening window, made "
            f"{self.lead.days} days ahead; one for the whole period without windows",
        )

    def items(self, target: Target, span_from: dt.datetime, span_to: dt.datetime) -> list[Item]:
        user = target.holder.identities[USER]
        items = []
        for start, end in target.schedule.openings(span_from, span_to):
            if end.year == dt.MAXYEAR:  # an open end: the rules give a permission an end
                continue
            native = {
                "user": user,
                "lock": target.lock.lock_id,
                "operation": "OPEN",
                "start": start.isoformat(),
                "end": end.isoformat(),
            }
            key = f"permission {start.isoformat()}/{end.isoformat()}"
            items.append(Item(key, start, end, "vendor", native))
        return items

    @contextlib.asynccontextmanager
    async def session(self, ctx: VendorContext) -> AsyncIterator[AccessSession]:
        from blelock.vendors.keyless.cloud import KeylessCloud

        async with KeylessCloud.from_settings(ctx.settings, clock=ctx.clock) as cloud:
            yield _Session(cloud)


class _Session:
    def __init__(self, cloud: object) -> None:
        from blelock.vendors.keyless.cloud import KeylessCloud

        assert isinstance(cloud, KeylessCloud)
        self._cloud = cloud

    async def find(self, target: Target, item: Item, taken: frozenset[str]) -> str | None:
        native = item.native
        start = dt.datetime.fromisoformat(str(native["start"]))
        end = dt.datetime.fromisoformat(str(native["end"]))
        async for permission in self._cloud.permissions(limit=PAGE):
            if (
                permission.id not in taken
                and permission.user_id == native["user"]
                and permission.locking_device_id == native["lock"]
                and permission.operation_type == native["operation"]
                and permission.start == start
                and permission.end == end
            ):
                return permission.id
        return None

    async def apply(self, target: Target, item: Item) -> Applied:
        from blelock.vendors.keyless.models import OperationType

        native = item.native
        permission_id = await self._cloud.grant_permission(
            str(native["user"]),
            str(native["lock"]),
            OperationType(str(native["operation"])),
            dt.datetime.fromisoformat(str(native["start"])),
            dt.datetime.fromisoformat(str(native["end"])),
        )
        return Applied(permission_id)

    async def confirm(self, target: Target, item: Item, ref: str) -> str | None:
        return ref  # the platform answers a create once it holds the permission

    async def revoke(self, target: Target, item: Item, ref: str | None) -> None:
        if ref is None:
            return
        try:
            await self._cloud.revoke_permission(ref)
        except CloudRejected as exc:
            if exc.status != 404:  # gone already (revoked, or purged after its end)
                raise


ACCESS = KeylessAccess()
