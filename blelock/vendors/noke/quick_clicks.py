"""Quick clicks: the Core API seed doc's rules, checked before anything is sent.

The rules (``shared/vendor-docs/noke-core-api.txt``, "IMPORTANT" and the parameter table):

1. a code is made of ``1`` (long press) and ``0`` (short press) only;
2. a code is 3 to 24 characters;
3. uses are 1-244, or 255 for unlimited — the seed doc's rule; the vendor's public README says
   1-254 in one place and 1-255 in another, and the seed doc wins (issue 11);
4. a code is unique on its lock;
5. a code can be issued again only once it was removed from the lock (revoked is not removed:
   the lock's next online unlock removes it);
6. a lock holds at most 100 quick clicks;
7. an issue or revoke entry names one lock and at least one quick click;
8. quick clicks reach (and leave) a lock only through an online unlock — not a check but the
   sync itself: the cloud and the lock enforce it, and listings say ``pending`` / ``revoked``.

A code opens the lock: it is a :class:`~pydantic.SecretStr` here and never appears in an error,
a log line or a listing (:func:`masked`). Errors say which quick click of the request (by its
position) broke which rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import SecretStr

from blelock.errors import UsageError
from blelock.vendors.noke.models import QuickClickState
from blelock.vendors.noke.protocol import QUICK_CLICK_LENGTHS as CODE_LENGTHS
from blelock.vendors.noke.protocol import QUICK_CLICK_MAX_LIMITED_USES as MAX_LIMITED_USES
from blelock.vendors.noke.protocol import QUICK_CLICK_UNLIMITED as UNLIMITED
from blelock.vendors.noke.protocol import QUICK_CLICKS_PER_LOCK as PER_LOCK

__all__ = [
    "MAX_LIMITED_USES",
    "PER_LOCK",
    "UNLIMITED",
    "check_code",
    "check_issue",
    "check_revoke",
    "check_uses",
    "masked",
]

_HINT = "a quick click is 3-24 presses written as 1 (long) and 0 (short), e.g. 10110"


def masked(code: SecretStr | str) -> str:
    """What a listing shows of a code: its length only."""
    text = code.get_secret_value() if isinstance(code, SecretStr) else code
    return f"{len(text)} presses"


def check_code(code: SecretStr, which: str) -> None:
    text = code.get_secret_value()
    if text.strip("01"):
        raise UsageError(
            f"{which}: a quick-click code is made of 1 and 0 only (rule 1)", hint=_HINT
        )
    if len(text) not in CODE_LENGTHS:
        raise UsageError(
            f"{which}: a quick-click code is 3 to 24 characters, not {len(text)} (rule 2)",
            hint=_HINT,
        )


def check_uses(uses: int, which: str) -> None:
    if not (1 <= uses <= MAX_LIMITED_USES or uses == UNLIMITED):
        raise UsageError(
            f"{which}: uses must be 1-244, or 255 for unlimited, not {uses} (rule 3)",
            hint="the seed doc's rule; the vendor README's 245-254 are refused here",
        )


def check_issue(
    lock_id: str, new: Sequence[tuple[SecretStr, int]], held: Sequence[QuickClickState]
) -> None:
    """Every rule a new set of quick clicks for one lock must meet, given what it holds."""
    if not new:
        raise UsageError(
            f"issuing quick clicks for {lock_id} needs at least one (rule 7)",
            hint="give each as CODE USES on standard input",
        )
    on_lock = {qc.code.get_secret_value(): qc for qc in held}
    seen: set[str] = set()
    for index, (code, uses) in enumerate(new, start=1):
        which = f"quick click {index} of {len(new)}"
        check_code(code, which)
        check_uses(uses, which)
        text = code.get_secret_value()
        existing = on_lock.get(text)
        if existing is not None and existing.revoked:
            raise UsageError(
                f"{which}: this code was revoked on {lock_id} but is still on the lock; it can "
                "be issued again once removed from the lock (rule 5)",
                hint="an online unlock of the lock removes it; then issue it again",
            )
        if existing is not None or text in seen:
            raise UsageError(
                f"{which}: {lock_id} already has this code; each quick click must be a unique "
                "code (rule 4)",
                hint="choose another code",
            )
        seen.add(text)
    if len(on_lock) + len(seen) > PER_LOCK:
        raise UsageError(
            f"{lock_id} holds {len(on_lock)} quick clicks; {len(seen)} more would pass the "
            f"{PER_LOCK} a lock can hold (rule 6)",
            hint="revoke some, and let an online unlock remove them from the lock",
        )


def check_revoke(lock_id: str, codes: Sequence[SecretStr], held: Sequence[QuickClickState]) -> None:
    if not codes:
        raise UsageError(
            f"revoking quick clicks of {lock_id} needs at least one code (rule 7)",
            hint="give the codes on standard input, one a line",
        )
    on_lock = {qc.code.get_secret_value() for qc in held}
    for index, code in enumerate(codes, start=1):
        if code.get_secret_value() not in on_lock:
            raise UsageError(
                f"quick click {index} of {len(codes)}: {lock_id} has no such quick click",
                hint=f"`blelock noke quick-clicks list {lock_id}` shows what it has",
            )
