"""A real PostgreSQL 15 server for the shared-grant tier, started by the test suite.

``initdb`` and ``pg_ctl`` refuse to run as root, and CI runs as root: there the server runs as
the unprivileged ``postgres`` user (``runuser``), its data directory a temporary one handed to
that user. It listens on a free loopback port only. A machine without PostgreSQL skips the tier
with one line saying so; under ``CI=true`` that is a failure instead (and ``.ci/run`` checks the
tier ran).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["find_binaries", "pg_database", "pg_server", "postgres_server", "require_postgres"]

SEARCH = ("/usr/local/bin", "/usr/lib/postgresql/15/bin")
START_TIMEOUT_S = 60
UNPRIVILEGED = "postgres"


def find_binaries() -> tuple[str, str] | None:
    """``initdb`` and ``pg_ctl``, from PATH or the places Debian's postgresql-15 puts them."""
    for folder in (None, *SEARCH):
        initdb = shutil.which("initdb", path=folder)
        pg_ctl = shutil.which("pg_ctl", path=folder)
        if initdb and pg_ctl:
            return initdb, pg_ctl
    return None


def require_postgres() -> tuple[str, str]:
    found = find_binaries()
    if found is None:
        reason = "PostgreSQL 15 (initdb, pg_ctl) is not installed: the postgres tier is skipped"
        if os.environ.get("CI") == "true":
            pytest.fail(reason.replace("is skipped", "may not be skipped in CI"))
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        pytest.fail(f"running as root, and there is no {UNPRIVILEGED!r} user to run PostgreSQL")
    return ["runuser", "-u", UNPRIVILEGED, "--", *command]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A server for the block; yields a connection string (trust auth on loopback)."""
    initdb, pg_ctl = require_postgres()
    root = Path(tempfile.mkdtemp(prefix="blelock-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam(UNPRIVILEGED)
        for path in (root, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    port = _free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": START_TIMEOUT_S}
    try:
        subprocess.run(
            _as_server_user(
                [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
                 "-E", "UTF8"]
            ),
            **run,  # type: ignore[call-overload]
        )  # fmt: skip
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        subprocess.run(
            _as_server_user(
                [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"),
                 "-w", "-t", str(START_TIMEOUT_S), "start"]
            ),
            **run,  # type: ignore[call-overload]
        )  # fmt: skip
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=START_TIMEOUT_S,
            )
    except subprocess.CalledProcessError as exc:
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pytest.fail(f"PostgreSQL did not start: {exc.stderr or exc.stdout}\n{tail}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


_NAMES = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """One PostgreSQL server for the session (skipped, or failed in CI, without PostgreSQL)."""
    with postgres_server() as conninfo:
        yield conninfo


@pytest.fixture
def pg_database(pg_server: str) -> str:
    """A fresh database on it for one test."""
    return fresh_database(pg_server, f"blelock_test_{next(_NAMES)}")


def fresh_database(server: str, name: str) -> str:
    """A new empty database on ``server``; its connection string."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.rsplit("/", 1)[0] + f"/{name}"
