"""The garbage collector is kept off what lives long: a resident process's start-up, and what
was alive when a long job began."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from blelock import collector
from blelock.collector import long_lived_set_aside, set_start_up_aside


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def frozen_afterwards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    assert gc.get_freeze_count() == 0, "another test left objects frozen"
    monkeypatch.setattr(collector, "_resident", False)  # this process is no resident one
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


@pytest.mark.usefixtures("frozen_afterwards")
def test_a_long_job_sets_aside_what_was_alive_and_puts_it_back() -> None:
    before = [_Node()]
    with long_lived_set_aside():
        assert not _tracked(before)
        during = [_Node()]
        with long_lived_set_aside():  # a drain within a sync, or two overlapping
            pass
        assert not _tracked(before), "the inner job's end leaves the outer's freezing"
        assert _tracked(during)
    assert _tracked(before)
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("frozen_afterwards")
def test_a_long_job_in_a_resident_process_leaves_its_freezing_alone() -> None:
    set_start_up_aside()
    frozen = gc.get_freeze_count()
    with long_lived_set_aside():
        pass
    assert gc.get_freeze_count() == frozen > 0


@pytest.mark.usefixtures("frozen_afterwards")
def test_a_job_running_while_start_up_is_set_aside_does_not_undo_it() -> None:
    kept = [_Node()]
    with long_lived_set_aside():  # the upkeep's first round starts with the runner
        set_start_up_aside()
    assert not _tracked(kept), "start-up stays set aside once the job ends"
    with long_lived_set_aside():
        pass
    assert not _tracked(kept)
