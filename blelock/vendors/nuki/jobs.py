"""Nuki jobs composed from Settings: pair with a lock, run commands on it over Bluetooth
(lock actions, keypad codes, authorizations, log entries, its clock), with what the store
keeps for it. One visit is one connection: scan (unless a sighting is at hand), connect,
subscribe, drive the sans-I/O exchange, disconnect."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from blelock.clock import SystemClock
from blelock.config import Settings
from blelock.errors import ConfigError, LockRefused, UsageError, lock_context
from blelock.store import Store
from blelock.transport.ble import open_link
from blelock.transport.drive import deadline, drive
from blelock.transport.scan import Found, FoundLater, sighted
from blelock.vendors.nuki import protocol as nuki
from blelock.vendors.nuki.advert import ADVERTS
from blelock.vendors.nuki.settings import nuki_settings
from blelock.vendors.nuki.store import NukiStore, PairedLock

__all__ = [
    "ActionOutcome",
    "LockInfo",
    "enable_logging",
    "lock_action",
    "lock_info",
    "nuki_store",
    "pair",
    "read_logs",
    "run_commands",
    "security_pin",
    "set_pin",
    "set_time",
]

E = nuki.ErrorCode
REFUSAL_HINTS: Mapping[int, str] = {
    E.P_NOT_PAIRING: "put the lock in pairing mode (hold its button for 5 seconds), then pair",
    E.P_MAX_USER: "the lock holds 200 authorizations: remove one with `blelock nuki auths remove`",
    E.P_BAD_AUTHENTICATOR: "pairing was interrupted or tampered with; pair again",
    E.NOT_AUTHORIZED: "the lock does not know this companion (any more): pair it again with "
    "`blelock nuki pair`",
    E.BAD_PIN: "the security PIN is wrong: give the right one with `blelock nuki set-pin`",
    E.TOO_MANY_PIN_ATTEMPTS: "too many wrong PINs: the lock refuses PIN commands for a while; "
    "wait, then give the right one",
    E.DISABLED: "this companion's authorization was disabled on the lock; ask its owner",
    E.TIME_NOT_ALLOWED: "this authorization's time window does not allow it now (the lock's "
    "own clock and timezone decide; `blelock nuki set-time` if its clock is off)",
    E.TOO_MANY_ENTRIES: "the lock holds 100 keypad codes: remove one first",
    E.CODE_ALREADY_EXISTS: "that code is already on the lock: choose another",
    E.CODE_INVALID: "a keypad code is 6 digits 1-9, not starting with 12",
    E.BAD_NONCE: "the lock saw a stale or repeated challenge; try again",
    E.MOTOR_BLOCKED: "the lock's motor is blocked: check the door and the bolt",
}
_DEFAULT_HINT = "try again; if it persists, check the lock in the Nuki app"
ULTRA = "Smart Lock Ultra"
"""The sighting's hardware for an Ultra (it advertises the Ultra's pairing service)."""


async def nuki_store(store: Store) -> NukiStore:
    data_key = await store.data_key()
    return store.adapter(
        "nuki.store", lambda opened: NukiStore(opened.database, data_key, SystemClock())
    )


def _refused(lock_id: str, step: str, refusal: nuki.Refused) -> LockRefused:
    error = LockRefused(
        f"the lock refused: {refusal.reason()}",
        reason=refusal.reason(),
        hint=REFUSAL_HINTS.get(refusal.code, _DEFAULT_HINT),
    )
    error.lock_id, error.step = lock_id, step
    return error


def checked_pin(pin: int, *, ultra: bool) -> int:
    """``pin`` if it fits the lock (u16 on Smart Lock 1-4, 6 digits on the Ultra); a usage
    error naming the rule (never the PIN) if not, before anything is sent."""
    try:
        nuki.encode_pin(pin, ultra=ultra)
    except ValueError as exc:
        raise UsageError(str(exc), hint="give the lock's own security PIN") from None
    return pin


async def pair(
    lock_id: str,
    settings: Settings,
    store: Store,
    *,
    security_pin: int | None = None,
    found: Found | FoundLater | None = None,
) -> PairedLock:
    """Pair with the lock (in pairing mode) as this companion: the shared key it agrees is
    sealed in the store. An Ultra needs its 6-digit security PIN, kept sealed too."""
    section = nuki_settings(settings)
    found = await sighted(lock_id, settings, [ADVERTS], found)
    ultra = found.sighting.hardware == ULTRA
    if ultra and security_pin is None:
        raise UsageError(
            "pairing a Smart Lock Ultra needs its 6-digit security PIN",
            hint="give it on standard input or at the prompt",
        )
    if security_pin is not None:
        checked_pin(security_pin, ultra=ultra)
    characteristic = nuki.ULTRA_PAIRING_CHAR if ultra else nuki.PAIRING_CHAR
    keypair = nuki.generate_keypair()
    timeouts = settings.timeouts
    with lock_context(lock_id, "pair"):
        async with (
            deadline(timeouts.visit, "pairing"),
            open_link(found.device, settings, name=found.sighting.name) as link,
        ):
            await link.subscribe(characteristic, timeout=timeouts.gatt)
            exchange = nuki.PairingExchange(
                characteristic,
                keypair,
                app_id=section.app_id,
                name=section.app_name,
                ultra=ultra,
                security_pin=security_pin,
                chunk=link.info.mtu - 3,
            )
            await drive(
                link, exchange, write_timeout=timeouts.command, answer_timeout=timeouts.command
            )
    if exchange.refused is not None:
        raise _refused(lock_id, "pair", exchange.refused)
    if exchange.result is None:
        raise LockRefused("pairing ended without an authorization", reason="incomplete")
    paired = PairedLock(
        lock_id,
        found.sighting.name,
        exchange.result.credentials,
        exchange.result.lock_public_key,
        SystemClock().now_utc(),
    )
    keys = await nuki_store(store)
    await keys.save_pairing(lock_id, found.sighting.name, paired)
    if security_pin is not None:
        await keys.save_pin(lock_id, security_pin)
    return paired


async def credentials(lock_id: str, store: Store) -> nuki.Credentials:
    paired = await (await nuki_store(store)).paired(lock_id)
    if paired is None:
        raise ConfigError(
            f"lock {lock_id} is not paired with this companion",
            hint=f"put it in pairing mode and run `blelock nuki pair {lock_id}`",
        )
    return paired.credentials


async def security_pin(lock_id: str, store: Store) -> int:
    pin = await (await nuki_store(store)).pin(lock_id)
    if pin is None:
        raise ConfigError(
            f"no security PIN is kept for lock {lock_id}",
            hint=f"give it with `blelock nuki set-pin {lock_id}` (read from standard input or a "
            "prompt, never an argument)",
        )
    return pin


async def run_commands(
    lock_id: str,
    settings: Settings,
    store: Store,
    requests: Sequence[nuki.Request],
    *,
    step: str,
    found: Found | FoundLater | None = None,
    creds: nuki.Credentials | None = None,
) -> list[nuki.Message]:
    """Send the requests on one connection; every answer the lock gave (LockRefused when it
    answered ERROR_REPORT)."""
    creds = creds or await credentials(lock_id, store)
    found = await sighted(lock_id, settings, [ADVERTS], found)
    timeouts = settings.timeouts
    answers: list[nuki.Message] = []

    def keep(event: nuki.Answer | nuki.Refused) -> None:
        if isinstance(event, nuki.Answer):
            answers.append(event.message)

    with lock_context(lock_id, step):
        async with (
            deadline(timeouts.visit, step),
            open_link(found.device, settings, name=found.sighting.name) as link,
        ):
            await link.subscribe(nuki.USDIO_CHAR, timeout=timeouts.gatt)
            exchange = nuki.CommandExchange(
                nuki.USDIO_CHAR, creds, requests, chunk=link.info.mtu - 3
            )
            await drive(
                link,
                exchange,
                write_timeout=timeouts.command,
                answer_timeout=timeouts.command,
                handle=keep,
            )
    if exchange.refused is not None:
        raise _refused(lock_id, step, exchange.refused)
    return answers


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    action: nuki.LockAction
    states: list[nuki.KeyturnerStates]
    """Every KEYTURNER_STATES the lock sent between ACCEPTED and COMPLETE."""
    accepted: bool


async def lock_action(
    lock_id: str,
    settings: Settings,
    store: Store,
    action: nuki.LockAction,
    *,
    found: Found | FoundLater | None = None,
) -> ActionOutcome:
    creds = await credentials(lock_id, store)
    request = nuki.lock_action(action, creds.app_id)
    answers = await run_commands(
        lock_id, settings, store, [request], step=action.name.lower(), found=found, creds=creds
    )
    statuses = [m.payload[:1] for m in answers if m.command == nuki.Command.STATUS]
    states = [
        nuki.KeyturnerStates.decode(m.payload)
        for m in answers
        if m.command == nuki.Command.KEYTURNER_STATES
    ]
    accepted = statuses[:1] == [bytes([nuki.Status.ACCEPTED])]
    return ActionOutcome(action, states, accepted)


async def set_pin(lock_id: str, settings: Settings, store: Store, pin: int) -> None:
    """Check ``pin`` against the lock, then keep it sealed (a wrong one is never kept)."""
    creds = await credentials(lock_id, store)
    request = nuki.verify_security_pin(checked_pin(pin, ultra=creds.ultra), ultra=creds.ultra)
    await run_commands(lock_id, settings, store, [request], step="verify PIN", creds=creds)
    await (await nuki_store(store)).save_pin(lock_id, pin)


async def set_time(
    lock_id: str, settings: Settings, store: Store, *, found: Found | FoundLater | None = None
) -> tuple[dt.datetime | None, dt.datetime]:
    """Set the lock's clock to this machine's (UTC); (the lock's clock before, after)."""
    creds = await credentials(lock_id, store)
    pin = await security_pin(lock_id, store)
    # The time is taken once the lock is heard: the wait for its advert must not age it.
    found = await sighted(lock_id, settings, [ADVERTS], found)
    now = SystemClock().now_utc().replace(microsecond=0)
    answers = await run_commands(
        lock_id,
        settings,
        store,
        [nuki.keyturner_states(), nuki.update_time(now, pin, ultra=creds.ultra)],
        step="set time",
        found=found,
        creds=creds,
    )
    before = next(
        nuki.KeyturnerStates.decode(m.payload).current_time
        for m in answers
        if m.command == nuki.Command.KEYTURNER_STATES
    )
    return before, now


@dataclass(frozen=True, slots=True)
class LockInfo:
    states: nuki.KeyturnerStates
    battery: nuki.BatteryReport
    config: nuki.LockConfig


async def lock_info(lock_id: str, settings: Settings, store: Store) -> LockInfo:
    """The lock's keyturner states, battery report and config, on one connection."""
    answers = await run_commands(
        lock_id,
        settings,
        store,
        [nuki.keyturner_states(), nuki.battery_report(), nuki.read_config()],
        step="read the lock's state",
    )
    by_command = {m.command: m.payload for m in answers}
    try:
        return LockInfo(
            nuki.KeyturnerStates.decode(by_command[nuki.Command.KEYTURNER_STATES]),
            nuki.BatteryReport.decode(by_command[nuki.Command.BATTERY_REPORT]),
            nuki.LockConfig.decode(by_command[nuki.Command.CONFIG]),
        )
    except KeyError as missing:
        raise LockRefused(
            f"the lock did not answer {missing.args[0]:#06x}", reason="incomplete"
        ) from None


async def enable_logging(lock_id: str, settings: Settings, store: Store, enabled: bool) -> None:
    creds = await credentials(lock_id, store)
    pin = await security_pin(lock_id, store)
    request = nuki.enable_logging(enabled, pin, ultra=creds.ultra)
    await run_commands(lock_id, settings, store, [request], step="switch logging", creds=creds)


LOG_BATCH = 100
"""Entries asked for per request (the lock keeps its last 1000)."""


async def read_logs(
    lock_id: str, settings: Settings, store: Store, *, found: Found | FoundLater | None = None
) -> tuple[int, int]:
    """Read the lock's log entries after the last one kept, and keep them; (entries new to
    the store, entries the lock holds)."""
    creds = await credentials(lock_id, store)
    pin = await security_pin(lock_id, store)
    keys = await nuki_store(store)
    start = await keys.last_index(lock_id) + 1
    kept = total = 0
    found = await sighted(lock_id, settings, [ADVERTS], found)
    while True:
        request = nuki.request_log_entries(start, LOG_BATCH, pin, ultra=creds.ultra)
        answers = await run_commands(
            lock_id, settings, store, [request], step="read log", found=found, creds=creds
        )
        entries = [
            nuki.LogEntry.decode(m.payload) for m in answers if m.command == nuki.Command.LOG_ENTRY
        ]
        for m in answers:
            if m.command == nuki.Command.LOG_ENTRY_COUNT and len(m.payload) >= 3:
                total = struct.unpack_from("<H", m.payload, 1)[0]
        # Kept before anything else happens: what the lock gave is not asked for twice.
        kept += await keys.keep_log(lock_id, entries)
        if len(entries) < LOG_BATCH:
            return kept, total
        start = max(e.index for e in entries) + 1
