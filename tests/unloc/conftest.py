"""The simulated Unloc on 127.0.0.1 in the test's loop, and a client, sharing one test clock:
the client's pauses move the time the cloud reads, so no test sleeps."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from blelock.cloud._http import RetryPolicy
from blelock.vendors.unloc.cloud import UnlocCloud
from simulators.unloc_cloud import UnlocState, unloc_app
from simulators.unloc_cloud.state import SimLock
from simulators.world import _serve_http

START = dt.datetime(2026, 3, 25, 12, 0, tzinfo=dt.UTC)
"""A Wednesday, four days before Europe's spring daylight-saving change."""
JOB_DELAY = dt.timedelta(seconds=5)


class StepClock:
    """blelock's Clock, and the simulated cloud's ``now``: sleeping moves it, instantly."""

    def __init__(self, at: dt.datetime = START) -> None:
        self.at = at
        self.mono = 1000.0
        self.slept: list[float] = []

    def now_utc(self) -> dt.datetime:
        return self.at

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)
        self.mono += seconds

    def set(self, at: dt.datetime) -> None:
        self.advance((at - self.at).total_seconds())


@dataclass
class Unloc:
    state: UnlocState
    cloud: UnlocCloud
    clock: StepClock
    url: str
    oslo: SimLock
    sydney: SimLock

    def client(self, **changes: object) -> UnlocCloud:
        """Another client of the same cloud (other credentials, …)."""
        values: dict[str, object] = {
            "base_url": self.url,
            "client_id": self.state.client_id,
            "client_secret": SecretStr(self.state.client_secret),
            "project_id": self.state.project_id,
        } | changes
        return UnlocCloud(**values, clock=self.clock, retry=RetryPolicy(attempts=1))  # type: ignore[arg-type]

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def path(self, *parts: str) -> str:
        return "/".join((self.url.rstrip("/"), "v2/projects", self.state.project_id, *parts))


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def state(clock: StepClock) -> UnlocState:
    """Made outside the event loop: loading a time zone reads its file."""
    state = UnlocState.create(clock.now_utc, job_delay=JOB_DELAY)
    connection = state.add_connection()
    state.add_lock("Unit 1", "Europe/Oslo", connection.id)
    state.add_lock("Unit 2", "Australia/Sydney", connection.id)
    return state


@pytest.fixture
async def unloc(clock: StepClock, state: UnlocState) -> AsyncIterator[Unloc]:
    oslo, sydney = state.locks.values()
    async with _serve_http(unloc_app(state)) as url:
        unloc = Unloc(state, None, clock, url, oslo, sydney)  # type: ignore[arg-type]
        unloc.cloud = unloc.client()
        async with unloc.cloud:
            yield unloc
