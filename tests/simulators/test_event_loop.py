"""The simulated world's loop keeps its timers to microseconds, and blelock-sim stays within
the descriptors that loop can watch."""

from __future__ import annotations

import asyncio
import resource
import selectors
from collections.abc import Iterator

import pytest

from simulators.event_loop import SELECT_LIMIT, cap_open_files, run


def test_run_uses_a_loop_that_waits_with_select() -> None:
    async def selector() -> selectors.BaseSelector:
        loop = asyncio.get_running_loop()
        return loop._selector  # type: ignore[attr-defined,no-any-return]

    assert isinstance(run(selector()), selectors.SelectSelector)


@pytest.fixture
def restored_limit() -> Iterator[tuple[int, int]]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_the_open_files_limit_is_lowered_to_the_cap(restored_limit: tuple[int, int]) -> None:
    soft, hard = restored_limit
    cap = min(soft, SELECT_LIMIT) - 1
    cap_open_files(cap)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (cap, hard)


def test_a_lower_limit_is_left_as_it_is(restored_limit: tuple[int, int]) -> None:
    _, hard = restored_limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    cap_open_files()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (256, hard)
