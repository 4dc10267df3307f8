"""What a Keyless visit needs with no network: the operating device's identity, the keys the
platform granted it, and the certificates of the locks they open.

Everything secret (the device's access key and private key, offline keys' private keys, and the
signed grants with them) is sealed under the data key with its row's identity as associated
data, so a sealed value moved to another row, or a row whose validity was edited, fails to open
and is refused. Certificates are public and stored as they are.

A key sync replaces the keys of the kinds it fetched: the platform lists every key still valid,
so a key it no longer lists was revoked or has expired, and its material is deleted, not kept.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from blelock.clock import Clock
from blelock.errors import StoreError
from blelock.store.crypto import DataKey
from blelock.store.db import Database

__all__ = ["DeviceIdentity", "KeylessKey", "KeylessLockRecord", "KeylessStore", "PlatformTrust"]

KeyKind = Literal["OPERATING", "OFFLINE"]
KeyRole = Literal["primary", "alternative"]

_DEVICE: Final = "keyless.operating_device"
_PLATFORM: Final = "keyless.platform"
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """This companion as a Keyless operating device: what the platform's activation gave it and
    the private key whose public half the platform binds every operating key to."""

    operating_device_id: str
    access_key: str = field(repr=False)
    private_key_der: bytes = field(repr=False)
    """PKCS#8 DER of the device's P-256 key."""


@dataclass(frozen=True, slots=True)
class KeylessKey:
    """A grant the platform signed, and the private key that proves holding it (None for an
    operating key: the device's own key does)."""

    lock_id: str
    key_id: str
    kind: KeyKind
    role: KeyRole
    not_before: dt.datetime
    not_after: dt.datetime
    grant: bytes = field(repr=False)
    private_key_der: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class KeylessLockRecord:
    lock_id: str
    certificate: bytes
    pending_certificate: bytes | None
    """Issued by the platform for a re-keying the lock started; installed on the next visit."""


@dataclass(frozen=True, slots=True)
class PlatformTrust:
    """What the companion pins: the platform CA, and the newest signed revocation list."""

    ca_certificate: bytes
    revocations: bytes
    """The signed list as the platform gave it (empty before the first sync)."""


class KeylessStore:
    def __init__(self, db: Database, data_key: DataKey, clock: Clock) -> None:
        self._db = db
        self._key = data_key
        self._clock = clock

    def __repr__(self) -> str:
        return f"KeylessStore({self._db!r})"

    # --- the operating device -----------------------------------------------------------------

    async def save_device(self, device: DeviceIdentity) -> None:
        plaintext = _pack(
            device.operating_device_id.encode(), device.access_key.encode(), device.private_key_der
        )
        sealed = self._key.seal(plaintext, _DEVICE.encode())

        await self._db.run(lambda conn: _put_secret(conn, _DEVICE, sealed))

    async def device(self) -> DeviceIdentity | None:
        """The activated operating device, or None before ``blelock keyless activate``."""
        sealed = await self._db.run(lambda conn: _get_secret(conn, _DEVICE), write=False)
        if sealed is None:
            return None
        device_id, access_key, private_key = _unpack(self._open(sealed, _DEVICE.encode(), 3))
        return DeviceIdentity(device_id.decode(), access_key.decode(), private_key)

    # --- the platform ---------------------------------------------------------------------------

    async def save_platform(self, trust: PlatformTrust) -> None:
        sealed = self._seal_platform(trust)
        await self._db.run(lambda conn: _put_secret(conn, _PLATFORM, sealed))

    def _seal_platform(self, trust: PlatformTrust) -> bytes:
        # Sealed although public: the pinned CA decides which locks are believed, so an edit
        # to the database must not be able to swap it.
        return self._key.seal(_pack(trust.ca_certificate, trust.revocations), _PLATFORM.encode())

    async def platform(self) -> PlatformTrust | None:
        sealed = await self._db.run(lambda conn: _get_secret(conn, _PLATFORM), write=False)
        if sealed is None:
            return None
        ca, revocations = _unpack(self._open(sealed, _PLATFORM.encode(), 2))
        return PlatformTrust(ca, revocations)

    # --- keys ---------------------------------------------------------------------------------

    async def apply_sync(
        self,
        trust: PlatformTrust,
        locks: Sequence[KeylessLockRecord],
        keys: Sequence[KeylessKey],
        kinds: Collection[KeyKind],
    ) -> int:
        """What one sync brought, in one transaction (a crash never leaves keys the pinned CA
        did not sign): the trust material, the locks' certificates, and ``keys`` as the cached
        keys of ``kinds``; how many keys were dropped. A lock that already runs on the
        certificate the platform still calls pending (installed on a visit whose audit entries
        have not reached it) keeps it as current."""
        sealed = self._seal_platform(trust)
        rows = self._key_rows(keys, kinds)
        now = _seconds(self._clock.now_utc())

        def apply(conn: sqlite3.Connection) -> tuple[int, bool]:
            _put_secret(conn, _PLATFORM, sealed)
            for lock in locks:
                held = conn.execute(
                    "SELECT CAST(certificate AS BLOB) FROM keyless_locks WHERE lock_id = ?",
                    (lock.lock_id,),
                ).fetchone()
                pending = lock.pending_certificate
                if held is not None and pending is not None and bytes(held[0]) == pending:
                    continue
                _save_lock(conn, lock, now)
            dropped = _replace_keys(conn, rows, kinds)
            return dropped, dropped > 0

        # A key dropped (revoked, or expired) raises the store's generation: a copy of the
        # store from before, put back, is refused and cannot give that key back.
        return await self._db.run_revoking(apply, self._key)

    async def replace_keys(self, keys: Sequence[KeylessKey], kinds: Collection[KeyKind]) -> int:
        """Make ``keys`` the cached keys of ``kinds`` (one transaction); how many were dropped
        because the platform no longer lists them (which raises the store's generation)."""
        rows = self._key_rows(keys, kinds)

        def apply(conn: sqlite3.Connection) -> tuple[int, bool]:
            dropped = _replace_keys(conn, rows, kinds)
            return dropped, dropped > 0

        return await self._db.run_revoking(apply, self._key)

    def _key_rows(
        self, keys: Sequence[KeylessKey], kinds: Collection[KeyKind]
    ) -> list[tuple[str, str, str, str, int, int, bytes, int]]:
        now = _seconds(self._clock.now_utc())
        listed = tuple(keys)
        if any(key.kind not in kinds for key in listed):
            raise ValueError("every key replaced must be of one of the kinds replaced")
        return [
            (
                key.lock_id,
                key.key_id,
                key.kind,
                key.role,
                _seconds(key.not_before),
                _seconds(key.not_after),
                self._key.seal(
                    _pack(key.grant, key.private_key_der or b""),
                    _key_aad(key.lock_id, key.key_id, key.kind, key.role, key.not_after),
                ),
                now,
            )
            for key in listed
        ]

    async def keys_for(self, lock_id: str) -> list[KeylessKey]:
        """The lock's cached keys valid now (by the grant's own window), operating keys first
        (they need no secret of their own), then offline keys, primary before alternative."""
        now = _seconds(self._clock.now_utc())

        def read(conn: sqlite3.Connection) -> list[tuple[str, str, str, int, int, bytes]]:
            return [
                (key_id, kind, role, not_before, not_after, bytes(sealed))
                for key_id, kind, role, not_before, not_after, sealed in conn.execute(
                    "SELECT key_id, kind, role, not_before, not_after, CAST(sealed AS BLOB) "
                    "FROM keyless_keys WHERE lock_id = ? AND not_before <= ? AND not_after > ? "
                    "ORDER BY kind DESC, role DESC, not_after DESC, key_id",
                    (lock_id, now, now),
                )
            ]

        found = []
        for key_id, kind, role, not_before, not_after, sealed in await self._db.run(
            read, write=False
        ):
            until = _datetime(not_after)
            aad = _key_aad(lock_id, key_id, kind, role, until)
            grant, private_key = _unpack(self._open(sealed, aad, 2))
            found.append(
                KeylessKey(
                    lock_id,
                    key_id,
                    "OFFLINE" if kind == "OFFLINE" else "OPERATING",
                    "alternative" if role == "alternative" else "primary",
                    _datetime(not_before),
                    until,
                    grant,
                    private_key or None,
                )
            )
        return found

    async def list_keys(self) -> list[KeylessKey]:
        """Every cached key's metadata (no grant or key material in what is returned)."""

        def read(conn: sqlite3.Connection) -> list[KeylessKey]:
            return [
                KeylessKey(
                    lock,
                    key_id,
                    "OFFLINE" if kind == "OFFLINE" else "OPERATING",
                    "alternative" if role == "alternative" else "primary",
                    _datetime(not_before),
                    _datetime(not_after),
                    b"",
                )
                for lock, key_id, kind, role, not_before, not_after in conn.execute(
                    "SELECT lock_id, key_id, kind, role, not_before, not_after "
                    "FROM keyless_keys ORDER BY lock_id, kind, not_after"
                )
            ]

        return await self._db.run(read, write=False)

    # --- locks --------------------------------------------------------------------------------

    async def save_lock(
        self, lock_id: str, certificate: bytes, pending_certificate: bytes | None = None
    ) -> None:
        now = _seconds(self._clock.now_utc())
        record = KeylessLockRecord(lock_id, certificate, pending_certificate)
        await self._db.run(lambda conn: _save_lock(conn, record, now))

    async def lock(self, lock_id: str) -> KeylessLockRecord | None:
        def read(conn: sqlite3.Connection) -> KeylessLockRecord | None:
            row = conn.execute(
                "SELECT CAST(certificate AS BLOB), CAST(pending_certificate AS BLOB) "
                "FROM keyless_locks WHERE lock_id = ?",
                (lock_id,),
            ).fetchone()
            if row is None:
                return None
            pending = None if row[1] is None else bytes(row[1])
            return KeylessLockRecord(lock_id, bytes(row[0]), pending)

        return await self._db.run(read, write=False)

    # --- sealing ------------------------------------------------------------------------------

    def _open(self, sealed: bytes, aad: bytes, parts: int) -> bytes:
        try:
            plaintext = self._key.open(sealed, aad)
            if len(_unpack(plaintext)) != parts:
                raise ValueError
            return plaintext
        except (StoreError, ValueError):
            raise StoreError(
                "a sealed Keyless secret in the store was tampered with or sealed under another "
                f"data key ({self._key.source}); it was not used",
                hint="run `blelock sync` while online to fetch keys again, or "
                "`blelock keyless activate` again for the device's own credentials",
            ) from None


def _replace_keys(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[str, str, str, str, int, int, bytes, int]],
    kinds: Collection[KeyKind],
) -> int:
    marks = ", ".join("?" * len(kinds))
    before = conn.execute(
        f"SELECT count(*) FROM keyless_keys WHERE kind IN ({marks})", tuple(kinds)
    ).fetchone()[0]
    conn.execute(f"DELETE FROM keyless_keys WHERE kind IN ({marks})", tuple(kinds))
    conn.executemany(
        "INSERT OR REPLACE INTO keyless_keys "
        "(lock_id, key_id, kind, role, not_before, not_after, sealed, fetched_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    kept = {(row[0], row[1], row[3]) for row in rows}
    return max(0, int(before) - len(kept))


def _save_lock(conn: sqlite3.Connection, lock: KeylessLockRecord, now: int) -> None:
    conn.execute(
        "INSERT INTO keyless_locks (lock_id, certificate, pending_certificate, fetched_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (lock_id) DO UPDATE SET "
        "certificate = excluded.certificate, "
        "pending_certificate = excluded.pending_certificate, fetched_at = excluded.fetched_at",
        (lock.lock_id, lock.certificate, lock.pending_certificate, now),
    )


def _put_secret(conn: sqlite3.Connection, name: str, sealed: bytes) -> None:
    conn.execute(
        "INSERT INTO secrets (name, sealed) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed",
        (name, sealed),
    )


def _get_secret(conn: sqlite3.Connection, name: str) -> bytes | None:
    row = conn.execute("SELECT CAST(sealed AS BLOB) FROM secrets WHERE name = ?", (name,))
    found = row.fetchone()
    return None if found is None else bytes(found[0])


def _pack(*parts: bytes) -> bytes:
    return b"".join(_LENGTH.pack(len(part)) + part for part in parts)


def _unpack(blob: bytes) -> list[bytes]:
    parts, at = [], 0
    while at < len(blob):
        if at + _LENGTH.size > len(blob):
            raise ValueError("truncated")
        (size,) = _LENGTH.unpack_from(blob, at)
        at += _LENGTH.size
        if at + size > len(blob):
            raise ValueError("truncated")
        parts.append(blob[at : at + size])
        at += size
    return parts


def _key_aad(lock_id: str, key_id: str, kind: str, role: str, not_after: dt.datetime) -> bytes:
    # Fields of fixed vocabulary first; the free-form ids last, length-prefixed by _pack.
    head = f"keyless|{kind}|{role}|{_seconds(not_after)}|".encode()
    return head + _pack(lock_id.encode(), key_id.encode())


def _seconds(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place in the store")
    return int(moment.timestamp())


def _datetime(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
