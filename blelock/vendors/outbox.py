"""The outbox drain, the same for every vendor: each batch goes up through the vendor's uploader.

The drain is at-least-once on our side and exactly-once at the cloud: a batch keeps the same
idempotency key until the cloud acknowledged it, so a retry after a lost acknowledgement (or a
crash between sending and deleting) is recognised there, and records are deleted only after it.
A batch the cloud refuses for good is set aside with the reason, so it cannot hold up the
records behind it; bad credentials, rate limits and outages stop the drain instead (they are
not about the batch).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from blelock.cloud._policy import is_transient
from blelock.errors import (
    AuthFailed,
    CloudRejected,
    RateLimited,
    StoreDamaged,
    UnknownLock,
    UnsendableRecord,
    lock_context,
)
from blelock.model import LogRecord
from blelock.vendors.base import Uploader

_log = logging.getLogger(__name__)

__all__ = ["LEASE_AHEAD", "UPLOAD_BATCH", "KeptForUpload", "drain_outbox", "refuses_the_batch"]

UPLOAD_BATCH = 500
"""Records per upload: ~60 KB of JSON, small enough for a flaky uplink to get through."""
LEASE_AHEAD = 8
"""Batches leased, and later acknowledged, per store transaction: one fsync'd commit for
eight uploads instead of one each. A crash resends at most this many batches the cloud had
already taken, each under the key it was taken with (one batch at most with 1). The drain
relies on the cloud keeping a key once, as the simulated clouds do; Nokē publishes nothing on
it (research/noke.md §7.6). In memory: ~8 x 60 KB at most."""


class Batch(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def records(self) -> Sequence[LogRecord]: ...


class Outbox(Protocol):
    async def lease_ahead(
        self, limit: int, count: int, *, busy: Collection[str] = ()
    ) -> Sequence[Batch]: ...
    async def acknowledge(self, *batch_keys: str) -> int: ...
    async def acknowledge_and_lease_ahead(
        self, batch_keys: Sequence[str], limit: int, count: int, *, busy: Collection[str] = ()
    ) -> tuple[int, Sequence[Batch]]: ...
    async def split(self, batch_key: str) -> int: ...
    async def fail(self, batch_key: str, failure: str) -> None: ...
    async def pending_count(self) -> int: ...
    async def set_aside_damaged(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _Drains:
    """What this process's drains of one outbox share."""

    in_flight: set[str] = field(default_factory=set)
    """The keys of the batches being sent now."""
    leasing: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held from a lease until what it leased is marked in flight: a drain whose lease is
    queued behind another's in the store's thread would otherwise name no batch busy and be
    handed the other's (two visits ending together each uploaded the same batch)."""


_DRAINS: weakref.WeakKeyDictionary[Outbox, _Drains] = weakref.WeakKeyDictionary()


def _drains(outbox: Outbox) -> _Drains:
    drains = _DRAINS.get(outbox)
    if drains is None:
        drains = _DRAINS[outbox] = _Drains()
    return drains


class KeepingOutbox(Outbox, Protocol):
    async def append(self, records: Sequence[LogRecord]) -> None: ...
    async def append_and_lease_ahead(
        self, records: Sequence[LogRecord], limit: int, count: int, *, busy: Collection[str] = ()
    ) -> Sequence[Batch]: ...


class KeptForUpload:
    """A visit's log sink when its records go up right after the visit: keeping them also
    leases the batches to send, in the same transaction (one wait for the disk, not two), and
    :meth:`upload` sends those first. Use it as an async context manager: what it leased and
    did not send is left to other drains at exit (still leased, so first in line)."""

    def __init__(
        self, outbox: KeepingOutbox, *, batch_size: int = UPLOAD_BATCH, ahead: int = LEASE_AHEAD
    ) -> None:
        self._outbox = outbox
        self._batch_size = batch_size
        self._ahead = ahead
        self._leased: list[Batch] = []
        self._drains = _drains(outbox)
        self._closed = False
        self._keeping: set[asyncio.Future[None]] = set()

    async def __aenter__(self) -> KeptForUpload:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closed = True
        if self._keeping:  # a visit cancelled while keeping: its end waits for the keeping
            await asyncio.wait(self._keeping)
        self._drains.in_flight.difference_update(batch.key for batch in self._leased)
        self._leased = []

    async def append(self, records: Sequence[LogRecord]) -> None:
        """Keep ``records`` (durable when this returns) and lease what goes up next.

        Keeping runs to its end even when the caller is cancelled meanwhile (it may first wait
        for another drain's lease), as a store transaction does once it is submitted, and the
        sink's exit waits for it: records a lock gave are never dropped for want of a batch."""
        keeping = asyncio.ensure_future(self._keep(records))
        self._keeping.add(keeping)
        keeping.add_done_callback(self._keeping.discard)
        try:
            await asyncio.shield(keeping)
        except asyncio.CancelledError:
            keeping.add_done_callback(_retrieved)
            raise

    async def _keep(self, records: Sequence[LogRecord]) -> None:
        async with self._drains.leasing:
            try:
                leased = await self._outbox.append_and_lease_ahead(
                    records, self._batch_size, self._ahead, busy=[*self._drains.in_flight]
                )
            except StoreDamaged:
                # Damage the lease ran into (none of it committed) must not cost the visit its
                # records: kept alone, they wait for the drain, which sets the damage aside.
                await self._outbox.append(records)
                return
            if self._closed:  # the visit is over: they stay leased, first in line
                return
            self._drains.in_flight.update(batch.key for batch in leased)
            self._leased.extend(leased)

    async def upload(self, cloud: Uploader) -> int:
        """:func:`drain_outbox`, starting with the batches leased when the records were kept."""
        leased, self._leased = self._leased, []
        return await drain_outbox(
            cloud, self._outbox, batch_size=self._batch_size, ahead=self._ahead, leased=leased
        )


def _retrieved(keeping: asyncio.Future[None]) -> None:
    """A keeping whose caller was cancelled has nobody to raise to: the log says it failed."""
    if not keeping.cancelled() and (error := keeping.exception()) is not None:
        _log.warning("a visit's records could not be kept: %s", error)


async def drain_outbox(
    cloud: Uploader,
    outbox: Outbox,
    *,
    batch_size: int = UPLOAD_BATCH,
    ahead: int = LEASE_AHEAD,
    on_progress: Callable[[int], None] | None = None,
    leased: Sequence[Batch] = (),
) -> int:
    """Upload every pending record, batch by batch; returns how many were acknowledged.
    Batches the cloud refuses for good are set aside (see ``Outbox.failed``).

    Batches are leased ``ahead`` at a time. While one group is on its way, the store
    acknowledges the group before (the cloud has it) and leases the next, in one transaction:
    the disk's work hides behind the network's, and commits once per group. A batch leased
    so waits its turn as any leased batch does (first in line next time).

    Drains of one outbox in one process (a kiosk's visits each upload their records) pass
    over each other's batches in flight instead of sending them again: each leases what is
    not on its way yet, and the cloud sees each batch once.

    ``leased``: batches this process leased and marked in flight already (see
    :class:`KeptForUpload`), sent first."""
    drains = _drains(outbox)
    mine = {batch.key for batch in leased}
    try:
        return await _drain(cloud, outbox, batch_size, ahead, on_progress, drains, mine, leased)
    finally:
        # Left leased (if not acknowledged): first next time.
        drains.in_flight.difference_update(mine)


async def _drain(
    cloud: Uploader,
    outbox: Outbox,
    batch_size: int,
    ahead: int,
    on_progress: Callable[[int], None] | None,
    drains: _Drains,
    mine: set[str],
    leased: Sequence[Batch],
) -> int:
    in_flight, leasing = drains.in_flight, drains.leasing

    def taken(batches: Sequence[Batch]) -> Sequence[Batch]:
        keys = {batch.key for batch in batches}
        mine.update(keys)
        in_flight.update(keys)
        return batches

    async def lease() -> Sequence[Batch]:
        async with leasing:
            return taken(await _lease(outbox, batch_size, ahead, busy=in_flight))

    async def advance(sent: Sequence[Batch]) -> tuple[int, Sequence[Batch]]:
        async with leasing:
            acknowledged, following = await _advance(
                outbox, sent, batch_size, ahead, busy=[*in_flight]
            )
            return acknowledged, taken(following)

    def done(batches: Sequence[Batch]) -> None:
        keys = {batch.key for batch in batches}
        mine.difference_update(keys)
        in_flight.difference_update(keys)

    uploaded = 0
    with lock_context(None, "upload logs"):
        group = leased or await lease()
        sent: Sequence[Batch] = ()  # the cloud has them; their acknowledgement is still to commit
        while group:
            work = asyncio.ensure_future(advance(sent))
            posted = 0
            try:
                for batch in group:
                    await cloud.upload(batch.records, idempotency_key=batch.key)
                    posted += 1
            except (CloudRejected, UnsendableRecord) as exc:
                if not refuses_the_batch(exc):
                    work.cancel()  # the store's work is whole or undone; either is safe
                    raise
                acknowledged, following = await _settled(outbox, work)
                uploaded += acknowledged
                done([*sent, *following])  # leased ahead, not sent: first in line again
                if posted:  # those before the refused one went up: the cloud has them
                    uploaded += await _acknowledged(outbox, group[:posted])
                refused = group[posted]
                if len({record.lock_id for record in refused.records}) > 1:
                    await outbox.split(refused.key)  # find which lock it was, one at a time
                else:
                    await outbox.fail(refused.key, exc.one_line())
                done(group)
                sent, group = (), await lease()
                continue
            except BaseException:
                work.cancel()
                raise
            try:
                acknowledged, following = await work
            except StoreDamaged:
                # Nothing of it committed. Set the damaged rows aside, then start again from
                # what is leased: resent batches keep their keys, so the cloud takes them once.
                await _set_damage_aside(outbox)
                done([*sent, *group])
                sent, group = (), await lease()
                continue
            done(sent)
            uploaded += acknowledged
            if on_progress is not None and acknowledged:
                on_progress(uploaded)
            sent, group = group, following
        if sent:
            try:
                uploaded += await outbox.acknowledge(*(batch.key for batch in sent))
                done(sent)
            except StoreDamaged:
                done(sent)
                # The cloud has the batches; a damaged row stops SQLite deleting them. Set the
                # damaged rows aside, then the same keys go again (the cloud dedupes them).
                await _set_damage_aside(outbox)
                before = uploaded
                return before + await drain_outbox(
                    cloud,
                    outbox,
                    batch_size=batch_size,
                    ahead=ahead,
                    on_progress=None if on_progress is None else lambda n: on_progress(before + n),
                )
            if on_progress is not None:
                on_progress(uploaded)
    return uploaded


async def _advance(
    outbox: Outbox, sent: Sequence[Batch], batch_size: int, ahead: int, *, busy: Sequence[str]
) -> tuple[int, Sequence[Batch]]:
    if not sent:
        return 0, await outbox.lease_ahead(batch_size, ahead, busy=busy)
    keys = [batch.key for batch in sent]
    return await outbox.acknowledge_and_lease_ahead(keys, batch_size, ahead, busy=busy)


async def _settled(
    outbox: Outbox, work: asyncio.Future[tuple[int, Sequence[Batch]]]
) -> tuple[int, Sequence[Batch]]:
    """How many the store's work acknowledged, and what it leased ahead (which stays leased,
    first in line); after damage (none of it committed), the damaged rows set aside, and 0."""
    try:
        return await work
    except StoreDamaged:
        await _set_damage_aside(outbox)
        return 0, ()


async def _acknowledged(outbox: Outbox, batches: Sequence[Batch]) -> int:
    """Acknowledge batches the cloud took; after damage, set it aside and leave them leased
    (they go again under the same keys, which the cloud keeps once)."""
    try:
        return await outbox.acknowledge(*(batch.key for batch in batches))
    except StoreDamaged:
        await _set_damage_aside(outbox)
        return 0


async def _lease(
    outbox: Outbox, batch_size: int, ahead: int, *, busy: Collection[str] = ()
) -> Sequence[Batch]:
    while True:
        try:
            return await outbox.lease_ahead(batch_size, ahead, busy=[*busy])
        except StoreDamaged:
            await _set_damage_aside(outbox)


async def _set_damage_aside(outbox: Outbox) -> None:
    """After SQLite reported damage: set the damaged rows aside, or stop when none of it is
    in this stream's rows (the damage then is elsewhere, and retrying would not help)."""
    try:
        found = await outbox.set_aside_damaged()
    except StoreDamaged:
        raise
    if not found:
        raise StoreDamaged(
            "the store is damaged and none of it is in this vendor's pending records; "
            "nothing was uploaded past it"
        )


REFUSED_STATUSES = frozenset({400, 409, 422})
"""HTTP answers about the request's content (a problem+json naming a broken rule, say)."""


def refuses_the_batch(exc: CloudRejected | UnsendableRecord) -> bool:
    """The cloud will never take these records as they are (an unknown lock, a record it
    cannot read, a record we cannot even send): retrying cannot help, and holding the queue
    would strand every later record. Anything else (credentials, a wrong URL's 404, limits,
    outages) stops the drain instead."""
    if isinstance(exc, UnsendableRecord):
        return True
    if is_transient(exc) or isinstance(exc, AuthFailed | RateLimited):
        return False
    return isinstance(exc, UnknownLock) or exc.status in REFUSED_STATUSES or exc.about_content
