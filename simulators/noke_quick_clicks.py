"""The simulated Core API's ``/qc/`` route: quick clicks issued, revoked and displayed in one
request, with every rule of the seed doc's IMPORTANT list enforced on the server's side.

Its own reading of the vendor doc (``shared/vendor-docs/noke-core-api.txt``, "quick clicks"),
not blelock's client models:

* a code is a string of ``0`` and ``1``, 3 to 24 characters;
* uses are 1-244, or 255 for unlimited (the seed doc; the vendor's public README says 1-254 in
  one place and 1-255 in another: the seed doc is followed);
* a code is unique on its lock, and can be issued again only once it was *removed from the
  lock* (a revoked code still on the lock blocks it);
* a lock holds at most 100 quick clicks (pending, on the lock, or revoked and not yet removed:
  all take a place on the lock until an online unlock settles them);
* ``issue`` and ``revoke`` entries need a ``mac`` and at least one quick click;
* quick clicks reach the lock (and leave it) only inside an online unlock's command string;
  ``pending`` / ``revoked`` stay true until the lock's record of that unlock is uploaded.

A refused request changes nothing (every entry is checked before any is applied); the refusal
is the vendor's envelope with ``error_code`` 3 (invalid input) or 7 (lock not found) and a
message naming the rule — which codes the real service uses for each rule is not public.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, StrictInt, StrictStr
from starlette.responses import JSONResponse

from simulators.noke_cloud_http import Mac, _Body, _envelope, _parse, _Refusal
from simulators.noke_cloud_state import QuickClick

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulators.noke_cloud_state import NokeCloudState, RegisteredLock

__all__ = ["carried_quick_clicks", "handle_qc"]

CODE_LENGTHS = range(3, 25)
UNLIMITED = 255
MOST_LIMITED = 244
PER_LOCK = 100


class _Code(_Body):
    code: StrictStr
    uses: StrictInt | None = None


class _LockEntry(_Body):
    mac: Mac
    quick_clicks: list[_Code]


class _Display(_Body):
    macs: list[Mac] | None = None


class QcBody(_Body):
    issue: Annotated[list[_LockEntry] | None, Field(default=None)]
    revoke: Annotated[list[_LockEntry] | None, Field(default=None)]
    display: _Display | None = None


def _lock_of(state: NokeCloudState, mac: str) -> RegisteredLock:
    lock = state.find_lock(mac)
    if lock is None:
        raise _Refusal(7, f"Lock not found: {mac.upper()}")
    return lock


def _check_code(code: str) -> None:
    if code.strip("01"):
        raise _Refusal(3, f"Invalid quick click code {code!r}: only 1's and 0's are allowed")
    if len(code) not in CODE_LENGTHS:
        raise _Refusal(
            3, f"Invalid quick click code: must be between 3 to 24 characters, not {len(code)}"
        )


def _check_uses(code: str, uses: int | None) -> int:
    if uses is None:
        raise _Refusal(3, f"Invalid quick click {code}: uses is required")
    if not (1 <= uses <= MOST_LIMITED or uses == UNLIMITED):
        raise _Refusal(
            3,
            f"Invalid quick click {code}: uses must be between 1-244, or 255 for unlimited "
            f"use, not {uses}",
        )
    return uses


def _plan(
    state: NokeCloudState, body: QcBody
) -> tuple[list[tuple[RegisteredLock, str]], list[tuple[RegisteredLock, QuickClick]]]:
    """Every check, before anything changes: (revocations, issues)."""
    revocations: list[tuple[RegisteredLock, str]] = []
    for entry in body.revoke or ():
        lock = _lock_of(state, entry.mac)
        if not entry.quick_clicks:
            raise _Refusal(3, f"Invalid input: revoke for {entry.mac} needs at least one code")
        for wanted in entry.quick_clicks:
            if wanted.code not in lock.quick_clicks:
                raise _Refusal(3, f"Quick click {wanted.code} not found on lock {lock.mac.upper()}")
            revocations.append((lock, wanted.code))
    issues: list[tuple[RegisteredLock, QuickClick]] = []
    adding: dict[str, set[str]] = {}
    for entry in body.issue or ():
        lock = _lock_of(state, entry.mac)
        if not entry.quick_clicks:
            raise _Refusal(3, f"Invalid input: issue for {entry.mac} needs at least one code")
        codes = adding.setdefault(lock.mac.upper(), set())
        for wanted in entry.quick_clicks:
            _check_code(wanted.code)
            uses = _check_uses(wanted.code, wanted.uses)
            held = lock.quick_clicks.get(wanted.code)
            if held is not None or wanted.code in codes:
                why = (
                    "it is revoked but not yet removed from the lock (an online unlock removes it)"
                    if held is not None and held.revoked
                    else "each quick click must be a unique code"
                )
                raise _Refusal(
                    3, f"Quick click {wanted.code} already exists on lock {lock.mac.upper()}: {why}"
                )
            codes.add(wanted.code)
            if len(lock.quick_clicks) + len(codes) > PER_LOCK:
                raise _Refusal(3, f"Lock {lock.mac.upper()} can hold up to {PER_LOCK} quick clicks")
            issues.append((lock, QuickClick(wanted.code, uses)))
    return revocations, issues


def _listing(locks: list[RegisteredLock]) -> list[dict[str, Any]]:
    return [
        {"mac": lock.mac.upper(), "quick_clicks": [qc.view() for qc in lock.quick_clicks.values()]}
        for lock in locks
    ]


async def handle_qc(state: NokeCloudState, raw: bytes, clock: Callable[[], int]) -> JSONResponse:
    body = _parse(QcBody, raw, empty_ok=True)
    revocations, issues = _plan(state, body)
    for lock, code in revocations:
        held = lock.quick_clicks[code]
        held.revoked, held.pending = True, False
    for lock, quick_click in issues:
        lock.quick_clicks[quick_click.code] = quick_click
    if body.display is not None and body.display.macs is not None:
        locks = [
            _lock_of(state, mac) for mac in dict.fromkeys(m.upper() for m in body.display.macs)
        ]
    else:
        locks = [lock for lock in state.locks.values() if lock.quick_clicks]
    return _envelope("qc", data=_listing(locks))


def carried_quick_clicks(
    lock: RegisteredLock,
) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """What the next online unlock's command string carries: (codes to remove, (code, uses)
    to add), removals first so a lock near its 100 has room. A lock holds at most PER_LOCK
    (pending and revoked included), so all of them fit one batch of at most 255 packets."""
    removes = tuple(qc.code for qc in lock.quick_clicks.values() if qc.revoked)
    adds = tuple((qc.code, qc.uses) for qc in lock.quick_clicks.values() if qc.pending)
    return removes, adds
