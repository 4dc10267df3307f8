"""Which cloud failures are worth another try, and which let a visit fall back on what was
synced earlier: pure rules over blelock's errors, without httpx, so that an offline visit
needs no HTTP library (:mod:`blelock.cloud._http` uses them and hands them on)."""

from __future__ import annotations

from blelock.errors import CloudError, CloudRejected, CloudTimeout, CloudUnavailable, RateLimited

__all__ = ["OFFLINE_HINT", "cannot_serve", "is_transient"]


def is_transient(exc: CloudError) -> bool:
    """Worth another try: unreachable, slow, rate limited, a 5xx, or a body that is not JSON
    (a proxy's error page)."""
    if isinstance(exc, CloudUnavailable | CloudTimeout | RateLimited):
        return True
    return isinstance(exc, CloudRejected) and ((exc.status or 0) >= 500 or exc.transient)


def cannot_serve(exc: CloudError) -> bool:
    """The cloud cannot give commands now, whatever was asked (unreachable, slow, rate
    limited, a 5xx, garbage): a visit with a usable offline key should use it. A refusal about
    the request itself (credentials, an unknown lock, a 4xx) is not: it would refuse again."""
    return is_transient(exc)


OFFLINE_HINT = (
    "the cloud cannot give commands now; an unlock can use the offline key kept by the last "
    "`blelock sync`: `blelock unlock MAC --offline`"
)
