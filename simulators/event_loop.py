"""The simulated world's event loop: its waits end when the latency model says, to a fraction
of a millisecond.

asyncio's default selector on Linux waits with epoll, whose timeout counts whole milliseconds,
rounded up: every modelled wait (an advertisement, a connection event, a cloud round trip) then
ends up to a millisecond late, 0.74 ms at the median on the 2-core machine this was measured on,
and a visit of five waits looks ~4 ms dearer than the model plus the client's own work.
select(2) takes its timeout in microseconds: the same waits end 0.32 ms late at the median there,
the loop's own wake-up. A simulated radio or cloud is the measuring instrument of the benchmarks,
so it keeps the finer clock.

select(2) only watches descriptors below ``FD_SETSIZE`` (1024). :func:`run`, which the
simulator's own processes use (``blelock-sim``, the benchmarks that serve the world), therefore
caps the process's open files there first: past that, accepting another connection fails with
"too many open files", instead of the loop failing on a descriptor it cannot watch. A process
allowed more files (a test run's, say) keeps asyncio's default loop in :func:`precise_loop`.
"""

from __future__ import annotations

import asyncio
import resource
import selectors
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

__all__ = ["SELECT_LIMIT", "cap_open_files", "precise_loop", "run"]

T = TypeVar("T")

SELECT_LIMIT: Final = 1024
"""``FD_SETSIZE`` on Linux: select(2) watches descriptors below it only."""


def precise_loop() -> asyncio.AbstractEventLoop:
    """An asyncio loop whose timers are kept to microseconds (select(2)), not milliseconds; the
    default loop where this process may open descriptors select(2) cannot watch."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > SELECT_LIMIT:
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


def cap_open_files(limit: int = SELECT_LIMIT) -> None:
    """Lower this process's soft limit of open files to ``limit`` (never raise it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a :func:`precise_loop`, this process's open files capped at
    what that loop can watch."""
    cap_open_files()
    with asyncio.Runner(loop_factory=precise_loop) as runner:
        return runner.run(main)
