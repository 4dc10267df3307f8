"""The store's schema, as the migrations that build it: version N is reached by running
``MIGRATIONS[N-1]`` in order (:mod:`blelock.store.db` runs them when it opens a store).
"""

from __future__ import annotations

from typing import Final

__all__ = ["LATEST_VERSION", "MIGRATIONS"]

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the offline-key cache, the log outbox, and the marker/key check.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('application', 'blelock');

    CREATE TABLE offline_keys (
        lock_id      TEXT NOT NULL,
        tracking_key TEXT NOT NULL,
        sealed       BLOB NOT NULL,    -- nonce || AES-GCM(offline key, unlock command)
        fetched_at   INTEGER NOT NULL, -- unix seconds: the last sync that listed this key
        expires_at   INTEGER NOT NULL, -- fetched_at + blelock's offline-key lifetime
        revoked_at   INTEGER,          -- unix seconds: the sync that no longer listed it
        PRIMARY KEY (lock_id, tracking_key)
    ) WITHOUT ROWID;

    CREATE TABLE outbox_batches (
        key       TEXT PRIMARY KEY,    -- the idempotency key the cloud sees, uuid4 hex
        formed_at INTEGER NOT NULL     -- unix seconds, for the curious
    );
    CREATE TABLE outbox (
        id          INTEGER PRIMARY KEY, -- append order (never reused below a live row)
        lock_id     TEXT NOT NULL,
        session     TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        payload     TEXT NOT NULL,
        batch_key   TEXT REFERENCES outbox_batches (key),
        UNIQUE (lock_id, session, payload)
    );
    -- lease() takes the oldest unleased rows; acknowledge() and re-lease find a batch's rows.
    CREATE INDEX outbox_unleased ON outbox (id) WHERE batch_key IS NULL;
    CREATE INDEX outbox_by_batch ON outbox (batch_key) WHERE batch_key IS NOT NULL;
    """,
    # 2: a second vendor (Keyless). Outbox rows and batches name their vendor's cloud; batches
    # the cloud refused for good are set aside with the reason; log
    # cursors remember the last sequence number collected per lock and log; the operating
    # device's credentials, Keyless keys and lock certificates.
    """
    ALTER TABLE outbox ADD COLUMN vendor TEXT NOT NULL DEFAULT 'noke';
    ALTER TABLE outbox_batches ADD COLUMN vendor TEXT NOT NULL DEFAULT 'noke';
    -- A batch the cloud refused for good is set aside (not deleted) so the rest still flow.
    ALTER TABLE outbox_batches ADD COLUMN failed_at INTEGER;
    ALTER TABLE outbox_batches ADD COLUMN failure TEXT;
    CREATE INDEX outbox_unleased_by_vendor ON outbox (vendor, id) WHERE batch_key IS NULL;

    CREATE TABLE log_cursors (
        lock_id       TEXT NOT NULL,
        log           TEXT NOT NULL,    -- 'audit' | 'system'
        last_sequence INTEGER NOT NULL, -- the highest sequence number in the outbox or sent
        PRIMARY KEY (lock_id, log)
    ) WITHOUT ROWID;

    CREATE TABLE secrets (
        name   TEXT PRIMARY KEY,
        sealed BLOB NOT NULL            -- nonce || AES-GCM(value), the name as associated data
    ) WITHOUT ROWID;

    CREATE TABLE keyless_keys (
        lock_id    TEXT NOT NULL,       -- the lockingDeviceId
        key_id     TEXT NOT NULL,
        kind       TEXT NOT NULL,       -- 'OPERATING' | 'OFFLINE'
        role       TEXT NOT NULL,       -- 'primary' | 'alternative'
        not_before INTEGER NOT NULL,    -- unix seconds, the grant's own window
        not_after  INTEGER NOT NULL,
        sealed     BLOB NOT NULL,       -- the signed grant and, for offline keys, its private key
        fetched_at INTEGER NOT NULL,
        PRIMARY KEY (lock_id, key_id, role)
    ) WITHOUT ROWID;

    CREATE TABLE keyless_locks (
        lock_id             TEXT PRIMARY KEY,
        certificate         BLOB NOT NULL,  -- the lock's operational certificate (DER, public)
        pending_certificate BLOB,           -- issued for a re-keying, to install next visit
        fetched_at          INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: vendor plugins bring their own tables; each plugin's schema version is kept here.
    # (The offline_keys and keyless_* tables above predate plugins and stay where they are.)
    """
    CREATE TABLE plugin_schema (
        plugin  TEXT PRIMARY KEY,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 4: access grants (blelock.access): what was asked for, each lock's plan and status, and
    # what each vendor was given. Instants are unix seconds (UTC); JSON columns hold no secret.
    """
    CREATE TABLE access_grants (
        id            TEXT PRIMARY KEY,
        holder_name   TEXT NOT NULL,
        identities    TEXT NOT NULL,     -- JSON {identity name: value}
        starts_at     INTEGER NOT NULL,
        ends_at       INTEGER,
        windows       TEXT NOT NULL,     -- JSON [{days, start, end}], lock-local minutes
        timezone      TEXT NOT NULL,
        uses          INTEGER,           -- NULL: unlimited
        rounded       INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        revoked_at    INTEGER,           -- a revocation was asked for then
        next_check_at INTEGER,           -- the reconciler's next look; NULL: nothing left
        lease_owner   TEXT,
        lease_until   REAL,
        sealed        BLOB NOT NULL DEFAULT x''  -- the holder's codes (JSON), under the data key
    );
    CREATE INDEX access_grants_due ON access_grants (next_check_at)
        WHERE next_check_at IS NOT NULL;
    CREATE TABLE access_targets (
        grant_id   TEXT NOT NULL REFERENCES access_grants (id),
        vendor     TEXT NOT NULL,
        lock_id    TEXT NOT NULL,
        plan       TEXT NOT NULL,        -- JSON: the schedule after rounding, what was rounded
        status     TEXT NOT NULL,
        reason     TEXT,                 -- the vendor's reason, for status error
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (grant_id, vendor, lock_id)
    ) WITHOUT ROWID;
    CREATE TABLE access_items (
        grant_id    TEXT NOT NULL REFERENCES access_grants (id),
        vendor      TEXT NOT NULL,
        lock_id     TEXT NOT NULL,
        item_key    TEXT NOT NULL,
        starts_at   INTEGER NOT NULL,
        ends_at     INTEGER,
        enforced_by TEXT NOT NULL,       -- vendor | reconciler
        native      TEXT NOT NULL,       -- JSON, the vendor's own fields
        state       TEXT NOT NULL,       -- applying | applied | removing | removed | error
        ref         TEXT,                -- the vendor's id for it
        confirmed   INTEGER NOT NULL,
        attempts    INTEGER NOT NULL,
        error       TEXT,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (grant_id, vendor, lock_id, item_key)
    ) WITHOUT ROWID;
    CREATE INDEX access_items_by_lock ON access_items (vendor, lock_id) WHERE ref IS NOT NULL;
    """,
    # 5: a batch leased from the stream is a range of ids, not a mark on every row: forming
    # and acknowledging a batch then costs one row of outbox_batches, not an UPDATE of each
    # record. Rows keep batch_key NULL inside a range; a batch split per lock or set aside (and
    # one leased before this version) still marks its rows. A range's rows are that vendor's
    # unmarked rows between first_id and last_id; the vendor's unleased rows are its unmarked
    # rows above the highest range still held (a new row's id is above every live row's, and a
    # range's last row lives as long as the range). outbox_unleased (v1) is covered by
    # outbox_unleased_by_vendor (v2), which the range queries use too.
    """
    ALTER TABLE outbox_batches ADD COLUMN first_id INTEGER;
    ALTER TABLE outbox_batches ADD COLUMN last_id INTEGER;
    CREATE INDEX outbox_ranges ON outbox_batches (vendor, last_id) WHERE last_id IS NOT NULL;
    DROP INDEX outbox_unleased;
    """,
)
"""Schema version N is reached by running ``MIGRATIONS[N-1]``; never edit a released entry."""

LATEST_VERSION: Final = len(MIGRATIONS)
