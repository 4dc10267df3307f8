"""The ASSA ABLOY Keyless plugin: padlocks found by the stand-in advert (their lockingDeviceId
in it), opened with platform-signed operating keys (or offline keys synced earlier), their
audit entries and re-keying requests uploaded through the operating device's platform API.

Light at import time: the stand-in protocol, the platform client and the store adapter are
imported when used.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING

from blelock.errors import BlelockError, UsageError
from blelock.model import Advert, KeyInfo, Sighting, VisitResult, refresh_due
from blelock.vendors.base import (
    AccessTranslation,
    DemoLocks,
    OperationRequest,
    OperationSpec,
    OptionSpec,
    OptionValue,
    Uploader,
    VendorContext,
    VendorPlugin,
)
from blelock.vendors.keyless.advert import ADVERTS

if TYPE_CHECKING:
    from blelock.config import Settings

__all__ = ["PLUGIN", "KeylessPlugin"]


class KeylessPlugin(VendorPlugin):
    name = "keyless"
    cloud_modules = ("blelock.vendors.keyless.cloud",)
    title = "Keyless"
    service_uuids = ADVERTS.service_uuids
    operations: Mapping[str, OperationSpec] = {
        "open": OperationSpec(
            "open",
            "open (with keys synced earlier when the platform is unreachable)",
            options=(
                OptionSpec("rekey", "make the lock start re-keying its certificate", flag=True),
            ),
            # The sync before the visit is cloud work: the kiosk's slot comes after it.
            slot_when_needed=True,
        ),
        "set-time": OperationSpec(
            "set-time",
            "set the lock's clock to this machine's (needs a key allowing UPDATE_TIME)",
            modes=frozenset({"auto"}),
            slot_when_needed=True,
        ),
    }
    default_operation = "open"
    cli_module = "blelock.vendors.keyless.cli"
    cli_summary = "Keyless: activate this device, set a lock's clock, administer the platform"
    demo_locks = DemoLocks(2, "simulated Keyless padlocks (default 2)")

    def records_per_visit(self) -> int:
        from blelock.vendors.keyless.protocol import LIMITS

        return LIMITS.audit_capacity + 1  # the whole audit log, and a re-keying request

    def parse_advert(self, advert: Advert) -> Sighting | None:
        return ADVERTS.parse_advert(advert)

    def parse_lock_id(self, text: str) -> str:
        try:
            return str(uuid.UUID(text.strip()))
        except ValueError:
            raise UsageError(f"{text!r} is not a Keyless lockingDeviceId (a UUID)") from None

    async def active(self, ctx: VendorContext) -> bool:
        from blelock.vendors.keyless.jobs import keyless_store

        try:
            return await (await keyless_store(ctx.store)).device() is not None
        except BlelockError:
            return False  # no data key yet: nothing was activated with it

    def uploads_configured(self, settings: Settings) -> bool:
        return True  # the operating device's own credentials, sealed in the store

    async def run(self, ctx: VendorContext, lock_id: str, request: OperationRequest) -> VisitResult:
        from blelock.vendors.keyless import jobs

        if request.operation == "set-time":
            outcome, online = await jobs.set_lock_time(
                lock_id,
                ctx.settings,
                ctx.store,
                found=ctx.sighting,
                radio_needed=ctx.radio_needed,
                radio_done=ctx.radio_done,
                clients=ctx.clients,
            )
        else:
            outcome, online = await jobs.open_lock(
                lock_id,
                ctx.settings,
                ctx.store,
                mode=request.mode,
                rekey=bool(request.options.get("rekey", False)),
                found=ctx.sighting,
                radio_needed=ctx.radio_needed,
                radio_done=ctx.radio_done,
                clients=ctx.clients,
            )
        details: dict[str, str | int | float | bool | None] = {
            "key_id": outcome.key_id,
            "audit_entries_kept": outcome.audit_collected,
            "certificate_installed": outcome.certificate_installed is not None,
            "rekeying_started": outcome.csr is not None,
        }
        if outcome.time_set is not None:
            before, after = outcome.time_set
            details |= {"clock_was": before.isoformat(), "clock_now": after.isoformat()}
        return VisitResult(
            lock_id,
            self.name,
            request.operation,
            online=online,
            logs_kept=outcome.audit_collected,
            details=details,
        )

    @contextlib.asynccontextmanager
    async def uploader(self, ctx: VendorContext) -> AsyncIterator[Uploader]:
        from blelock.vendors.keyless.jobs import KeylessUploader

        async with KeylessUploader.open(ctx.settings, ctx.store, clients=ctx.clients) as uploader:
            yield uploader

    async def sync_keys(
        self,
        ctx: VendorContext,
        locks: Sequence[str] | None,
        options: Mapping[str, OptionValue | Sequence[str]],
    ) -> Mapping[str, int]:
        from blelock.vendors.keyless.jobs import sync_keyless

        report = await sync_keyless(ctx.settings, ctx.store, clients=ctx.clients)
        return {
            "operating keys": report.operating_keys,
            "offline keys": report.offline_keys,
            "dropped": report.dropped,
            "certificates pending": report.certificates_pending,
        }

    async def refresh_keys(self, ctx: VendorContext, due_within: dt.timedelta) -> bool:
        from blelock.vendors.keyless.jobs import keyless_store, sync_keyless

        keys = await (await keyless_store(ctx.store)).list_keys()
        now = ctx.clock.now_utc()
        # The platform issues UPDATE_TIME grants for minutes: due at half their life.
        if keys and not any(
            refresh_due(key.not_after, now, due_within, issued_at=key.not_before) for key in keys
        ):
            return False
        await sync_keyless(ctx.settings, ctx.store, clients=ctx.clients)
        return True

    async def enroll(self, ctx: VendorContext, invitation: str) -> str:
        from blelock.vendors.keyless.jobs import activate

        return await activate(ctx.settings, ctx.store, invitation)

    async def list_keys(self, ctx: VendorContext) -> Sequence[KeyInfo]:
        from blelock.vendors.keyless.jobs import keyless_store

        store = await keyless_store(ctx.store)
        if await store.device() is None:
            return []
        return [
            KeyInfo(
                vendor=self.name,
                lock_id=key.lock_id,
                holder=key.key_id,
                kind=f"{key.kind.lower()} key"
                + (" (alternative)" if key.role != "primary" else ""),
                valid_from=key.not_before,
                expires_at=key.not_after,
            )
            for key in await store.list_keys()
        ]

    def access(self) -> AccessTranslation:
        from blelock.vendors.keyless.grants import ACCESS

        return ACCESS


PLUGIN = KeylessPlugin()
