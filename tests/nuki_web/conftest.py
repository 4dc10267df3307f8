"""The simulated Nuki Web API served on 127.0.0.1 in the test's loop, on a manual clock that
the client's waits move: no real sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from blelock.cloud._http import RetryPolicy
from blelock.vendors.nuki.web.client import NukiWeb
from simulators.nuki_web import ManualClock, NukiWebState, nuki_web_app
from simulators.world import _serve_http

TOKEN = "nuki-web-test-token-0123456789"
FRONT, BACK, SHED = 17_001, 17_002, 17_003
QUICK = RetryPolicy(attempts=2, base_s=0.001, cap_s=0.002)


@dataclass
class Sim:
    state: NukiWebState
    clock: ManualClock
    url: str
    web: NukiWeb
    raw: httpx.AsyncClient
    """Speaks to the simulator directly, as a client that ignores the rules would."""

    def writes(self, method: str | None = None) -> list[tuple[str, str, object]]:
        return [w for w in self.state.writes if method is None or w[0] == method]


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    clock = ManualClock()
    state = NukiWebState(api_token=TOKEN, clock=clock, delay_s=5.0)
    state.add_lock(FRONT, "Front door")
    state.add_lock(BACK, "Back door")
    state.add_lock(SHED, "Shed", keypad_paired=False)
    async with _serve_http(nuki_web_app(state)) as url:
        web = NukiWeb(url, TOKEN, clock=clock, retry=QUICK, poll_s=1.0, confirm_s=60.0)
        raw = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})
        async with web, raw:
            yield Sim(state, clock, url, web, raw)
