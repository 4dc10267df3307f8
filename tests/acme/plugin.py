"""The Acme plugin: only blelock's public seam (``blelock.vendors.base``) and shared floors."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator, Mapping, Sequence

from blelock.errors import LockRefused, UsageError
from blelock.model import Advert, KeyInfo, LockState, LogRecord, Sighting, VisitResult
from blelock.transport.ble import open_link
from blelock.transport.scan import sighted
from blelock.vendors.base import (
    OperationRequest,
    OperationSpec,
    OptionValue,
    Uploader,
    VendorContext,
    VendorPlugin,
)

SERVICE_UUID = "ac3e0001-0000-4000-8000-00000000ac3e"
WRITE_UUID = "ac3e0002-0000-4000-8000-00000000ac3e"
NOTIFY_UUID = "ac3e0003-0000-4000-8000-00000000ac3e"
COMPANY_ID = 0xAC3E
_ID = re.compile(r"ACME-[0-9]{4}")

UPLOADED: list[LogRecord] = []
"""Acme's "cloud": what its uploader was given (a test reads it)."""


class _Cloud:
    async def upload(
        self, records: Sequence[LogRecord], *, idempotency_key: str | None = None
    ) -> None:
        UPLOADED.extend(records)


class AcmePlugin(VendorPlugin):
    name = "acme"
    title = "Acme"
    service_uuids = (SERVICE_UUID,)
    migrations = (
        "CREATE TABLE acme_keys (lock_id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);",
    )
    operations: Mapping[str, OperationSpec] = {"open": OperationSpec("open", "open the lock")}
    default_operation = "open"

    def parse_advert(self, advert: Advert) -> Sighting | None:
        payload = advert.manufacturer_data.get(COMPANY_ID)
        if payload is None or not _ID.fullmatch(payload.decode(errors="replace")):
            return None
        return Sighting(
            self.name, payload.decode(), advert.address, advert.local_name or "", "A1", None,
            LockState.UNKNOWN, advert.rssi,
        )  # fmt: skip

    def parse_lock_id(self, text: str) -> str:
        if not _ID.fullmatch(text.strip().upper()):
            raise UsageError(f"{text!r} is not an Acme lock id (ACME-nnnn)")
        return text.strip().upper()

    async def active(self, ctx: VendorContext) -> bool:
        return True

    def uploads_configured(self, settings: object) -> bool:
        return True

    async def run(self, ctx: VendorContext, lock_id: str, request: OperationRequest) -> VisitResult:
        found = await sighted(lock_id, ctx.settings, [self], ctx.sighting)
        timeout = ctx.settings.timeouts.gatt
        async with open_link(found.device, ctx.settings, name=found.sighting.name) as link:
            await link.subscribe(NOTIFY_UUID, timeout=timeout)
            await link.write(WRITE_UUID, b"OPEN", timeout=timeout)
            answer = await link.notification(timeout=timeout)
        if not answer.startswith(b"OPENED "):
            raise LockRefused(f"the lock answered {answer!r}", reason=answer)
        record = LogRecord(lock_id, "open", int(ctx.clock.now_utc().timestamp()), answer.hex())
        await ctx.outbox.append([record])
        return VisitResult(lock_id, self.name, request.operation, True, 1, None, {"n": 1})

    @contextlib.asynccontextmanager
    async def uploader(self, ctx: VendorContext) -> AsyncIterator[Uploader]:
        yield _Cloud()

    async def sync_keys(
        self,
        ctx: VendorContext,
        locks: Sequence[str] | None,
        options: Mapping[str, OptionValue | Sequence[str]],
    ) -> Mapping[str, int]:
        expires = int((ctx.clock.now_utc() + dt.timedelta(days=1)).timestamp())
        wanted = list(locks or ["ACME-0001"])
        await ctx.store.database.run(
            lambda c: c.executemany(
                "INSERT OR REPLACE INTO acme_keys VALUES (?, ?)", [(x, expires) for x in wanted]
            )
        )
        return {"added": len(wanted)}

    async def refresh_keys(self, ctx: VendorContext, due_within: dt.timedelta) -> bool:
        await self.sync_keys(ctx, None, {})
        return True

    async def list_keys(self, ctx: VendorContext) -> Sequence[KeyInfo]:
        rows = await ctx.store.database.run(
            lambda c: c.execute("SELECT lock_id, expires_at FROM acme_keys").fetchall(),
            write=False,
        )
        return [
            KeyInfo(self.name, lock, "me", "acme key", dt.datetime.fromtimestamp(at, dt.UTC))
            for lock, at in rows
        ]


PLUGIN = AcmePlugin()
