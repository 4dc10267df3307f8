"""The postgres tier: one real PostgreSQL 15 server per session, a fresh database per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.postgres_server import fresh_database, postgres_server

_NAMES = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres_server() as conninfo:
        yield conninfo


@pytest.fixture
def pg_database(pg_server: str) -> str:
    return fresh_database(pg_server, f"blelock_test_{next(_NAMES)}")
