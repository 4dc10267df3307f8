"""The Nuki plugin: Smart Locks found by their advert (an iBeacon under the keyturner
service; pairing mode and a pending state change in it), paired over the public Bluetooth
API, opened (unlock, lock, unlatch, lock 'n' go) with the shared key pairing agreed, their
log entries read over Bluetooth and kept here (Nuki's cloud gets a lock's log through Nuki's
own bridge, not from apps). Keypad codes and authorizations: ``blelock nuki …`` over
Bluetooth or the Nuki Web API.

Light at import time: the protocol, the jobs and the store adapter are imported when used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from blelock.errors import BlelockError
from blelock.model import Advert, KeptLog, LockState, Sighting, VisitResult, parse_mac
from blelock.vendors.base import (
    AccessTranslation,
    DemoHooks,
    DemoLocks,
    OperationRequest,
    OperationSpec,
    VendorContext,
    VendorPlugin,
)
from blelock.vendors.nuki.advert import ADVERTS
from blelock.vendors.nuki.schema import MIGRATIONS

if TYPE_CHECKING:
    from blelock.transport.scan import Found

__all__ = ["PLUGIN", "NukiPlugin"]

_ACTIONS = {"unlock": 1, "lock": 2, "unlatch": 3, "lock-n-go": 4}
_STATES = {1: LockState.LOCKED, 3: LockState.UNLOCKED, 5: LockState.UNLOCKED}


class NukiPlugin(VendorPlugin):
    name = "nuki"
    cloud_modules = ("blelock.vendors.nuki.web.client",)
    title = "Nuki"
    service_uuids = ADVERTS.service_uuids
    operations: Mapping[str, OperationSpec] = {
        "unlock": OperationSpec("unlock", "unlock (paired first: `blelock nuki pair`)"),
        "lock": OperationSpec("lock", "lock"),
        "unlatch": OperationSpec("unlatch", "unlock and pull the latch"),
        "lock-n-go": OperationSpec("lock-n-go", "unlock, then lock again after the lock's timer"),
        "set-time": OperationSpec(
            "set-time", "set the lock's clock to this machine's (needs the security PIN)"
        ),
    }
    default_operation = "unlock"
    migrations = MIGRATIONS
    cli_module = "blelock.vendors.nuki.cli"
    cli_summary = "Nuki: pair, keypad codes, authorizations, logs, the lock's clock"
    demo_locks = DemoLocks(1, "simulated Nuki Smart Locks (default 1)")

    def records_per_visit(self) -> int:
        return 0  # a lock action gives no records for any cloud (its log is read apart)

    def parse_advert(self, advert: Advert) -> Sighting | None:
        return ADVERTS.parse_advert(advert)

    def parse_lock_id(self, text: str) -> str:
        return parse_mac(text)

    async def active(self, ctx: VendorContext) -> bool:
        from blelock.vendors.nuki.jobs import nuki_store

        try:
            return bool(await (await nuki_store(ctx.store)).paired_locks())
        except BlelockError:
            return False

    async def run(self, ctx: VendorContext, lock_id: str, request: OperationRequest) -> VisitResult:
        from blelock.vendors.nuki import jobs
        from blelock.vendors.nuki.protocol import LockAction

        if request.operation == "set-time":
            before, after = await jobs.set_time(
                lock_id, ctx.settings, ctx.store, found=ctx.sighting
            )
            return VisitResult(
                lock_id,
                self.name,
                request.operation,
                online=False,
                logs_kept=0,
                details={
                    "clock_was": None if before is None else before.isoformat(),
                    "clock_now": after.isoformat(),
                },
            )
        action = LockAction(_ACTIONS[request.operation])
        outcome = await jobs.lock_action(
            lock_id, ctx.settings, ctx.store, action, found=ctx.sighting
        )
        final = outcome.states[-1] if outcome.states else None
        return VisitResult(
            lock_id,
            self.name,
            request.operation,
            online=False,  # nothing of Nuki's cloud is needed: the shared key opens it
            logs_kept=0,
            details={
                "accepted": outcome.accepted,
                "lock_state": None if final is None else final.state_name(),
                "battery_percent": None if final is None else final.battery_percent,
                "battery_critical": None if final is None else final.critical_battery,
                "states_seen": len(outcome.states),
            },
        )

    async def demo_before_opening(
        self, ctx: VendorContext, locks: Sequence[Found], hooks: DemoHooks
    ) -> Sequence[VisitResult]:
        """Pair with each lock (the simulator starts them in pairing mode), give it its
        security PIN, and add a keypad code for a cleaner: Mon-Fri 09:00-17:00 lock time, for
        a week from now."""
        import datetime as dt
        import secrets

        from blelock.vendors.nuki import access, jobs
        from blelock.vendors.nuki.protocol import TimeLimit

        pins = hooks.setup.get("pins", {})
        assert isinstance(pins, dict)
        done: list[VisitResult] = []
        now = ctx.clock.now_utc().replace(microsecond=0)
        window = TimeLimit(now, now + dt.timedelta(days=7), 0x7C, dt.time(9), dt.time(17))
        for found in locks:
            lock_id = found.sighting.lock_id
            pin = pins.get(lock_id)
            paired = await jobs.pair(lock_id, ctx.settings, ctx.store, found=found)
            done.append(self._result(lock_id, "pair", auth_id=paired.credentials.auth_id))
            if pin is None:
                continue
            await jobs.set_pin(lock_id, ctx.settings, ctx.store, int(pin))
            code = "".join(secrets.choice("3456789") for _ in range(6))  # never shown
            code_id = await access.add_code(
                lock_id, ctx.settings, ctx.store, code, "cleaner", window
            )
            done.append(
                self._result(
                    lock_id, "add keypad code", code_id=code_id, window="Mon-Fri 09:00-17:00"
                )
            )
        return done

    async def demo_after_opening(
        self, ctx: VendorContext, locks: Sequence[Found], hooks: DemoHooks
    ) -> Sequence[VisitResult]:
        """Read each lock's log into the store (``blelock logs`` shows it)."""
        from blelock.vendors.nuki import jobs

        done = []
        for found in locks:
            lock_id = found.sighting.lock_id
            kept, total = await jobs.read_logs(lock_id, ctx.settings, ctx.store, found=found)
            done.append(self._result(lock_id, "read log", kept_here=kept, on_the_lock=total))
        return done

    def _result(self, lock_id: str, operation: str, **details: str | int) -> VisitResult:
        return VisitResult(
            lock_id, self.name, operation, online=False, logs_kept=0, details=details
        )

    async def kept_logs(self, ctx: VendorContext, limit: int) -> tuple[int, Sequence[KeptLog]]:
        from blelock.vendors.nuki.jobs import nuki_store

        try:
            keys = await nuki_store(ctx.store)
        except BlelockError:
            return 0, ()
        count, kept = await keys.log(limit=limit)
        return count, [
            KeptLog(
                self.name,
                k.lock_id,
                k.entry.timestamp,
                f"#{k.entry.index} {k.entry.name}: {k.entry.describe()}",
            )
            for k in kept
        ]

    def access(self) -> AccessTranslation:
        from blelock.vendors.nuki.grants import ACCESS

        return ACCESS


PLUGIN = NukiPlugin()
