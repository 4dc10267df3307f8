"""The only loop that awaits a lock: it runs a sans-I/O exchange (:mod:`blelock.protocol.
exchange`) over a LockLink, and the one deadline helper every visit uses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from blelock.errors import BlelockError, LinkTimeout
from blelock.protocol.exchange import Exchange
from blelock.transport.base import LockLink

__all__ = ["deadline", "drive"]

E = TypeVar("E")


async def drive(
    link: LockLink,
    exchange: Exchange[E],
    *,
    write_timeout: float,
    answer_timeout: float,
    handle: Callable[[E], None] = lambda event: None,
    waiting_for: Callable[[], str] | None = None,
) -> None:
    """Run ``exchange`` until it has nothing more to do. ``handle`` sees every event as it
    comes (and may raise to stop, e.g. on a refusal); ``waiting_for()`` says what an answer
    that never came was for."""
    while (action := exchange.next_action()) is not None:
        if action.characteristic is not None:
            await link.write(
                action.characteristic, action.data, timeout=write_timeout, response=action.response
            )
        if not action.expects_notification:
            continue
        try:
            notification = await link.notification(timeout=answer_timeout)
        except LinkTimeout as exc:
            if waiting_for is None:
                raise
            raise LinkTimeout(f"{waiting_for()} within {answer_timeout:g} s") from exc
        for event in exchange.receive(notification):
            handle(event)


@contextlib.asynccontextmanager
async def deadline(seconds: float, what: str) -> AsyncIterator[None]:
    """Bound a whole visit: past ``seconds``, a LinkTimeout saying ``what`` took too long (a
    timeout already raised as a BlelockError inside passes through as it is)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        if isinstance(exc, BlelockError):
            raise
        raise LinkTimeout(f"{what} took longer than {seconds:g} s") from None
