"""The Nokē plugin: padlocks found by their advert, opened with the Core API's command strings
or a cached offline key, their records uploaded with the mobile key, and firmware updates
through the cloud's fwupdate command and Nordic's Secure DFU.

Light at import time: the visit, the cloud client and the key cache are imported when used.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING

from blelock.errors import UsageError
from blelock.model import (
    Advert,
    KeyInfo,
    MacAddress,
    Sighting,
    VisitResult,
    parse_mac,
    refresh_due,
)
from blelock.vendors.base import (
    AccessTranslation,
    OperationRequest,
    OperationSpec,
    OptionSpec,
    OptionValue,
    Uploader,
    VendorContext,
    VendorPlugin,
)
from blelock.vendors.noke.schema import MIGRATIONS

if TYPE_CHECKING:
    from blelock.config import Settings

__all__ = ["PLUGIN", "NokePlugin"]

SERVICE_UUID = "1bc50001-0200-d29e-e511-446c609db825"
"""Nokē's GATT service, advertised by every Nokē lock (noke.md §1); the protocol module's
constant, repeated here so that scanning imports no protocol code (a test checks they agree)."""
FIRMWARE_BUDGET_S = 20 * 60.0
"""A whole firmware update: a 200 KB image at a slow link's ~1 KB/s, plus reconnects."""


def _prn(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 0xFFFF:
        raise ValueError("must be between 0 and 65535")
    return value


TRACKING_KEY = OptionSpec(
    "tracking_key",
    "a string the cloud attaches to this activity (e.g. a technician's id)",
    metavar="K",
)
PRN = OptionSpec(
    "prn",
    "ask the bootloader for a receipt every N packets (0: none; default 0)",
    metavar="N",
    parse=_prn,
)


class NokePlugin(VendorPlugin):
    name = "noke"
    cloud_modules = ("blelock.vendors.noke.cloud",)
    title = "Nokē"
    migrations = MIGRATIONS
    service_uuids = (SERVICE_UUID,)
    operations: Mapping[str, OperationSpec] = {
        "unlock": OperationSpec(
            "unlock",
            "unlock (with a cached offline key when the cloud is unreachable)",
            options=(TRACKING_KEY,),
        ),
        "unshackle": OperationSpec(
            "unshackle",
            "free the shackle of an HD padlock (needs the cloud)",
            modes=frozenset({"auto", "online"}),
            options=(TRACKING_KEY,),
        ),
        "firmware-update": OperationSpec(
            "firmware-update",
            "put the lock into its bootloader and send it a firmware package (resumable)",
            budget_s=FIRMWARE_BUDGET_S,
            long_running=True,
            modes=frozenset({"auto", "online"}),
            options=(PRN,),
            takes_package=True,
            finds_lock_first=False,  # the lock or its bootloader, whichever is heard
        ),
    }
    default_operation = "unlock"
    cli_module = "blelock.vendors.noke.cli"
    cli_summary = "Nokē: quick clicks, activity, lock info, offline-key revocation"
    api_module = "blelock.vendors.noke.api"
    sync_options = (
        OptionSpec(
            "tracking_key",
            "ask the Nokē cloud to issue offline keys for this tracking key (needs --locks); "
            "repeatable",
            metavar="K",
            repeatable=True,
        ),
    )

    def parse_advert(self, advert: Advert) -> Sighting | None:
        from blelock.vendors.noke.advert import noke_sighting

        return noke_sighting(
            address=advert.address,
            local_name=advert.local_name,
            manufacturer_data=advert.manufacturer_data,
            service_uuids=advert.service_uuids,
            rssi=advert.rssi,
        )

    def parse_lock_id(self, text: str) -> str:
        return parse_mac(text)

    async def active(self, ctx: VendorContext) -> bool:
        from blelock.vendors.noke.settings import noke_settings

        section = noke_settings(ctx.settings)
        return section.api_key is not None or section.mobile_key is not None

    def uploads_configured(self, settings: Settings) -> bool:
        from blelock.vendors.noke.settings import noke_settings

        section = noke_settings(settings)
        return section.api_key is not None and section.mobile_key is not None

    async def run(self, ctx: VendorContext, lock_id: str, request: OperationRequest) -> VisitResult:
        from blelock.vendors.noke import jobs
        from blelock.vendors.noke.values import Action

        mac = MacAddress(lock_id)
        if request.operation == "firmware-update":
            package = request.package
            if package is None:
                raise UsageError("a firmware update needs a package")
            ctx.progress(0, package.size)
            prn = request.options.get("prn", 0)
            done = await jobs.update(
                ctx,
                mac,
                package,
                prn=int(prn),
                on_progress=lambda confirmed: ctx.progress(confirmed, package.size),
            )
            return VisitResult(
                lock_id,
                self.name,
                request.operation,
                online=True,
                logs_kept=0,
                details={
                    "version": done.version,
                    "bytes": done.size,
                    "bytes_sent": done.bytes_sent,
                    "connections": done.connections,
                },
            )
        action = Action.UNSHACKLE if request.operation == "unshackle" else Action.UNLOCK
        tracking_key = request.options.get("tracking_key")
        outcome = await jobs.visit(
            ctx,
            mac,
            action,
            tracking_key=None if tracking_key is None else str(tracking_key),
            mode=request.mode,
        )
        return VisitResult(
            lock_id,
            self.name,
            request.operation,
            online=not outcome.offline,
            logs_kept=len(outcome.logs),
            battery_mv=outcome.battery_mv,
            logs_uploaded=outcome.drained,
            details={
                "offline": outcome.offline,
                "attempts": outcome.attempts,
                "packets_sent": outcome.packets_sent,
                "uploaded": outcome.uploaded,
            },
        )

    @contextlib.asynccontextmanager
    async def uploader(self, ctx: VendorContext) -> AsyncIterator[Uploader]:
        from blelock.vendors.noke.jobs import cloud_client

        async with cloud_client(ctx) as cloud:
            yield cloud

    def check_sync(
        self, locks: Sequence[str] | None, options: Mapping[str, OptionValue | Sequence[str]]
    ) -> None:
        if options.get("tracking_key") and not locks:
            raise UsageError(
                "--tracking-key asks the cloud to issue keys, and needs the locks to issue "
                "them for",
                hint="name them with --locks",
            )

    async def sync_keys(
        self,
        ctx: VendorContext,
        locks: Sequence[str] | None,
        options: Mapping[str, OptionValue | Sequence[str]],
    ) -> Mapping[str, int]:
        from blelock.vendors.noke import jobs
        from blelock.vendors.noke.settings import noke_settings

        self.check_sync(locks, options)
        issue_for = options.get("tracking_key") or ()
        assert not isinstance(issue_for, str | int | bool)
        macs = None if locks is None else [MacAddress(lock) for lock in locks]
        # No tracking key asked for: the configured default one gets keys on the locks synced
        # (so a plain `blelock sync` leaves the technician keys), up to a bounded count.
        section = noke_settings(ctx.settings)
        default_issue = None
        if not issue_for and section.default_tracking_key is not None:
            default_issue = (section.default_tracking_key, section.default_key_locks)
        async with jobs.cloud_client(ctx) as cloud:
            summary = await jobs.refresh_offline_keys(
                cloud,
                jobs.key_store(ctx),
                macs=macs,
                issue_for=list(issue_for),
                default_issue=default_issue,
            )
        return {
            "added": summary.added,
            "refreshed": summary.refreshed,
            "revoked": summary.revoked,
            "unchanged": summary.unchanged,
        }

    async def refresh_keys(self, ctx: VendorContext, due_within: dt.timedelta) -> bool:
        from blelock.vendors.noke import jobs
        from blelock.vendors.noke.settings import noke_settings

        if noke_settings(ctx.settings).api_key is None:
            return False
        now = ctx.clock.now_utc()
        keys = await jobs.key_store(ctx).list_keys()
        due = sorted(
            {
                k.lock_id
                for k in keys
                if k.revoked_at is None and refresh_due(k.expires_at, now, due_within)
            }
        )
        if not due:
            return False
        async with jobs.cloud_client(ctx) as cloud:
            await jobs.refresh_offline_keys(cloud, jobs.key_store(ctx), macs=due)
        return True

    async def list_keys(self, ctx: VendorContext) -> Sequence[KeyInfo]:
        from blelock.vendors.noke import jobs

        return [
            KeyInfo(
                vendor=self.name,
                lock_id=key.lock_id,
                holder=key.tracking_key,
                kind="offline key",
                fetched_at=key.fetched_at,
                expires_at=key.expires_at,
                revoked_at=key.revoked_at,
            )
            for key in await jobs.key_store(ctx).list_keys()
        ]

    def access(self) -> AccessTranslation:
        from blelock.vendors.noke.grants import ACCESS

        return ACCESS


PLUGIN = NokePlugin()
