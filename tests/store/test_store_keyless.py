"""The Keyless part of the store: sealed device credentials and keys, public certificates."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from store_fakes import FakeClock

from blelock.errors import StoreError
from blelock.store.crypto import DataKey
from blelock.store.db import Database
from blelock.vendors.keyless.store import (
    DeviceIdentity,
    KeylessKey,
    KeylessLockRecord,
    KeylessStore,
    PlatformTrust,
)

LOCK = "0d6f4a52-4b8f-4a5b-9a55-6f1f6f1c2a10"
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def store(db: Database, data_key: DataKey, clock: FakeClock) -> KeylessStore:
    return KeylessStore(db, data_key, clock)


def key(clock: FakeClock, key_id: str, kind: str = "OPERATING", **changes: object) -> KeylessKey:
    made = KeylessKey(
        LOCK,
        key_id,
        "OFFLINE" if kind == "OFFLINE" else "OPERATING",
        "primary",
        clock.now - HOUR,
        clock.now + 8 * 24 * HOUR,
        grant=b"signed grant " + key_id.encode(),
        private_key_der=b"pkcs8 " + key_id.encode() if kind == "OFFLINE" else None,
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


async def test_the_device_identity_is_sealed_and_comes_back(
    store: KeylessStore, db: Database
) -> None:
    assert await store.device() is None
    device = DeviceIdentity("5869ca5a-9423-48f5-8d5f-4a2945a203ec", "s3cret-access", b"pk8")
    await store.save_device(device)
    assert await store.device() == device
    assert "s3cret" not in repr(device) and "pk8" not in repr(device)
    sealed = await db.run(lambda c: c.execute("SELECT sealed FROM secrets").fetchone()[0])
    assert b"s3cret-access" not in sealed and b"pk8" not in sealed


async def test_keys_valid_now_come_operating_first_then_offline(
    store: KeylessStore, clock: FakeClock
) -> None:
    await store.replace_keys(
        [
            key(clock, "off-1", "OFFLINE"),
            key(clock, "op-1"),
            key(clock, "expired", not_after=clock.now - dt.timedelta(seconds=1)),
            key(clock, "future", not_before=clock.now + HOUR),
            key(clock, "elsewhere", lock_id="another-lock"),
        ],
        kinds=("OPERATING", "OFFLINE"),
    )
    found = await store.keys_for(LOCK)
    assert [k.key_id for k in found] == ["op-1", "off-1"]
    assert found[0].private_key_der is None and found[1].private_key_der == b"pkcs8 off-1"
    assert found[1].grant == b"signed grant off-1"
    assert len(await store.list_keys()) == 5


async def test_a_sync_replaces_only_the_kinds_it_fetched(
    store: KeylessStore, clock: FakeClock
) -> None:
    await store.replace_keys([key(clock, "op-1"), key(clock, "op-2")], kinds=("OPERATING",))
    await store.replace_keys([key(clock, "off-1", "OFFLINE")], kinds=("OFFLINE",))
    dropped = await store.replace_keys([key(clock, "op-2")], kinds=("OPERATING",))
    assert dropped == 1  # op-1 is no longer listed: revoked or expired at the platform
    assert sorted(k.key_id for k in await store.keys_for(LOCK)) == ["off-1", "op-2"]
    with pytest.raises(ValueError, match="kinds"):
        await store.replace_keys([key(clock, "off-2", "OFFLINE")], kinds=("OPERATING",))


async def test_a_key_whose_window_was_edited_is_refused(
    store: KeylessStore, clock: FakeClock, db: Database
) -> None:
    await store.replace_keys([key(clock, "op-1")], kinds=("OPERATING",))
    later = int((clock.now + 90 * 24 * HOUR).timestamp())
    await db.run(lambda c: c.execute("UPDATE keyless_keys SET not_after = ?", (later,)))
    with pytest.raises(StoreError, match="tampered") as caught:
        await store.keys_for(LOCK)
    assert "signed grant" not in str(caught.value)


async def test_lock_certificates_and_a_pending_one(store: KeylessStore) -> None:
    assert await store.lock(LOCK) is None
    await store.save_lock(LOCK, b"cert v1")
    await store.save_lock(LOCK, b"cert v1", pending_certificate=b"cert v2")
    record = await store.lock(LOCK)
    assert record is not None
    assert (record.certificate, record.pending_certificate) == (b"cert v1", b"cert v2")


async def test_the_pinned_platform_ca_cannot_be_swapped_in_the_database(
    store: KeylessStore, db: Database
) -> None:
    assert await store.platform() is None
    await store.save_platform(PlatformTrust(b"ca der", b"signed list v3"))
    assert await store.platform() == PlatformTrust(b"ca der", b"signed list v3")
    await store.save_device(DeviceIdentity("d", "a", b"k"))
    # Another sealed value moved into its row (the associated data names the row): refused.
    await db.run(
        lambda c: c.execute(
            "UPDATE secrets SET sealed = (SELECT sealed FROM secrets WHERE name = ?) "
            "WHERE name = ?",
            ("keyless.operating_device", "keyless.platform"),
        )
    )
    with pytest.raises(StoreError, match="tampered"):
        await store.platform()


async def test_a_sync_applies_trust_locks_and_keys_together(
    store: KeylessStore, clock: FakeClock
) -> None:
    await store.save_lock(LOCK, b"cert v2 (installed on the last visit)")
    dropped = await store.apply_sync(
        PlatformTrust(b"ca der", b"list"),
        [
            # The platform has not heard of the install yet: it lists v1, with v2 pending.
            KeylessLockRecord(LOCK, b"cert v1", b"cert v2 (installed on the last visit)"),
            KeylessLockRecord("another-lock", b"other cert", None),
        ],
        [key(clock, "op-1")],
        kinds=("OPERATING", "OFFLINE"),
    )
    assert dropped == 0 and await store.platform() == PlatformTrust(b"ca der", b"list")
    kept = await store.lock(LOCK)
    assert kept is not None
    assert (kept.certificate, kept.pending_certificate) == (
        b"cert v2 (installed on the last visit)",
        None,
    )
    other = await store.lock("another-lock")
    assert other is not None and other.certificate == b"other cert"
    assert [k.key_id for k in await store.keys_for(LOCK)] == ["op-1"]


async def test_a_sync_whose_last_part_fails_changes_nothing(
    store: KeylessStore, db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17 item 9: the sync's single transaction. The trust material and the locks'
    certificates are written first; when the keys' part then fails, none of it may stay."""
    import sqlite3

    from blelock.vendors.keyless import store as keyless_store

    await store.apply_sync(
        PlatformTrust(b"ca der", b"list v1"),
        [KeylessLockRecord(LOCK, b"cert v1", None)],
        [key(clock, "op-1")],
        kinds=("OPERATING", "OFFLINE"),
    )

    def snapshot(conn: sqlite3.Connection) -> list[list[tuple[object, ...]]]:
        return [
            conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("secrets", "keyless_locks", "keyless_keys")
        ]

    before = await db.run(snapshot, write=False)

    def fail(*args: object) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(keyless_store, "_replace_keys", fail)
    with pytest.raises(StoreError, match="disk I/O error"):
        await store.apply_sync(
            PlatformTrust(b"ca der", b"list v2"),
            [KeylessLockRecord(LOCK, b"cert v2", None), KeylessLockRecord("other", b"c", None)],
            [key(clock, "op-2")],
            kinds=("OPERATING", "OFFLINE"),
        )
    assert await db.run(snapshot, write=False) == before
    assert await store.platform() == PlatformTrust(b"ca der", b"list v1")
    assert await store.lock("other") is None
