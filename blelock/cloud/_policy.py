"""Which cloud failures are worth another try, and which let a visit fall back on what was
synced earlier, and how often to try: pure rules over blelock's errors, without httpx, so that
an offline visit needs no HTTP library (:mod:`blelock.cloud._http` uses them and hands them
on)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from blelock.errors import CloudError, CloudRejected, CloudTimeout, CloudUnavailable, RateLimited

__all__ = ["AT_THE_LOCK", "OFFLINE_HINT", "RetryPolicy", "cannot_serve", "is_transient"]


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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries for background work (sync, upload), never for a user at a lock.

    Full jitter (a random wait up to the exponential step) keeps a fleet of kiosks that lost
    the uplink together from coming back in lockstep."""

    attempts: int = 4
    base_s: float = 0.5
    cap_s: float = 8.0
    max_retry_after_s: float = 60.0
    """A Retry-After longer than this is not waited for: the error says so instead."""

    def backoff(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap_s, self.base_s * 2**retry))


AT_THE_LOCK = RetryPolicy(attempts=1)
"""A user waiting at a lock gets one try at the cloud, then what was synced before; what a visit
could not upload waits in the outbox for the background sync, which retries."""
