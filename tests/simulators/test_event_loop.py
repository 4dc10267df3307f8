"""The simulated world's loop keeps its timers to microseconds, and a process running it stays
within the descriptors that loop can watch."""

from __future__ import annotations

import asyncio
import resource
import selectors
from collections.abc import Iterator

import pytest

from simulators.event_loop import SELECT_LIMIT, cap_open_files, precise_loop, run


@pytest.fixture
def restored_limit() -> Iterator[tuple[int, int]]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


async def _selector() -> selectors.BaseSelector:
    return asyncio.get_running_loop()._selector  # type: ignore[attr-defined,no-any-return]


def test_run_caps_the_open_files_and_waits_with_select(restored_limit: tuple[int, int]) -> None:
    assert isinstance(run(_selector()), selectors.SelectSelector)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft <= SELECT_LIMIT


def test_a_process_allowed_more_files_than_select_watches_keeps_the_default_loop(
    restored_limit: tuple[int, int],
) -> None:
    _, hard = restored_limit
    if hard != resource.RLIM_INFINITY and hard <= SELECT_LIMIT:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        expected: type[selectors.BaseSelector] = selectors.SelectSelector
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (SELECT_LIMIT + 1, hard))
        expected = type(selectors.DefaultSelector())
    loop = precise_loop()
    try:
        assert type(loop.run_until_complete(_selector())) is expected
    finally:
        loop.close()


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
