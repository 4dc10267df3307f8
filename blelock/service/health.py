"""The kiosk's health, per vendor and in sum: what each vendor's cloud did when last asked,
its keys, its outbox stream; and the adapter, the jobs and the connection slots."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from blelock.clock import Clock
from blelock.model import KeyHealth

__all__ = ["Health", "VendorHealth", "VendorStatus", "cloud_reachable", "sum_keys"]


class VendorStatus:
    """What the runner learnt about one vendor: from its jobs and its upkeep."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.active: bool = False
        """Set up here, as its upkeep found at the last round."""
        self.cloud_reachable: bool | None = None
        self.cloud_checked_at: dt.datetime | None = None
        self.last_sync_error: str | None = None
        self.keys: KeyHealth | None = None

    def cloud_seen(self, *, reachable: bool) -> None:
        self.cloud_reachable = reachable
        self.cloud_checked_at = self._clock.now_utc()


@dataclass(frozen=True, slots=True)
class VendorHealth:
    active: bool
    cloud_reachable: bool | None
    cloud_checked_at: dt.datetime | None
    last_sync_error: str | None
    outbox_depth: int
    set_aside: int
    """Records in batches the vendor's cloud refused for good: they wait for a person."""
    keys: KeyHealth | None
    uploads_configured: bool


@dataclass(frozen=True, slots=True)
class Health:
    stopping: bool
    adapter_up: bool | None
    last_scan_at: dt.datetime | None
    locks_in_range: int
    cloud_reachable: bool | None
    """False when some vendor's cloud was last found unreachable, True when every cloud asked
    was reachable, None before any was asked."""
    cloud_checked_at: dt.datetime | None
    last_sync_error: str | None
    last_sync_at: dt.datetime | None
    uploads_configured: bool
    """Some vendor's uploads have their credentials."""
    outbox_depth: int
    set_aside: int
    keys: KeyHealth | None
    """Every vendor's keys summed (None when no vendor reported any)."""
    jobs_running: int
    jobs_queued: int
    max_connections: int
    connections_in_use: int
    peak_connections: int
    vendors: Mapping[str, VendorHealth]
    grants: Mapping[str, int] | None = None
    """Grants' locks by status (pending, active, error, …); None without a grant store."""
    grants_error: str | None = None
    """Why the grant store could not be read, or the last reconcile's first problem."""


def cloud_reachable(vendors: Iterable[VendorHealth]) -> bool | None:
    seen = [v.cloud_reachable for v in vendors if v.cloud_reachable is not None]
    if not seen:
        return None
    return all(seen)


def sum_keys(healths: Iterable[KeyHealth | None]) -> KeyHealth | None:
    """Counts added, the earliest expiry, the first error; None when there are none."""
    given = [h for h in healths if h is not None]
    if not given:
        return None
    expiries = [h.next_expiry for h in given if h.next_expiry is not None]
    return KeyHealth(
        cached=sum(h.cached for h in given),
        expiring_soon=sum(h.expiring_soon for h in given),
        expired=sum(h.expired for h in given),
        revoked=sum(h.revoked for h in given),
        next_expiry=min(expiries, default=None),
        error=next((h.error for h in given if h.error is not None), None),
    )
