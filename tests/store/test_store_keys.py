"""The offline-key cache: sync, choose, refuse clearly, and never show or misuse key material."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import sqlite3

import pytest
from store_fakes import START, FakeClock

from blelock.errors import (
    OfflineKeyError,
    OfflineKeyExpired,
    OfflineKeyMissing,
    OfflineKeyRevoked,
    StoreError,
)
from blelock.model import MacAddress
from blelock.store.crypto import DataKey
from blelock.store.db import Database
from blelock.vendors.noke.key_rows import KeyTimes, encode_times, row_aad, unpack_material
from blelock.vendors.noke.keys import CachedKey, FleetListing, KeyStore, KeySyncSummary
from blelock.vendors.noke.values import OfflineGrant

A = MacAddress("C7:E6:B0:C6:75:38")
B = MacAddress("D1:02:03:04:05:06")
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def grant(mac: MacAddress, tracking_key: str, version: int = 0) -> OfflineGrant:
    seed = f"{mac}|{tracking_key}|{version}".encode()
    return OfflineGrant(
        lock_id=mac,
        tracking_key=tracking_key,
        offline_key=hashlib.sha256(seed).digest()[:16],
        unlock_command=hashlib.sha256(seed + b"command").digest()[:20],
    )


@pytest.fixture
def keys(db: Database, data_key: DataKey, clock: FakeClock) -> KeyStore:
    return KeyStore(db, data_key, clock)


def summary(added: int = 0, refreshed: int = 0, revoked: int = 0, unchanged: int = 0) -> object:
    return KeySyncSummary(added=added, refreshed=refreshed, revoked=revoked, unchanged=unchanged)


# --- apply_sync -------------------------------------------------------------------------------


async def test_sync_adds_and_the_key_opens(keys: KeyStore) -> None:
    grants = [grant(A, "t1"), grant(A, "t2"), grant(B, "t1")]
    assert await keys.apply_sync(grants, scope_macs=None) == summary(added=3)
    key = await keys.usable(A, "t2")
    assert (key.offline_key, key.unlock_command) == (
        grants[1].offline_key,
        grants[1].unlock_command,
    )
    assert (key.lock_id, key.tracking_key, key.fetched_at) == (A, "t2", START)
    assert key.expires_at == START + 30 * DAY


async def test_same_grants_again_are_unchanged_but_renewed(
    keys: KeyStore, clock: FakeClock
) -> None:
    grants = [grant(A, "t1"), grant(B, "t1")]
    await keys.apply_sync(grants, scope_macs=None)
    clock.advance(20 * DAY)
    assert await keys.apply_sync(grants, scope_macs=None) == summary(unchanged=2)
    clock.advance(20 * DAY)  # 40 days after the first sync, 20 after the last: still trusted
    assert (await keys.usable(A)).fetched_at == START + 20 * DAY


async def test_changed_material_is_refreshed(keys: KeyStore) -> None:
    await keys.apply_sync([grant(A, "t1"), grant(B, "t1")], scope_macs=None)
    new = grant(A, "t1", version=1)
    assert await keys.apply_sync([new, grant(B, "t1")], scope_macs=None) == summary(
        refreshed=1, unchanged=1
    )
    assert (await keys.usable(A)).offline_key == new.offline_key


async def test_keys_the_cloud_no_longer_lists_are_revoked_within_scope_only(
    keys: KeyStore, clock: FakeClock
) -> None:
    await keys.apply_sync([grant(A, "t1"), grant(A, "t2"), grant(B, "t1")], scope_macs=None)
    clock.advance(HOUR)
    # Only A was asked about: its t2 is gone; B was not asked about, so it stays as it is.
    result = await keys.apply_sync([grant(A, "t1")], scope_macs=[A])
    assert result == summary(revoked=1, unchanged=1)
    infos = {(k.lock_id, k.tracking_key): k for k in await keys.list_keys()}
    assert infos[A, "t2"].revoked_at == START + HOUR
    assert infos[A, "t1"].revoked_at is None and infos[B, "t1"].revoked_at is None

    clock.advance(HOUR)  # a sync of everything: B is gone; A/t2 stays revoked since the first time
    assert await keys.apply_sync([grant(A, "t1")], scope_macs=None) == summary(
        revoked=1, unchanged=1
    )
    infos = {(k.lock_id, k.tracking_key): k for k in await keys.list_keys()}
    assert infos[A, "t2"].revoked_at == START + HOUR
    assert infos[B, "t1"].revoked_at == START + 2 * HOUR
    assert len(infos) == 3  # kept, not deleted


async def test_empty_scope_revokes_nothing(keys: KeyStore) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    assert await keys.apply_sync([], scope_macs=[]) == summary()
    await keys.usable(A)


async def test_a_revoked_key_listed_again_is_refreshed(keys: KeyStore, clock: FakeClock) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    await keys.apply_sync([], scope_macs=[A])
    clock.advance(HOUR)
    assert await keys.apply_sync([grant(A, "t1")], scope_macs=[A]) == summary(refreshed=1)
    assert (await keys.usable(A)).fetched_at == START + HOUR


async def test_a_grant_listed_twice_counts_once(keys: KeyStore) -> None:
    assert await keys.apply_sync([grant(A, "t1"), grant(A, "t1")], scope_macs=None) == summary(
        added=1
    )


async def test_a_fleet_sized_sync_is_counted_right(keys: KeyStore, clock: FakeClock) -> None:
    """10,000 locks x 5 tracking keys in one transaction (timing: scripts/bench/store.py)."""
    grants = [
        OfflineGrant(
            MacAddress(f"C7:E6:{i // 65536:02X}:{i // 256 % 256:02X}:{i % 256:02X}:00"),
            f"tk{k}",
            i.to_bytes(16, "big"),
            (i * 5 + k).to_bytes(20, "big"),
        )
        for i in range(10_000)
        for k in range(5)
    ]
    assert await keys.apply_sync(grants, scope_macs=None) == summary(added=50_000)
    clock.advance(HOUR)
    assert await keys.apply_sync(grants[:-5], scope_macs=None) == summary(
        unchanged=49_995, revoked=5
    )
    assert len(await keys.list_keys()) == 50_000


# --- usable -----------------------------------------------------------------------------------


async def test_missing_key_says_which_and_what_to_do(keys: KeyStore) -> None:
    with pytest.raises(OfflineKeyMissing) as caught:
        await keys.usable(A)
    assert caught.value.message == f"no offline key for {A} was ever synced"
    assert caught.value.hint is not None and "blelock sync" in caught.value.hint
    assert "online" in caught.value.hint


async def test_missing_tracking_key_mentions_the_others(keys: KeyStore) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    with pytest.raises(OfflineKeyMissing, match=r"tracking key 'nope'.*1 other tracking key"):
        await keys.usable(A, "nope")


async def test_expired_key_says_how_long_ago(keys: KeyStore, clock: FakeClock) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    clock.advance(30 * DAY + 2 * HOUR)
    with pytest.raises(OfflineKeyExpired) as caught:
        await keys.usable(A)
    message = caught.value.message
    assert f"the offline key for {A} (tracking key 't1') expired 2 h ago" in message
    assert "2026-12-20 14:02 UTC" in message  # when, in absolute terms too
    assert "blelock sync" in str(caught.value.hint)


async def test_revoked_key_says_which_sync(keys: KeyStore, clock: FakeClock) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    clock.advance(HOUR)
    await keys.apply_sync([], scope_macs=[A])
    clock.advance(3 * DAY)
    with pytest.raises(OfflineKeyRevoked) as caught:
        await keys.usable(A, "t1")
    message = caught.value.message
    assert f"the offline key for {A} (tracking key 't1') was revoked" in message
    assert "by the sync at 2026-11-20 15:02 UTC (3 days ago)" in message
    assert "blelock sync" in str(caught.value.hint)


async def test_revoked_is_reported_before_expired(keys: KeyStore, clock: FakeClock) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    await keys.apply_sync([], scope_macs=[A])
    clock.advance(60 * DAY)
    with pytest.raises(OfflineKeyRevoked):
        await keys.usable(A)


async def test_the_freshest_usable_key_wins(keys: KeyStore, clock: FakeClock) -> None:
    await keys.apply_sync([grant(A, "old")], scope_macs=None)
    clock.advance(HOUR)
    await keys.apply_sync([grant(A, "new")], scope_macs=[])  # nothing in scope to revoke
    assert (await keys.usable(A)).tracking_key == "new"
    assert (await keys.usable(A, "old")).tracking_key == "old"  # narrowed by tracking key


async def test_a_usable_key_is_preferred_to_a_fresher_revoked_one(
    keys: KeyStore, clock: FakeClock
) -> None:
    await keys.apply_sync([grant(A, "t1"), grant(A, "t2")], scope_macs=None)
    clock.advance(HOUR)
    await keys.apply_sync([grant(A, "t1")], scope_macs=[])  # t1 fresher
    await keys.apply_sync([grant(A, "t2")], scope_macs=[A])  # t1 revoked, t2 freshest
    clock.advance(HOUR)
    assert (await keys.usable(A)).tracking_key == "t2"


async def test_errors_are_offline_key_errors_for_the_visit(keys: KeyStore) -> None:
    with pytest.raises(OfflineKeyError):
        await keys.usable(B)


# --- secrets ----------------------------------------------------------------------------------


async def test_nothing_listed_or_printed_shows_key_material(keys: KeyStore) -> None:
    grants = [grant(A, "t1"), grant(B, "t2")]
    await keys.apply_sync(grants, scope_macs=None)
    listed = await keys.list_keys()
    assert [(k.lock_id, k.tracking_key) for k in listed] == [(A, "t1"), (B, "t2")]
    cached: list[CachedKey] = [await keys.usable(A), await keys.usable(B)]
    shown = repr(listed) + str(listed) + repr(cached) + str(cached) + repr(keys)
    for g in grants:
        for secret in (g.offline_key, g.unlock_command):
            assert secret.hex() not in shown and secret.hex().upper() not in shown
            assert repr(secret) not in shown
    assert not any(hasattr(k, "offline_key") or hasattr(k, "unlock_command") for k in listed)


def test_a_grant_shows_no_key_material() -> None:
    g = grant(A, "t1")
    shown = repr(g) + str(g) + f"{g}" + repr([g])
    assert "t1" in shown and A in shown
    for secret in (g.offline_key, g.unlock_command):
        assert secret.hex() not in shown and repr(secret) not in shown


async def test_key_material_is_not_stored_in_the_clear(keys: KeyStore, db: Database) -> None:
    g = grant(A, "t1")
    await keys.apply_sync([g], scope_macs=None)
    await db.close()  # checkpoint the WAL into the file
    raw = await asyncio.to_thread(db.path.read_bytes)
    assert g.offline_key not in raw and g.unlock_command not in raw


async def _tamper(db: Database, sql: str, *params: object) -> None:
    def edit(conn: sqlite3.Connection) -> None:
        conn.execute(sql, params)

    await db.run(edit)


async def test_a_tampered_row_is_refused_naming_lock_and_tracking_key(
    keys: KeyStore, db: Database
) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)

    def flip_one_byte(conn: sqlite3.Connection) -> None:
        # Inverted, so the byte always changes (writing 0x00 left a 0x00 byte as it was).
        (sealed,) = conn.execute("SELECT sealed FROM noke_lock_keys").fetchone()
        edited = sealed[:20] + bytes([sealed[20] ^ 0xFF]) + sealed[21:]
        conn.execute("UPDATE noke_lock_keys SET sealed = ?", (edited,))

    await db.run(flip_one_byte)
    with pytest.raises(StoreError) as caught:
        await keys.usable(A)
    assert not isinstance(caught.value, OfflineKeyError)
    message = caught.value.message
    assert f"for {A} (tracking key 't1') was tampered with" in message and "not used" in message


async def test_a_row_moved_to_another_lock_is_refused(keys: KeyStore, db: Database) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    await _tamper(
        db,
        "INSERT INTO noke_lock_keys SELECT ?, keys, sealed FROM noke_lock_keys WHERE lock_id = ?",
        B,
        A,
    )
    with pytest.raises(StoreError, match=f"for {B} \\(tracking key 't1'\\) was tampered with"):
        await keys.usable(B)
    await _tamper(
        db, "UPDATE noke_lock_keys SET keys = replace(keys, 't1', 't9') WHERE lock_id = ?", B
    )
    with pytest.raises(StoreError, match="tracking key 't9'"):
        await keys.usable(B)


async def test_a_sync_heals_a_tampered_row(keys: KeyStore, db: Database) -> None:
    g = grant(A, "t1")
    await keys.apply_sync([g], scope_macs=None)
    await _tamper(db, "UPDATE noke_lock_keys SET sealed = zeroblob(60)")
    assert await keys.apply_sync([g], scope_macs=None) == summary(refreshed=1)
    assert (await keys.usable(A)).offline_key == g.offline_key


async def test_keys_need_the_data_key_that_sealed_them(
    keys: KeyStore, db: Database, clock: FakeClock
) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    stranger = KeyStore(db, DataKey.generate("another key"), clock)
    with pytest.raises(StoreError, match="sealed under another data key \\(another key\\)"):
        await stranger.usable(A)


def test_lifetime_must_be_positive(keys: KeyStore, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="positive"):
        KeyStore(keys._db, keys._key, clock, lifetime=dt.timedelta(0))


async def test_a_revoked_key_keeps_no_material_and_cannot_be_revived(
    keys: KeyStore, db: Database, clock: FakeClock
) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    clock.advance(HOUR)
    assert await keys.apply_sync([], scope_macs=[A]) == summary(revoked=1)
    (sealed,) = await db.run(
        lambda conn: conn.execute("SELECT sealed FROM noke_lock_keys").fetchone(), write=False
    )
    assert sealed == b""
    await _tamper(db, "UPDATE noke_lock_keys SET keys = json_replace(keys, '$[0][3]', NULL)")
    with pytest.raises(StoreError, match="tampered"):
        await keys.usable(A)


async def test_an_expiry_extended_in_the_database_is_refused(
    keys: KeyStore, db: Database, clock: FakeClock
) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    await _tamper(
        db,
        "UPDATE noke_lock_keys SET keys = "
        "json_replace(keys, '$[0][2]', json_extract(keys, '$[0][2]') + 86400 * 365)",
    )
    with pytest.raises(StoreError, match="tampered"):
        await keys.usable(A)


async def test_a_revocation_raises_the_store_generation_and_old_rows_stay_closed(
    keys: KeyStore, db: Database, data_key: DataKey
) -> None:
    mac = A
    await keys.apply_sync([grant(mac, "t1"), grant(mac, "t2")], scope_macs=None)
    before = data_key.generation
    assert before is not None
    query = "SELECT CAST(sealed AS BLOB) FROM noke_lock_keys"  # t1 and t2 sealed together
    stale = await db.run(lambda c: c.execute(query).fetchone()[0])
    await keys.apply_sync([grant(mac, "t1")], scope_macs=None)  # t2 revoked
    assert data_key.generation == before + 1
    assert (await keys.usable(mac, "t1")).tracking_key == "t1"  # resealed, still opens
    # t2's material as a backup held it does not open at the new generation.
    with pytest.raises(StoreError, match="not of this store's generation"):
        data_key.open(bytes(stale), b"")


async def test_a_new_lock_s_row_is_as_the_layout_describes(
    keys: KeyStore, db: Database, data_key: DataKey
) -> None:
    # A first sync writes new locks' rows on a path of its own: the same text and material.
    grants = [grant(A, "t2"), grant(A, 't"1'), grant(A, "t\u00e9")]
    await keys.apply_sync(grants, scope_macs=None)
    text, sealed = await db.run(
        lambda conn: conn.execute("SELECT keys, sealed FROM noke_lock_keys").fetchone()
    )
    now = int(START.timestamp())
    expected = [KeyTimes(g.tracking_key, now, now + 30 * 86400, None) for g in grants]
    assert text == encode_times(expected)
    assert unpack_material(data_key.open(sealed, row_aad(A, text))) == {
        g.tracking_key: (g.offline_key, g.unlock_command) for g in grants
    }


async def test_a_lock_listed_as_held_is_rewritten_as_the_layout_describes(
    keys: KeyStore, db: Database, data_key: DataKey, clock: FakeClock
) -> None:
    # A daily sync's locks, listed exactly as held, take a path of their own too: renewed times,
    # the same material, and nothing else of the row left behind.
    grants = [grant(A, "t2"), grant(A, 't"1'), grant(A, "t\u00e9")]
    await keys.apply_sync(grants, scope_macs=None)
    clock.advance(DAY)
    assert await keys.apply_sync(grants, scope_macs=None) == summary(unchanged=3)
    text, sealed = await db.run(
        lambda conn: conn.execute("SELECT keys, sealed FROM noke_lock_keys").fetchone()
    )
    now = int((START + DAY).timestamp())
    expected = [KeyTimes(g.tracking_key, now, now + 30 * 86400, None) for g in grants]
    assert text == encode_times(expected)
    assert unpack_material(data_key.open(sealed, row_aad(A, text))) == {
        g.tracking_key: (g.offline_key, g.unlock_command) for g in grants
    }


async def test_a_held_lock_s_other_keys_outlive_a_sync_that_lists_the_rest_unchanged(
    keys: KeyStore, clock: FakeClock
) -> None:
    # The same live material as listed is not enough to rewrite the row from the listing: a key
    # revoked before (kept, with its time) is named in the row but not listed.
    await keys.apply_sync([grant(A, "t1"), grant(A, "t2")], scope_macs=None)
    clock.advance(HOUR)
    assert await keys.apply_sync([grant(A, "t1")], scope_macs=None) == summary(
        revoked=1, unchanged=1
    )
    clock.advance(HOUR)
    assert await keys.apply_sync([grant(A, "t1")], scope_macs=None) == summary(unchanged=1)
    infos = {k.tracking_key: k for k in await keys.list_keys()}
    assert infos["t2"].revoked_at == START + HOUR
    assert infos["t1"].fetched_at == START + 2 * HOUR


async def test_a_damaged_key_list_is_refused_as_damaged_not_as_never_synced(
    keys: KeyStore, db: Database
) -> None:
    await keys.apply_sync([grant(A, "t1")], scope_macs=None)
    await _tamper(db, "UPDATE noke_lock_keys SET keys = '[[\"t1\", 1' WHERE lock_id = ?", A)
    with pytest.raises(StoreError) as caught:
        await keys.usable(A)
    assert not isinstance(caught.value, OfflineKeyError)
    assert f"offline keys for {A} are damaged" in caught.value.message
    assert "blelock sync" in (caught.value.hint or "")
    assert await keys.apply_sync([grant(A, "t1")], scope_macs=None) == summary(added=1)
    await keys.usable(A)  # healed by the sync


# --- the fleet listing ----------------------------------------------------------------------


async def test_a_fleet_listing_reads_back_in_mac_order_each_lock_once(db: Database) -> None:
    listing = FleetListing(db)
    await listing.restart()
    macs = [MacAddress(f"C7:E6:B0:C6:{n // 256:02X}:{n % 256:02X}") for n in range(700)]
    shuffled = macs[::-1][:400] + macs[:300]  # the cloud's order, one lock listed twice
    await listing.add(shuffled[:350])
    await listing.add([*shuffled[350:], macs[5]])
    chunks = [chunk async for chunk in listing.chunks(256)]
    assert [len(chunk) for chunk in chunks] == [256, 256, 188]
    assert [mac for chunk in chunks for mac in chunk] == sorted(set(shuffled))
    await listing.drop()


async def test_a_fleet_listing_started_again_holds_only_the_new_listing(db: Database) -> None:
    listing = FleetListing(db)
    await listing.restart()
    await listing.add([A, B])
    assert [chunk async for chunk in listing.chunks(10)] == [[A, B]]
    await listing.restart()  # a retried /lock/ streams the whole answer again
    await listing.add([B])
    assert [chunk async for chunk in listing.chunks(10)] == [[B]]
    await listing.drop()
