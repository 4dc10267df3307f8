"""Helpers for running `blelock` as a user would: a fresh process, settings from the environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from simulators.process import simulator_process
from tests.postgres_server import pg_database, pg_server

__all__ = ["cli_environment", "pg_database", "pg_server"]


def cli_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any BLELOCK_* of the developer's, plus ``settings``;
    the store stays in the test's own directory (set by the autouse ``private_store``)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BLELOCK_")}
    return environment | {
        "BLELOCK_CONFIG": os.devnull,
        "BLELOCK_DATA_DIR": os.environ["BLELOCK_DATA_DIR"],
        "BLELOCK_KEY_DIR": os.environ["BLELOCK_KEY_DIR"],
        **settings,
    }


FAST_RADIO = ("--adv-ms", "5", "--connect-ms", "2", "--interval-ms", "1", "--write-rtt-ms", "1")
"""The simulated radio's latencies (milliseconds) the CLI tests run at."""


@pytest.fixture(scope="module")
def sim_world() -> tuple[str, ...]:
    """The world a module's :func:`sim` simulates (``blelock-sim`` arguments); a module that
    needs another defines its own ``sim_world``."""
    return ("--locks", "2", "--seed", "7")


@pytest.fixture(scope="module")
def sim(sim_world: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """One simulator process for a module's tests: its world over a fast radio, as announced
    (``env`` to reach it, ``locks``)."""
    with simulator_process(*sim_world, *FAST_RADIO) as announced:
        yield announced
