"""The Nokē plugin's own tables (its store migrations): SQL only, so the plugin stays light at
import time. The rows' layout and sealing are in :mod:`blelock.vendors.noke.key_rows`."""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS"]

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: one row per lock (see key_rows' docstring). The per-key rows of core migration 1
    # (``offline_keys``) are carried over by ``key_rows.carry_over`` on first use: re-sealing needs
    # the data key, which SQL does not have. That table stays (the core names it), empty.
    """
    CREATE TABLE noke_lock_keys (
        lock_id TEXT PRIMARY KEY,
        keys    TEXT NOT NULL,  -- JSON [[tracking key, fetched_at, expires_at, revoked_at]]
        sealed  BLOB NOT NULL   -- the live keys' material, lock and keys as associated data
    ) WITHOUT ROWID;
    """,
)
