"""Serve a simulated part from its own thread and event loop, for a caller whose own loop is
not running yet (a CLI command that calls ``asyncio.run``, a benchmark)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from simulators.event_loop import precise_loop

__all__ = ["served_in_thread"]

T = TypeVar("T")
STARTUP_TIMEOUT_S = 30.0


@contextlib.contextmanager
def served_in_thread(serve: Callable[[], AbstractAsyncContextManager[T]]) -> Iterator[T]:
    """Enter ``serve()`` in a new thread's loop; yield what it yields; leave it on exit."""
    loop = precise_loop()  # the simulated part's own clock: see simulators.event_loop
    ready, entered = threading.Event(), []
    stop: asyncio.Future[None] | None = None

    async def run() -> None:
        nonlocal stop
        stop = loop.create_future()
        async with serve() as value:
            entered.append(value)
            ready.set()
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    if not ready.wait(STARTUP_TIMEOUT_S):
        raise RuntimeError(f"the simulator did not start within {STARTUP_TIMEOUT_S:g} s")
    try:
        yield entered[0]
    finally:
        loop.call_soon_threadsafe(_resolve, stop)
        thread.join(STARTUP_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()


def _resolve(stop: asyncio.Future[None] | None) -> None:
    if stop is not None and not stop.done():
        stop.set_result(None)
