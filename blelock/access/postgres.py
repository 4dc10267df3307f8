"""Grants in a shared PostgreSQL database (psycopg 3), for a facility with several kiosks or an
office service beside them: the same tables and queries as the local store (:mod:`.store`),
leases taken with ``SELECT … FOR UPDATE SKIP LOCKED`` so reconcilers on several machines do not
work on one grant at once (renewed before each vendor call; the reconciler's docstring says what
window remains).

Offline keys and the outbox stay in each device's own store; only grants are shared. One
connection per process, used from one thread (psycopg's blocking API there keeps the event loop
free and lets the queries be the same code as SQLite's).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from pydantic import SecretStr

from blelock.access.store import Sql, SqlGrants
from blelock.errors import ConfigError, StoreError, UsageError
from blelock.store.crypto import DataKey

__all__ = ["SCHEMA", "open_postgres"]

SCHEMA_VERSION: Final = 1
SCHEMA: Final[tuple[str, ...]] = (
    """
    CREATE TABLE access_grants (
        id            TEXT PRIMARY KEY,
        holder_name   TEXT NOT NULL,
        identities    TEXT NOT NULL,
        starts_at     BIGINT NOT NULL,
        ends_at       BIGINT,
        windows       TEXT NOT NULL,
        timezone      TEXT NOT NULL,
        uses          INTEGER,
        rounded       INTEGER NOT NULL,
        created_at    BIGINT NOT NULL,
        revoked_at    BIGINT,
        next_check_at BIGINT,
        lease_owner   TEXT,
        lease_until   DOUBLE PRECISION,
        sealed        BYTEA NOT NULL DEFAULT ''::bytea
    )
    """,
    "CREATE INDEX access_grants_due ON access_grants (next_check_at) "
    "WHERE next_check_at IS NOT NULL",
    """
    CREATE TABLE access_targets (
        grant_id   TEXT NOT NULL REFERENCES access_grants (id),
        vendor     TEXT NOT NULL,
        lock_id    TEXT NOT NULL,
        plan       TEXT NOT NULL,
        status     TEXT NOT NULL,
        reason     TEXT,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (grant_id, vendor, lock_id)
    )
    """,
    """
    CREATE TABLE access_items (
        grant_id    TEXT NOT NULL REFERENCES access_grants (id),
        vendor      TEXT NOT NULL,
        lock_id     TEXT NOT NULL,
        item_key    TEXT NOT NULL,
        starts_at   BIGINT NOT NULL,
        ends_at     BIGINT,
        enforced_by TEXT NOT NULL,
        native      TEXT NOT NULL,
        state       TEXT NOT NULL,
        ref         TEXT,
        confirmed   INTEGER NOT NULL,
        attempts    INTEGER NOT NULL,
        error       TEXT,
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (grant_id, vendor, lock_id, item_key)
    )
    """,
    "CREATE INDEX access_items_by_lock ON access_items (vendor, lock_id) WHERE ref IS NOT NULL",
)
"""The same tables as the local store's migration 4, in PostgreSQL's types."""
_SCHEMA_LOCK: Final = 0x626C656C  # "blel": one migrator at a time across machines
CONNECT_TIMEOUT_S: Final = 10


def _failure(exc: Exception) -> StoreError:
    # psycopg's text names the server and what failed; never the password (libpq omits it).
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreError(
        f"the shared grant database failed: {first}",
        hint="check access_database in the settings and that the PostgreSQL server is up",
    )


class _Connection:
    """One psycopg connection, owned by one thread."""

    def __init__(self, conninfo: str) -> None:
        import psycopg

        self._psycopg = psycopg
        try:
            self.conn = psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.ProgrammingError as exc:  # a malformed connection string
            raise UsageError(
                f"access_database is not a PostgreSQL connection string: {exc}"
            ) from None
        except psycopg.Error as exc:
            raise _failure(exc) from None
        self._migrate()

    def _migrate(self) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS blelock_schema (part TEXT PRIMARY KEY, "
                "version INTEGER NOT NULL)"
            )
            cur.execute("SELECT version FROM blelock_schema WHERE part = 'access'")
            row = cur.fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the shared grant database was made by a newer blelock (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); nothing was changed",
                    hint="upgrade blelock on this device",
                )
            if version < SCHEMA_VERSION:
                for statement in SCHEMA:
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO blelock_schema (part, version) VALUES ('access', %s) "
                    "ON CONFLICT (part) DO UPDATE SET version = excluded.version",
                    (SCHEMA_VERSION,),
                )

    def run(self, fn: Callable[[Sql], Any]) -> Any:
        psycopg = self._psycopg
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                return fn(Sql(cur, "postgres"))
        except psycopg.errors.UniqueViolation as exc:
            raise UsageError(f"that grant exists already ({_failure(exc).message})") from None
        except psycopg.Error as exc:
            raise _failure(exc) from None

    def close(self) -> None:
        self.conn.close()


def code_key(secret: SecretStr | None) -> Callable[[], Awaitable[DataKey]] | None:
    """The facility's shared key for holders' codes (``access_code_key``), or None."""
    if secret is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(secret.get_secret_value().encode())
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            "access_code_key is not 32 bytes in URL-safe base64",
            hint="make one with `python3 -c 'import os, base64; "
            "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`",
        )
    key = DataKey(raw, "access_code_key")

    async def given() -> DataKey:
        return key

    return given


@contextlib.asynccontextmanager
async def open_postgres(conninfo: str, codes: SecretStr | None = None) -> AsyncIterator[SqlGrants]:
    """The grant store in the database ``conninfo`` names (migrated on first use); holders'
    codes are sealed under ``codes`` (the facility's ``access_code_key``)."""
    keys = code_key(codes)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blelock-grants")
    loop = asyncio.get_running_loop()
    try:
        connection = await loop.run_in_executor(executor, _Connection, conninfo)
        try:

            async def run(fn: Callable[[Sql], Any], write: bool) -> Any:
                return await loop.run_in_executor(executor, connection.run, fn)

            yield SqlGrants(run, "postgres", keys)
        finally:
            await loop.run_in_executor(executor, connection.close)
    finally:
        executor.shutdown(wait=False)
