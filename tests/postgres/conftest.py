"""The postgres tier: one real PostgreSQL 15 server per session, a fresh database per test."""

from tests.postgres_server import pg_database, pg_server

__all__ = ["pg_database", "pg_server"]
