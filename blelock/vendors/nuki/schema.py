"""The Nuki plugin's tables (its store migrations); no imports, so the plugin names them
without loading its store code."""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS = (
    """
    CREATE TABLE nuki_locks (
        lock_id         TEXT PRIMARY KEY,   -- the lock's MAC
        name            TEXT NOT NULL,
        ultra           INTEGER NOT NULL,
        auth_id         INTEGER NOT NULL,
        app_id          INTEGER NOT NULL,
        lock_public_key BLOB NOT NULL,
        sealed          BLOB NOT NULL,      -- the shared key (AES-GCM under the data key)
        paired_at       INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE nuki_pins (
        lock_id TEXT PRIMARY KEY,
        sealed  BLOB NOT NULL               -- the security PIN
    ) WITHOUT ROWID;
    CREATE TABLE nuki_log (
        lock_id     TEXT NOT NULL,
        log_index   INTEGER NOT NULL,       -- the lock's own running index
        at          INTEGER,                -- unix seconds by the lock's clock; NULL: unset
        auth_id     INTEGER NOT NULL,
        name        TEXT NOT NULL,
        type        INTEGER NOT NULL,
        data        BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (lock_id, log_index)
    ) WITHOUT ROWID;
    """,
)
"""Version N of the plugin's schema is reached by running ``MIGRATIONS[N-1]``."""
