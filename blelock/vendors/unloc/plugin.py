"""The Unloc plugin: cloud-only. No adverts (Unloc's app opens the locks; their Bluetooth
protocol is not public) and no lock operations; what it gives is key management for phones
(:attr:`phone_keys`) and its command subtree, ``blelock unloc``.

Light at import time: the client is imported when used.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from blelock.errors import UsageError
from blelock.model import PhoneKeyRequest, VisitResult, WeeklyWindow
from blelock.vendors.base import (
    AccessTranslation,
    DemoHooks,
    DemoLocks,
    Facts,
    VendorContext,
    VendorPlugin,
)

if TYPE_CHECKING:
    from blelock.transport.scan import Found

__all__ = ["PLUGIN", "UnlocPlugin"]

DEMO_PHONE = "+4799887766"


class UnlocPlugin(VendorPlugin):
    name = "unloc"
    cloud_modules = ("blelock.vendors.unloc.cloud",)
    title = "Unloc"
    cli_module = "blelock.vendors.unloc.cli"
    cli_summary = "Unloc: the project's locks, keys for phones, and the jobs that make them"
    demo_locks = DemoLocks(
        1, "locks of the simulated Unloc project, given a phone key and back (default 1)"
    )
    phone_keys = True

    def parse_lock_id(self, text: str) -> str:
        raise UsageError(
            "Unloc locks are opened with the Unloc app, not by blelock",
            hint="give a phone a key for it: `blelock unloc keys issue LOCK PHONE`",
        )

    async def active(self, ctx: VendorContext) -> bool:
        # Nothing for sync or the kiosk's upkeep to do: the keys live in Unloc's cloud, and
        # there are no records to upload.
        return False

    def check_phone_key(self, request: PhoneKeyRequest) -> None:
        from blelock.vendors.unloc.access import key_from_request

        key_from_request(request)

    async def issue_phone_key(self, ctx: VendorContext, request: PhoneKeyRequest) -> Facts:
        from blelock.vendors.unloc.access import issue_keys, key_from_request, raise_unless_made
        from blelock.vendors.unloc.cloud import UnlocCloud

        key = key_from_request(request)
        async with UnlocCloud.from_settings(ctx.settings, clock=ctx.clock) as cloud:
            ctx.progress(0, 1)
            issued = await issue_keys(cloud, [key])
            raise_unless_made(issued)
            ctx.progress(1, 1)
        made = issued.keys[0]
        return {
            "key_id": made.id,
            "key_state": made.state,
            "unloc_job": issued.job.id,
            "unloc_job_status": issued.job.status,
        }

    async def revoke_phone_keys(
        self, ctx: VendorContext, phone: str, lock_id: str | None = None
    ) -> Facts:
        from blelock.vendors.unloc.cloud import UnlocCloud

        async with UnlocCloud.from_settings(ctx.settings, clock=ctx.clock) as cloud:
            count = await cloud.revoke_keys(app_user_id=phone, lock_id=lock_id)
        return {"revoked": count}

    async def demo_after_opening(
        self, ctx: VendorContext, locks: Sequence[Found], hooks: DemoHooks
    ) -> Sequence[VisitResult]:
        """Issue a recurring key (Mon-Fri 09:00-17:00 lock-local), wait for its job, watch it
        go scheduled → active → inactive as the simulated clock moves, revoke it."""
        from blelock.vendors.unloc.access import issue_keys, raise_unless_made
        from blelock.vendors.unloc.cloud import UnlocCloud
        from blelock.vendors.unloc.models import new_key, spans_from_windows

        lock_id, zone_name = str(hooks.setup["lock_id"]), str(hooks.setup["timezone"])
        zone = await asyncio.to_thread(ZoneInfo, zone_name)  # reads the zone's file
        today = ctx.clock.now_utc().astimezone(zone).date()
        monday = today + dt.timedelta(days=7 - today.weekday())

        def local(hour: int, minute: int = 0) -> dt.datetime:
            return dt.datetime.combine(monday, dt.time(hour, minute), zone)

        hours = tuple(WeeklyWindow(day, dt.time(9), dt.time(17)) for day in range(5))
        key = new_key(
            lockId=lock_id,
            appUserId=DEMO_PHONE,
            start=local(9),
            end=local(9) + dt.timedelta(days=30),
            recurrence=spans_from_windows(hours),
        )
        async with UnlocCloud.from_settings(ctx.settings, clock=ctx.clock) as cloud:
            await hooks.set_cloud_time(local(8))
            hooks.say(
                f"Unloc: a key for {DEMO_PHONE} on lock {lock_id}, Mon-Fri 09:00-17:00 "
                f"{zone_name}, from {local(9):%a %d %b %H:%M}"
            )
            issued = await issue_keys(
                cloud,
                [key],
                on_poll=lambda job: hooks.say(f"Unloc: job {job.id[:8]}… {job.status}"),
            )
            raise_unless_made(issued)
            made = issued.keys[0]
            hooks.say(f"Unloc: {local(8):%a %H:%M} key {made.id[:8]}… is {made.state}")
            for hour, minute in ((9, 30), (17, 30)):
                await hooks.set_cloud_time(local(hour, minute))
                state = (await cloud.key(made.id)).state
                hooks.say(f"Unloc: {local(hour, minute):%a %H:%M} key {made.id[:8]}… is {state}")
            outcome = await cloud.revoke_key(made.id)
            state = (await cloud.key(made.id)).state
            hooks.say(f"Unloc: revoke → {outcome.value}; the key is {state}")
        return ()

    def access(self) -> AccessTranslation:
        from blelock.vendors.unloc.grants import ACCESS

        return ACCESS


PLUGIN = UnlocPlugin()
