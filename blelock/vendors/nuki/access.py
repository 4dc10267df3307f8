"""Keypad codes and authorization entries over Bluetooth (the security PIN kept for the lock
opens these commands). An update always sends the whole entry: what is not being changed is
read from the lock first and sent back as it was, so changing a name never clears a time
window (the Web API's users lose theirs that way, research §D)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from blelock.config import Settings
from blelock.errors import RemoteProtocolError, UsageError
from blelock.store import Store
from blelock.vendors.nuki import protocol as nuki
from blelock.vendors.nuki.jobs import credentials, run_commands, security_pin

__all__ = [
    "CodeChange",
    "add_code",
    "list_authorizations",
    "list_codes",
    "remove_authorization",
    "remove_code",
    "update_authorization",
    "update_code",
]

T = TypeVar("T")
PAGE = 100
"""Entries asked for at once (a lock holds at most 100 codes, 200 authorizations)."""


@dataclass(frozen=True, slots=True)
class CodeChange:
    """What to change in an entry; None leaves a field as the lock has it."""

    code: str | None = None
    name: str | None = None
    enabled: bool | None = None
    limit: nuki.TimeLimit | None = None
    time_limited: bool | None = None


async def _pin_and_creds(lock_id: str, store: Store) -> tuple[int, nuki.Credentials]:
    return await security_pin(lock_id, store), await credentials(lock_id, store)


async def _paged(
    lock_id: str,
    settings: Settings,
    store: Store,
    ask: Callable[[int, int, int, bool], nuki.Request],
    answer: nuki.Command,
    decode: Callable[[bytes], T],
    step: str,
) -> list[T]:
    """Every entry of a listing, ``PAGE`` at a time, until a page comes back short."""
    pin, creds = await _pin_and_creds(lock_id, store)
    entries: list[T] = []
    while True:
        request = ask(len(entries), PAGE, pin, creds.ultra)
        answers = await run_commands(lock_id, settings, store, [request], step=step, creds=creds)
        page = [decode(m.payload) for m in answers if m.command == answer]
        entries += page
        if len(page) < PAGE:
            return entries


async def list_codes(lock_id: str, settings: Settings, store: Store) -> list[nuki.KeypadCode]:
    return await _paged(
        lock_id,
        settings,
        store,
        lambda offset, count, pin, ultra: nuki.list_keypad_codes(offset, count, pin, ultra=ultra),
        nuki.Command.KEYPAD_CODE,
        nuki.KeypadCode.decode,
        "list keypad codes",
    )


async def add_code(
    lock_id: str,
    settings: Settings,
    store: Store,
    code: str,
    name: str,
    limit: nuki.TimeLimit | None = None,
) -> int:
    """Add a keypad code (checked by the code rules before anything is sent); its code id."""
    try:
        value = nuki.check_code(code)
        nuki.check_code_name(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    pin, creds = await _pin_and_creds(lock_id, store)
    request = nuki.add_keypad_code(
        value, name, limit is not None, limit or nuki.TimeLimit(), pin, ultra=creds.ultra
    )
    answers = await run_commands(
        lock_id, settings, store, [request], step="add a keypad code", creds=creds
    )
    for message in answers:
        if message.command == nuki.Command.KEYPAD_CODE_ID and len(message.payload) >= 2:
            return int.from_bytes(message.payload[:2], "little")
    raise RemoteProtocolError("the lock did not answer the new code's id")


def _find(entries: Sequence[T], wanted: int, key: str, what: str) -> T:
    for entry in entries:
        if getattr(entry, key) == wanted:
            return entry
    raise UsageError(f"the lock has no {what} {wanted}", hint="list them to see their ids")


async def update_code(
    lock_id: str, settings: Settings, store: Store, code_id: int, change: CodeChange
) -> nuki.KeypadCode:
    current = _find(await list_codes(lock_id, settings, store), code_id, "code_id", "keypad code")
    try:
        code = current.code if change.code is None else nuki.check_code(change.code)
        name = current.name if change.name is None else nuki.check_code_name(change.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    limit = current.limit if change.limit is None else change.limit
    limited = current.time_limited if change.time_limited is None else change.time_limited
    if change.limit is not None and change.time_limited is None:
        limited = True
    enabled = current.enabled if change.enabled is None else change.enabled
    pin, creds = await _pin_and_creds(lock_id, store)
    request = nuki.update_keypad_code(
        code_id, code, name, enabled, limited, limit, pin, ultra=creds.ultra
    )
    await run_commands(
        lock_id, settings, store, [request], step="update a keypad code", creds=creds
    )
    return replace(
        current, code=code, name=name, enabled=enabled, time_limited=limited, limit=limit
    )


async def remove_code(lock_id: str, settings: Settings, store: Store, code_id: int) -> None:
    pin, creds = await _pin_and_creds(lock_id, store)
    request = nuki.remove_keypad_code(code_id, pin, ultra=creds.ultra)
    await run_commands(
        lock_id, settings, store, [request], step="remove a keypad code", creds=creds
    )


async def list_authorizations(
    lock_id: str, settings: Settings, store: Store
) -> list[nuki.AuthorizationEntry]:
    return await _paged(
        lock_id,
        settings,
        store,
        lambda offset, count, pin, ultra: nuki.list_authorizations(offset, count, pin, ultra=ultra),
        nuki.Command.AUTHORIZATION_ENTRY,
        nuki.AuthorizationEntry.decode,
        "list authorizations",
    )


async def update_authorization(
    lock_id: str, settings: Settings, store: Store, auth_id: int, change: CodeChange
) -> nuki.AuthorizationEntry:
    """Change an authorization's name, enabled state or time limit (``change.code`` has no
    meaning here); the rest is sent as the lock has it."""
    entries = await list_authorizations(lock_id, settings, store)
    current = _find(entries, auth_id, "auth_id", "authorization")
    if change.name is not None and not 0 < len(change.name.encode()) <= 32:
        raise UsageError("an authorization's name is 1 to 32 bytes")
    name = current.name if change.name is None else change.name
    enabled = current.enabled if change.enabled is None else change.enabled
    limit = current.limit if change.limit is None else change.limit
    limited = current.time_limited if change.time_limited is None else change.time_limited
    if change.limit is not None and change.time_limited is None:
        limited = True
    pin, creds = await _pin_and_creds(lock_id, store)
    request = nuki.update_authorization(
        auth_id, name, enabled, current.remote_allowed, limited, limit, pin, ultra=creds.ultra
    )
    await run_commands(
        lock_id, settings, store, [request], step="update an authorization", creds=creds
    )
    return replace(current, name=name, enabled=enabled, time_limited=limited, limit=limit)


async def remove_authorization(
    lock_id: str, settings: Settings, store: Store, auth_id: int
) -> None:
    pin, creds = await _pin_and_creds(lock_id, store)
    if auth_id == creds.auth_id:
        raise UsageError(
            "that is this companion's own authorization: removing it would lock it out",
            hint="remove it from another app, or pair again afterwards",
        )
    request = nuki.remove_authorization(auth_id, pin, ultra=creds.ultra)
    await run_commands(
        lock_id, settings, store, [request], step="remove an authorization", creds=creds
    )
