"""A resident process sets what it started with aside from the garbage collector."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from blelock.service.resident import set_start_up_aside


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def frozen_afterwards() -> Iterator[None]:
    assert gc.get_freeze_count() == 0, "another test left objects frozen"
    try:
        yield
    finally:
        gc.unfreeze()


def _tracked(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


@pytest.mark.usefixtures("frozen_afterwards")
def test_what_is_alive_at_start_up_is_out_of_every_collection() -> None:
    kept = [_Node()]
    assert _tracked(kept)
    set_start_up_aside()
    assert gc.get_freeze_count() > 0
    assert not _tracked(kept)
    made_later = [_Node()]
    assert _tracked(made_later), "what visits make later is collected as always"


@pytest.mark.usefixtures("frozen_afterwards")
def test_start_up_garbage_is_collected_not_kept_for_good() -> None:
    gc.disable()  # no collection but the one under test frees the cycle
    try:
        first, second = _Node(), _Node()
        first.other, second.other = second, first  # a cycle: only the collector frees it
        gone = weakref.ref(first)
        del first, second
        set_start_up_aside()
    finally:
        gc.enable()
    assert gone() is None
