"""The simulated Unloc: key management over its API v2 on real HTTP (see ``state`` for what it
models and from which sources, ``app`` for the routes)."""

from simulators.unloc_cloud.app import unloc_app
from simulators.unloc_cloud.state import JobOutcome, UnlocFaults, UnlocState, WallClock

__all__ = ["JobOutcome", "UnlocFaults", "UnlocState", "WallClock", "unloc_app"]
