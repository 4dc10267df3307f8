"""A simulated cloud's answer takes the stated latency, the simulator's own work included."""

from __future__ import annotations

from collections import deque

import pytest

from simulators.round_trip import ModelledWaits, WaitLog, within_round_trip


class _Clock:
    """Time that moves only when the simulated cloud's work or a wait moves it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.asked: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(("work_s", "held_s"), [(0.0, 0.040), (0.015, 0.025), (0.055, 0.0)])
async def test_the_answer_is_held_for_what_is_left_of_the_latency(
    work_s: float, held_s: float
) -> None:
    clock = _Clock()

    async def answer() -> str:
        clock.now += work_s  # the simulator's own Python time
        return "answer"

    got = await within_round_trip(0.040, answer, sleep=clock.sleep, clock=clock)
    assert got == "answer"
    assert clock.asked == [pytest.approx(held_s)]
    assert clock.now == pytest.approx(100.0 + max(0.040, work_s))


async def test_no_latency_waits_for_nothing() -> None:
    clock = _Clock()

    async def answer() -> int:
        return 7

    assert await within_round_trip(0.0, answer, sleep=clock.sleep, clock=clock) == 7
    assert clock.asked == []


def test_overlapping_round_trips_are_charged_once() -> None:
    waits = ModelledWaits()
    waits.charge(0.0, 0.040)
    waits.charge(0.040, 0.080)  # one after the other: both
    assert waits.seconds == pytest.approx(0.080)
    for start in (0.100, 0.101, 0.102):  # sent at once: one latency, and the stragglers' tail
        waits.charge(start, start + 0.040)
    assert waits.seconds == pytest.approx(0.080 + 0.042)
    waits.charge(0.110, 0.130)  # inside what is covered: nothing
    assert waits.seconds == pytest.approx(0.122)


async def test_each_round_trip_is_charged_from_its_arrival() -> None:
    clock, waits = _Clock(), ModelledWaits()

    async def answer() -> None:
        clock.now += 0.005

    await within_round_trip(0.040, answer, waits=waits, sleep=clock.sleep, clock=clock)
    await within_round_trip(0.040, answer, waits=waits, sleep=clock.sleep, clock=clock)
    assert waits.seconds == pytest.approx(0.080)


def test_the_wait_log_counts_waits_that_ran_at_once_once() -> None:
    log = WaitLog()
    log.add(0.000, 0.050, "advert AA")  # a scan listening for its lock ...
    log.add(0.010, 0.050, "cloud")  # ... while a sync's two round trips run
    log.add(0.050, 0.090, "cloud")
    log.add(0.000, 0.050, "advert BB")  # another lock, heard by the same scan
    log.add(0.100, 0.100, "link")  # no wait: not kept
    assert len(log.windows) == 4
    assert log.covered(0.0, 1.0) == pytest.approx(0.090)
    assert log.covered(0.0, 1.0, counts=lambda what: what == "cloud") == pytest.approx(0.080)
    assert log.covered(0.020, 0.060) == pytest.approx(0.040)  # clipped to the stretch
    assert log.covered(0.090, 1.0) == 0.0


def test_the_wait_log_names_the_stretches_between_its_waits() -> None:
    log = WaitLog()
    log.add(0.010, 0.050, "advert AA")
    log.add(0.060, 0.160, "link")
    log.add(0.100, 0.170, "cloud")  # sent while the link waited: no stretch before it
    log.add(0.170, 0.200, "link")  # right after the cloud's: none either
    stretches = log.uncovered(0.0, 0.250)
    assert [(after, before) for after, before, _ in stretches] == [
        (None, "advert AA"),
        ("advert AA", "link"),
        ("link", "cloud"),
        ("cloud", "link"),
        ("link", None),
    ]
    assert [s for _, _, s in stretches] == pytest.approx([0.010, 0.010, 0.0, 0.0, 0.050])
    covered = log.covered(0.0, 0.250)
    assert covered + sum(s for _, _, s in stretches) == pytest.approx(0.250)
    # Clipped to the stretch asked about, as covered() is.
    assert log.uncovered(0.030, 0.070) == [
        (None, "advert AA", 0.0),
        ("advert AA", "link", pytest.approx(0.010)),
        ("link", None, 0.0),
    ]


def test_a_wait_log_refuses_a_stretch_it_has_partly_forgotten() -> None:
    log = WaitLog(windows=deque(maxlen=2))
    log.add(0.0, 0.1, "link")
    log.add(0.2, 0.3, "link")
    log.add(0.4, 0.5, "link")  # the first is pushed out
    assert log.covered(0.1, 1.0) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="forgotten"):
        log.covered(0.0, 1.0)


def test_a_cloud_writes_each_round_trip_to_the_log_it_is_given() -> None:
    log = WaitLog()
    waits = ModelledWaits(log=log, what="cloud noke")
    waits.charge(0.0, 0.040)
    waits.charge(0.010, 0.050)  # sent at once with the first: charged its tail, logged whole
    assert waits.seconds == pytest.approx(0.050)
    assert list(log.windows) == [(0.0, 0.040, "cloud noke"), (0.010, 0.050, "cloud noke")]
    assert log.covered(0.0, 1.0) == pytest.approx(waits.seconds)
