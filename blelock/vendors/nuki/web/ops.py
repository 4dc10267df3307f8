"""What the CLI calls: whole Web API operations that check, send, and confirm by reading back.

Every write goes the same way, because of how the Web API behaves (research §B.3, §D):

1. **Check first.** The code rules (6 digits 1-9, not "12…", unique per lock), name lengths,
   the window and the lock's capacity are checked before anything is sent.
2. **Send the full set.** An update that leaves the time fields out *clears* them, so an
   update reads the entry, applies the changes and sends every field back.
3. **Confirm by reading back.** 204 means "validated", not "on the lock": the entry appears,
   changes or goes only once the lock has it, and a 423 answers changes meanwhile. We poll
   (``NukiWeb.poll_s``) until the lock has it, up to ``NukiWeb.confirm_s``. Half-way, when
   the entry is missing, lingering or different and the lock is online, we ask for one sync
   (the vendor's cure for entries that linger after a delete). Then either the read-back
   matches and we return it, or :class:`ReadBackDiffers` names the fields that differ, or
   :class:`NotConfirmed` says the lock never took it (and whether the lock is offline).

Example (what ``blelock nuki code add LOCK --via web`` does)::

    async with NukiWeb.from_settings(section, settings.timeouts) as web:
        lock = await find_lock(web, "Front door")
        window = AccessWindow.parse(daily="09:00-17:00", days="mon-fri")
        entry = await add_keypad_code(web, lock.smartlock_id, code, "Cleaner", window)

Every error carries the lock (``nuki web <smartlockId>``) and the step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import SecretStr

from blelock.errors import LockRefused, UsageError, lock_context
from blelock.vendors.nuki.web.client import NotConfirmed, NukiWeb, ReadBackDiffers
from blelock.vendors.nuki.web.models import AccountUser, LogEntry, Smartlock, SmartlockAuth
from blelock.vendors.nuki.web.rules import (
    KEYPAD_CODE_TYPE,
    LOG_LIMIT_DEFAULT,
    LOG_LIMIT_MAX,
    MAX_AUTHORIZATIONS,
    MAX_KEYPAD_CODES,
    AuthType,
    LockAction,
    check_auth_name,
    check_keypad_code,
)
from blelock.vendors.nuki.web.window import AccessWindow

__all__ = [
    "AuthChanges",
    "add_keypad_code",
    "create_account_user",
    "delete_authorizations",
    "entry_row",
    "find_keypad_code",
    "find_lock",
    "force_sync",
    "invite_key",
    "invite_keys",
    "list_keypad_codes",
    "lock_action",
    "lock_row",
    "log_row",
    "read_logs",
    "remove_authorization",
    "remove_keypad_code",
    "update_authorization",
    "update_authorizations",
    "update_keypad_code",
]

_T = TypeVar("_T")

_OFFLINE_STATES = {1: "unregistered", 2: "auth uuid invalid", 3: "auth invalid", 4: "offline"}
_LOG_SUCCESS = 0
_LOG_STATES = {1: "motor blocked", 9: "rejected", 10: "rejected (night mode)"}


def lock_ref(smartlock_id: int) -> str:
    """How errors name a lock reached through the Web API."""
    return f"nuki web {smartlock_id}"


@dataclass(frozen=True, slots=True)
class AuthChanges:
    """What to change in an entry; None leaves a field as it is. ``window=AccessWindow()``
    clears the restrictions, ``window=None`` keeps them (they are sent back either way)."""

    name: str | None = None
    enabled: bool | None = None
    remote_allowed: bool | None = None
    smart_actions_enabled: bool | None = None
    code: SecretStr | None = None
    window: AccessWindow | None = None


@dataclass(frozen=True, slots=True)
class _Wanted:
    """The entry as it should read back once the lock has it."""

    name: str
    enabled: bool
    window: AccessWindow
    code: int | None = field(default=None, repr=False)
    remote_allowed: bool | None = None
    smart_actions_enabled: bool | None = None
    body: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """What is sent (with the keypad code: no repr)."""

    def differences(self, auth: SmartlockAuth) -> list[str]:
        fields = []
        if auth.name != self.name:
            fields.append("name")
        if auth.enabled != self.enabled:
            fields.append("enabled")
        if self.code is not None and _code_of(auth) != self.code:
            fields.append("code")
        if self.remote_allowed is not None and auth.remote_allowed != self.remote_allowed:
            fields.append("remoteAllowed")
        if (
            self.smart_actions_enabled is not None
            and auth.smart_actions_enabled != self.smart_actions_enabled
        ):
            fields.append("smartActionsEnabled")
        fields.extend(_window_differences(auth.window, self.window))
        return fields


# --- locks ----------------------------------------------------------------------------------


async def find_lock(web: NukiWeb, text: str) -> Smartlock:
    """A smart lock by its ``smartlockId`` (decimal) or its name (case-insensitive)."""
    wanted = text.strip()
    if wanted.isdigit():
        with lock_context(lock_ref(int(wanted)), "find the lock"):
            return await web.smartlock(int(wanted))
    locks = await web.smartlocks()
    named = [lock for lock in locks if lock.name.casefold() == wanted.casefold()]
    if len(named) == 1:
        return named[0]
    known = ", ".join(f"{lock.name!r} ({lock.smartlock_id})" for lock in locks[:10]) or "none"
    if not named:
        raise UsageError(
            f"the Nuki Web account has no smart lock named {wanted!r}",
            hint=f"give its smartlockId or one of its names: {known}",
        )
    raise UsageError(
        f"{len(named)} smart locks are named {wanted!r}", hint=f"give the smartlockId: {known}"
    )


async def force_sync(web: NukiWeb, smartlock_id: int) -> None:
    """Ask the lock to report its state and entries again. Returns once the API took the
    request (204); the fresh state shows when the lock has answered."""
    with lock_context(lock_ref(smartlock_id), "sync"):
        await web.sync(smartlock_id)


async def lock_action(
    web: NukiWeb, smartlock_id: int, action: LockAction, *, option: int = 0
) -> LogEntry:
    """Run a lock action through the Web API and return the lock's log entry of it. Raises
    :class:`LockRefused` when the lock logged it as not done, :class:`NotConfirmed` when no
    entry appeared in time."""
    with lock_context(lock_ref(smartlock_id), f"lock action {action.name.lower()}"):
        before = await web.logs(smartlock_id, limit=1)
        last_seen = before[0].id if before else None
        await web.action(smartlock_id, int(action), option)

        async def look() -> LogEntry | None:
            for entry in await web.logs(smartlock_id, limit=10):
                if entry.id == last_seen:
                    return None
                if entry.action == action:
                    return entry
            return None

        entry = await _poll(web, look)
        if entry is None:
            raise await _not_confirmed(web, smartlock_id, f"the {action.name.lower()} action")
        if entry.state not in (None, _LOG_SUCCESS):
            why = _LOG_STATES.get(entry.state, f"state {entry.state}")
            raise LockRefused(
                f"the lock logged the {action.name.lower()} action as not done ({why})",
                reason=entry.state,
                hint="check the lock (door, bolt, battery) in the Nuki app",
            )
        return entry


async def read_logs(
    web: NukiWeb, smartlock_id: int | None = None, *, count: int = LOG_LIMIT_DEFAULT
) -> list[LogEntry]:
    """The newest ``count`` log entries, newest first, in pages of at most 50 (the API's
    limit), each page asking for the entries older than the last one read."""
    if count < 1:
        raise UsageError(f"ask for at least one log entry, not {count}")
    entries: list[LogEntry] = []
    before: str | None = None
    with lock_context(None if smartlock_id is None else lock_ref(smartlock_id), "read the log"):
        while len(entries) < count:
            page_size = min(LOG_LIMIT_MAX, count - len(entries))
            page = await web.logs(smartlock_id, limit=page_size, before_id=before)
            entries.extend(page)
            if len(page) < page_size:
                break
            before = page[-1].id
    return entries


# --- keypad codes ---------------------------------------------------------------------------


async def list_keypad_codes(web: NukiWeb, smartlock_id: int) -> list[SmartlockAuth]:
    with lock_context(lock_ref(smartlock_id), "list keypad codes"):
        return await web.auths(smartlock_id, types=[KEYPAD_CODE_TYPE])


async def find_keypad_code(web: NukiWeb, smartlock_id: int, text: str) -> SmartlockAuth:
    """A keypad code of the lock by its Web API id or its name."""
    codes = await list_keypad_codes(web, smartlock_id)
    return _one_entry(codes, text, smartlock_id, "keypad code")


async def add_keypad_code(
    web: NukiWeb,
    smartlock_id: int,
    code: SecretStr | str,
    name: str,
    window: AccessWindow | None = None,
    *,
    enabled: bool = True,
    account_user_id: int | None = None,
) -> SmartlockAuth:
    """Add a keypad code (type 13) and return it as the lock holds it.

    The code is checked first (6 digits 1-9, not starting "12", not already on this lock),
    the name (≤ 20 characters), the window and the lock's 100-code capacity. A window that
    restricts anything and has no start date starts now (the API applies restrictions only
    to entries with ``allowedFromDate``). ``window``'s day times are lock-local.
    ``account_user_id`` links the code to an account user; no e-mail is sent for codes.
    """
    secret = code if isinstance(code, SecretStr) else SecretStr(code)
    with lock_context(lock_ref(smartlock_id), "add a keypad code"):
        number = check_keypad_code(secret)
        check_auth_name(name, keypad=True)
        window = (window or AccessWindow()).checked().starting(web.clock.now_utc())
        lock = await web.smartlock(smartlock_id)
        if lock.keypad_paired is False:
            raise UsageError(
                f"smart lock {smartlock_id} ({lock.name}) has no keypad paired",
                hint="pair a Keypad in the Nuki app; if it is paired, force a sync first",
            )
        existing = await web.auths(smartlock_id, types=[KEYPAD_CODE_TYPE])
        _check_unique(existing, number, smartlock_id)
        if len(existing) >= MAX_KEYPAD_CODES:
            raise UsageError(
                f"smart lock {smartlock_id} already holds {len(existing)} keypad codes, "
                f"its maximum",
                hint="remove a code first",
            )
        wanted = _Wanted(name=name, enabled=enabled, window=window, code=number)
        body: dict[str, Any] = {
            "name": name,
            "type": KEYPAD_CODE_TYPE,
            "code": number,
            "enabled": enabled,
            **window.to_api(),
        }
        if account_user_id is not None:
            body["accountUserId"] = account_user_id
        before = {auth.id for auth in existing}
        await web.create_auth(smartlock_id, body)
        return await _confirm(
            web,
            smartlock_id,
            "the new keypad code",
            [KEYPAD_CODE_TYPE],
            _new_entry(before, lambda auth: auth.keypad_code and _code_of(auth) == number),
            wanted,
        )


async def update_keypad_code(
    web: NukiWeb, smartlock_id: int, auth_id: str, changes: AuthChanges
) -> SmartlockAuth:
    """Change a keypad code: the current entry with ``changes`` applied is sent in full."""
    return await update_authorization(web, smartlock_id, auth_id, changes, keypad=True)


async def remove_keypad_code(web: NukiWeb, smartlock_id: int, auth_id: str) -> None:
    """Remove a keypad code and wait until the lock no longer lists it."""
    await remove_authorization(web, smartlock_id, auth_id, keypad=True)


# --- authorizations and invite keys ---------------------------------------------------------


async def create_account_user(web: NukiWeb, email: str, name: str) -> AccountUser:
    """An account user to invite (``PUT /account/user``)."""
    if "@" not in email.strip(" @"):
        raise UsageError(f"{email!r} is not an e-mail address", hint="invites go by e-mail")
    return await web.create_account_user(email.strip(), name)


async def invite_key(
    web: NukiWeb,
    smartlock_id: int,
    account_user_id: int,
    name: str,
    window: AccessWindow | None = None,
    *,
    remote_allowed: bool = False,
    smart_actions_enabled: bool = False,
) -> SmartlockAuth:
    """An app authorization (an invite key, e-mailed by Nuki to the account user) on one
    lock, confirmed on the lock."""
    return (
        await invite_keys(
            web,
            [smartlock_id],
            account_user_id,
            name,
            window,
            remote_allowed=remote_allowed,
            smart_actions_enabled=smart_actions_enabled,
        )
    )[0]


async def invite_keys(
    web: NukiWeb,
    smartlock_ids: Sequence[int],
    account_user_id: int,
    name: str,
    window: AccessWindow | None = None,
    *,
    remote_allowed: bool = False,
    smart_actions_enabled: bool = False,
) -> list[SmartlockAuth]:
    """The same invite key on several locks in one request (``PUT /smartlock/auth``), each
    confirmed on its lock; in the order of ``smartlock_ids``."""
    if not smartlock_ids:
        raise UsageError("name at least one smart lock to invite to")
    check_auth_name(name, keypad=False)
    window = (window or AccessWindow()).checked().starting(web.clock.now_utc())
    before: dict[int, set[str]] = {}
    for smartlock_id in smartlock_ids:
        with lock_context(lock_ref(smartlock_id), "invite a user"):
            current = await web.auths(smartlock_id)
            others = [auth for auth in current if not auth.keypad_code]
            if len(others) >= MAX_AUTHORIZATIONS:
                raise UsageError(
                    f"smart lock {smartlock_id} already holds {len(others)} authorizations, "
                    f"its maximum",
                    hint="remove one first",
                )
            before[smartlock_id] = {auth.id for auth in current}
    body = {
        "name": name,
        "type": int(AuthType.APP),
        "accountUserId": account_user_id,
        "remoteAllowed": remote_allowed,
        "smartActionsEnabled": smart_actions_enabled,
        **window.to_api(),
    }
    wanted = _Wanted(
        name=name,
        enabled=True,
        window=window,
        remote_allowed=remote_allowed,
        smart_actions_enabled=smart_actions_enabled,
    )
    if len(smartlock_ids) == 1:
        with lock_context(lock_ref(smartlock_ids[0]), "invite a user"):
            await web.create_auth(smartlock_ids[0], body)
    else:
        await web.create_auth_on(smartlock_ids, body)
    confirmed = []
    for smartlock_id in smartlock_ids:
        known = before[smartlock_id]
        with lock_context(lock_ref(smartlock_id), "invite a user"):
            confirmed.append(
                await _confirm(
                    web,
                    smartlock_id,
                    "the invite key",
                    None,
                    _new_entry(known, _invited(account_user_id, name)),
                    wanted,
                )
            )
    return confirmed


async def update_authorization(
    web: NukiWeb,
    smartlock_id: int,
    auth_id: str,
    changes: AuthChanges,
    *,
    keypad: bool | None = None,
) -> SmartlockAuth:
    """Change one entry: read it, apply ``changes``, send every field, confirm the read-back.
    ``keypad`` True/False insists on a keypad code / another kind of entry."""
    with lock_context(lock_ref(smartlock_id), "update an authorization"):
        current, siblings = await _entry_and_siblings(web, smartlock_id, auth_id, keypad)
        wanted = _apply(current, changes, siblings, web.clock.now_utc())
        await web.update_auth(smartlock_id, auth_id, wanted.body)
        return await _confirm(
            web,
            smartlock_id,
            f"the change to {_kind(current)} {current.name!r}",
            None,
            _entry_with_id(auth_id),
            wanted,
        )


async def update_authorizations(
    web: NukiWeb, changes: Sequence[tuple[SmartlockAuth, AuthChanges]]
) -> list[SmartlockAuth]:
    """Several changes in one request (``POST /smartlock/auth``), each sent in full and each
    confirmed on its lock. Pass the entries as last read (``web.auths``)."""
    wanted: list[tuple[SmartlockAuth, _Wanted]] = []
    lists: dict[int, list[SmartlockAuth]] = {}
    for entry, change in changes:
        with lock_context(lock_ref(entry.smartlock_id), "update authorizations"):
            if entry.smartlock_id not in lists:
                lists[entry.smartlock_id] = await web.auths(entry.smartlock_id)
            current = _one_entry(lists[entry.smartlock_id], entry.id, entry.smartlock_id)
            wanted.append((current, _apply(current, change, lists[entry.smartlock_id], None)))
    await web.update_auths([{"id": entry.id, **want.body} for entry, want in wanted])
    confirmed = []
    for entry, want in wanted:
        with lock_context(lock_ref(entry.smartlock_id), "update authorizations"):
            confirmed.append(
                await _confirm(
                    web,
                    entry.smartlock_id,
                    f"the change to {_kind(entry)} {entry.name!r}",
                    None,
                    _entry_with_id(entry.id),
                    want,
                )
            )
    return confirmed


async def remove_authorization(
    web: NukiWeb, smartlock_id: int, auth_id: str, *, keypad: bool | None = None
) -> None:
    """Delete one entry and wait until the lock no longer lists it."""
    with lock_context(lock_ref(smartlock_id), "remove an authorization"):
        current, _ = await _entry_and_siblings(web, smartlock_id, auth_id, keypad)
        await web.delete_auth(smartlock_id, auth_id)
        await _confirm_gone(web, smartlock_id, [current])


async def delete_authorizations(web: NukiWeb, entries: Sequence[SmartlockAuth]) -> None:
    """Delete several entries in one request (``DELETE /smartlock/auth``), then wait until
    no lock lists them."""
    if not entries:
        return
    await web.delete_auths([entry.id for entry in entries])
    for smartlock_id in dict.fromkeys(entry.smartlock_id for entry in entries):
        with lock_context(lock_ref(smartlock_id), "remove authorizations"):
            await _confirm_gone(
                web,
                smartlock_id,
                [entry for entry in entries if entry.smartlock_id == smartlock_id],
            )


# --- rows for `show_rows` (flat, JSON-ready, never a code) ---------------------------------


def entry_row(auth: SmartlockAuth) -> dict[str, Any]:
    kind = AuthType(auth.type).name.lower() if auth.type in set(AuthType) else str(auth.type)
    return {
        "id": auth.id,
        "lock": auth.smartlock_id,
        "kind": kind.replace("_", " "),
        "name": auth.name,
        "enabled": auth.enabled,
        "window": auth.window.describe(),
        "account_user_id": auth.account_user_id,
        "pending": auth.operation_id is not None,
    }


def lock_row(lock: Smartlock) -> dict[str, Any]:
    return {
        "smartlock_id": lock.smartlock_id,
        "name": lock.name,
        "state": None if lock.state is None else lock.state.state,
        "battery": None if lock.state is None else lock.state.battery_charge,
        "online": lock.server_state == 0,
        "keypad": lock.keypad_paired,
    }


def log_row(entry: LogEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "lock": entry.smartlock_id,
        "date": entry.date.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "action": entry.action,
        "trigger": entry.trigger,
        "state": entry.state,
        "name": entry.name,
    }


# --- the read-back --------------------------------------------------------------------------


async def _poll(
    web: NukiWeb,
    look: Callable[[], Awaitable[_T | None]],
    on_stuck: Callable[[], Awaitable[None]] | None = None,
) -> _T | None:
    """Call ``look`` every ``poll_s`` until it returns something or ``confirm_s`` is up;
    half-way, once, ``on_stuck`` (a coroutine function) runs."""
    clock = web.clock
    deadline = clock.monotonic() + web.confirm_s
    half_way = deadline - web.confirm_s / 2
    nudged = False
    while True:
        result = await look()
        if result is not None:
            return result
        now = clock.monotonic()
        if now >= deadline:
            return None
        if on_stuck is not None and not nudged and now >= half_way:
            nudged = True
            await on_stuck()
        await clock.sleep(min(web.poll_s, deadline - now))


async def _confirm(
    web: NukiWeb,
    smartlock_id: int,
    what: str,
    types: Sequence[int] | None,
    find: _Finder,
    wanted: _Wanted,
) -> SmartlockAuth:
    last: list[tuple[SmartlockAuth, list[str]]] = []

    async def look() -> SmartlockAuth | None:
        found = find(await web.auths(smartlock_id, types=types))
        if found is None or found.operation_id is not None:
            return None
        differs = wanted.differences(found)
        if not differs:
            return found
        last[:] = [(found, differs)]
        return None

    confirmed: SmartlockAuth | None = await _poll(
        web, look, lambda: _sync_if_online(web, smartlock_id)
    )
    if confirmed is not None:
        return confirmed
    if last:
        found, differs = last[0]
        raise ReadBackDiffers(
            f"the Web API reads back {what} with a different {', '.join(differs)} than was "
            f"sent (entry {found.id}, still after {web.confirm_s:g} s)",
            fields=differs,
        )
    raise await _not_confirmed(web, smartlock_id, what)


async def _confirm_gone(web: NukiWeb, smartlock_id: int, entries: Sequence[SmartlockAuth]) -> None:
    ids = {entry.id for entry in entries}

    async def look() -> bool | None:
        listed = {auth.id for auth in await web.auths(smartlock_id)}
        return True if not ids & listed else None

    if await _poll(web, look, lambda: _sync_if_online(web, smartlock_id)) is None:
        names = ", ".join(repr(entry.name) for entry in entries[:3])
        raise await _not_confirmed(web, smartlock_id, f"the removal of {names}")


async def _sync_if_online(web: NukiWeb, smartlock_id: int) -> None:
    """One sync, unless the lock is offline (it would queue behind nothing) or still busy
    with an operation (a 423: the fresh state comes with that operation anyway)."""
    if (await web.smartlock(smartlock_id)).server_state == 0:
        await web.sync(smartlock_id, if_idle=True)


async def _not_confirmed(web: NukiWeb, smartlock_id: int, what: str) -> NotConfirmed:
    lock = await web.smartlock(smartlock_id)
    state = _OFFLINE_STATES.get(lock.server_state)
    why = f"; the Web API says the lock is {state} (serverState {lock.server_state})"
    return NotConfirmed(
        f"the Nuki Web API accepted {what} (HTTP 204), but the lock had not taken it after "
        f"{web.confirm_s:g} s{why if state else ''}"
    )


# --- helpers --------------------------------------------------------------------------------


def _code_of(auth: SmartlockAuth) -> int | None:
    if auth.code is None:
        return None
    text = auth.code.get_secret_value()
    return int(text) if text.isdigit() else None


def _kind(auth: SmartlockAuth) -> str:
    return "keypad code" if auth.keypad_code else "authorization"


_Finder = Callable[[list[SmartlockAuth]], SmartlockAuth | None]


def _new_entry(before: set[str], matches: Callable[[SmartlockAuth], bool]) -> _Finder:
    """The first entry that was not listed before the create and matches."""
    return lambda auths: next(
        (auth for auth in auths if auth.id not in before and matches(auth)), None
    )


def _entry_with_id(auth_id: str) -> _Finder:
    return lambda auths: next((auth for auth in auths if auth.id == auth_id), None)


def _invited(account_user_id: int, name: str) -> Callable[[SmartlockAuth], bool]:
    return lambda auth: auth.account_user_id == account_user_id and auth.name == name


def _one_entry(
    auths: list[SmartlockAuth], text: str, smartlock_id: int, kind: str = "authorization"
) -> SmartlockAuth:
    by_id = [auth for auth in auths if auth.id == text]
    if by_id:
        return by_id[0]
    named = [auth for auth in auths if auth.name.casefold() == text.strip().casefold()]
    if len(named) == 1:
        return named[0]
    if named:
        raise UsageError(
            f"smart lock {smartlock_id} has {len(named)} {kind}s named {text!r}",
            hint="give the entry's id instead (listed with the entries)",
        )
    raise UsageError(
        f"smart lock {smartlock_id} has no {kind} {text!r}",
        hint="list the lock's entries to see their ids and names",
    )


def _check_unique(
    codes: Sequence[SmartlockAuth], number: int, smartlock_id: int, *, skip: str | None = None
) -> None:
    for auth in codes:
        if auth.keypad_code and auth.id != skip and _code_of(auth) == number:
            raise UsageError(
                f"smart lock {smartlock_id} already has this keypad code (entry {auth.name!r})",
                hint="a code may exist only once per lock: choose another, or change that entry",
            )


async def _entry_and_siblings(
    web: NukiWeb, smartlock_id: int, auth_id: str, keypad: bool | None
) -> tuple[SmartlockAuth, list[SmartlockAuth]]:
    auths = await web.auths(smartlock_id)
    kind = "keypad code" if keypad else "authorization"
    current = next((auth for auth in auths if auth.id == auth_id), None)
    if current is None:
        raise UsageError(
            f"smart lock {smartlock_id} has no {kind} with id {auth_id}",
            hint="list the lock's entries to see their ids",
        )
    if keypad is not None and current.keypad_code != keypad:
        raise UsageError(
            f"entry {auth_id} of smart lock {smartlock_id} is not a {kind}",
            hint="use the command for its kind",
        )
    return current, auths


def _apply(
    current: SmartlockAuth,
    changes: AuthChanges,
    siblings: Sequence[SmartlockAuth],
    now: dt.datetime | None,
) -> _Wanted:
    """The full body for ``current`` with ``changes``, and how it should read back."""
    name = check_auth_name(
        changes.name if changes.name is not None else current.name, keypad=current.keypad_code
    )
    window = current.window if changes.window is None else changes.window.checked()
    if now is not None:
        window = window.starting(now)
    enabled = current.enabled if changes.enabled is None else changes.enabled
    body: dict[str, Any] = {"name": name, "enabled": enabled, **window.to_api()}
    code: int | None = None
    if current.keypad_code:
        if changes.code is not None:
            code = check_keypad_code(changes.code)
            _check_unique(siblings, code, current.smartlock_id, skip=current.id)
        else:
            code = _code_of(current)
        if code is None:
            raise UsageError(
                f"the Web API did not say keypad code {current.name!r}'s code",
                hint="give the code again with the change",
            )
        body["code"] = code
        return _Wanted(name=name, enabled=enabled, window=window, code=code, body=body)
    remote = current.remote_allowed if changes.remote_allowed is None else changes.remote_allowed
    smart = (
        current.smart_actions_enabled
        if changes.smart_actions_enabled is None
        else changes.smart_actions_enabled
    )
    body |= {"remoteAllowed": remote, "smartActionsEnabled": smart}
    return _Wanted(
        name=name,
        enabled=enabled,
        window=window,
        remote_allowed=remote,
        smart_actions_enabled=smart,
        body=body,
    )


def _window_differences(read: AccessWindow, sent: AccessWindow) -> list[str]:
    fields = []
    for name, api_name in (("from_date", "allowedFromDate"), ("until_date", "allowedUntilDate")):
        a, b = getattr(read, name), getattr(sent, name)
        if (a is None) != (b is None) or (a and b and abs((a - b).total_seconds()) >= 1):
            fields.append(api_name)
    if read.weekdays != sent.weekdays:
        fields.append("allowedWeekDays")
    if read.from_time != sent.from_time:
        fields.append("allowedFromTime")
    if read.until_time != sent.until_time:
        fields.append("allowedUntilTime")
    return fields
