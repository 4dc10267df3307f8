"""Helpers for running `blelock` as a user would: a fresh process, settings from the environment."""

from __future__ import annotations

import os

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
