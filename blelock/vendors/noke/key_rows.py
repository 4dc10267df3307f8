"""The offline-key cache's rows: one per lock, and how the per-key rows of before become them.

A lock's row holds its keys' times in the clear (``keys``: a JSON list of ``[tracking key,
fetched_at, expires_at, revoked_at]``, sorted by tracking key) and the material of its live keys
sealed once under the data key (``sealed``), with the lock and that very ``keys`` text as
associated data. A row copied to another lock, a time edited (an expiry extended, a revocation
cleared) or material swapped fails to open and is refused. A lock whose keys are all revoked
keeps no material (``sealed`` is ``x''``): making one live again by hand leaves a key with no
material, refused as tampered.

One seal, one row and one loop step per lock instead of per key: a fleet's sync is dominated by
those costs, and a lock's keys are always synced together.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii as _quoted
from typing import Final, NamedTuple

from blelock.errors import StoreError
from blelock.store.crypto import DataKey
from blelock.store.db import opens_key_check

__all__ = [
    "HEADER",
    "KeyTimes",
    "Material",
    "carry_over",
    "decode_times",
    "encode_times",
    "needs_carry_over",
    "pack_material",
    "row_aad",
    "unpack_material",
]

Material = dict[str, tuple[bytes, bytes]]
"""A lock's live keys: tracking key -> (offline key, unlock command)."""

HEADER = struct.Struct(">HHH")
"""Per key in a sealed row: the lengths of its tracking key, offline key and unlock command."""


class KeyTimes(NamedTuple):
    tracking_key: str
    fetched_at: int
    expires_at: int
    revoked_at: int | None


def encode_times(times: Iterable[KeyTimes]) -> str:
    """The ``keys`` column: compact JSON, ASCII (so its bytes are those sealed as associated
    data), as ``json.dumps(sorted(times), separators=(",", ":"))`` writes it, built directly:
    a fleet's sync writes one per lock."""
    return (
        "["
        + ",".join(
            f"[{_quoted(t)},{int(f)},{int(e)},{'null' if r is None else int(r)}]"
            for t, f, e, r in sorted(times)
        )
        + "]"
    )


def decode_times(text: str) -> list[KeyTimes]:
    """The ``keys`` column read back; StoreError if it is not what :func:`encode_times` wrote."""
    try:
        entries = json.loads(text)
        times = [
            KeyTimes(str(t), int(f), int(e), None if r is None else int(r))
            for t, f, e, r in entries
        ]
    except (ValueError, TypeError):
        raise StoreError("a cached lock's key list is damaged") from None
    return times


def row_aad(lock_id: str, keys_text: str) -> bytes:
    """The MAC has a fixed form without '|', so the split is unambiguous."""
    return b"noke-lock|" + lock_id.encode() + b"|" + keys_text.encode()


def pack_material(material: Material) -> bytes:
    header = HEADER.pack
    parts: list[bytes] = []
    for tracking in sorted(material):
        offline_key, command = material[tracking]
        name = tracking.encode()
        parts.append(
            header(len(name), len(offline_key), len(command)) + name + offline_key + command
        )
    return b"".join(parts)


def unpack_material(plaintext: bytes) -> Material:
    material: Material = {}
    at, size = 0, HEADER.size
    while at < len(plaintext):
        if at + size > len(plaintext):
            raise StoreError("a sealed lock's keys are truncated")
        lengths = HEADER.unpack_from(plaintext, at)
        at += size
        if at + sum(lengths) > len(plaintext):
            raise StoreError("a sealed lock's keys are truncated")
        name_end = at + lengths[0]
        key_end = name_end + lengths[1]
        end = key_end + lengths[2]
        material[plaintext[at:name_end].decode()] = (
            plaintext[name_end:key_end],
            plaintext[key_end:end],
        )
        at = end
    return material


_OLD_LENGTH = struct.Struct(">H")


def needs_carry_over(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM offline_keys LIMIT 1").fetchone() is not None


def carry_over(conn: sqlite3.Connection, key: DataKey, source: str) -> int:
    """Move every per-key row of ``offline_keys`` into the lock's row, in the caller's (write)
    transaction: all of it or none. How many keys were carried.

    Refused (nothing changed) unless ``key`` opens the store's key check: under a wrong key
    every row would look damaged, and carrying them would lose them. A row that does not open
    under the right key was tampered with: it is carried as live with no material, so a lookup
    refuses it as tampered (as before) and the next sync heals it; a revoked one stays revoked."""
    if not opens_key_check(conn, key):
        raise StoreError(
            "the cached offline keys are sealed under another data key than this one "
            f"({source}); they were left as they are",
            hint="use the data key this store was created with",
        )
    carried = 0
    batch: list[tuple[str, list[KeyTimes], Material | None]] = []
    rows = conn.execute(
        "SELECT lock_id, tracking_key, CAST(sealed AS BLOB), fetched_at, expires_at, revoked_at "
        "FROM offline_keys ORDER BY lock_id, tracking_key"
    )
    # Streamed in key order, a few hundred locks at a time: a fleet's cache is never all held.
    current: str | None = None
    times: list[KeyTimes] = []
    material: Material | None = None
    for lock, tracking, sealed, fetched, expires, revoked in rows:
        if lock != current:
            if current is not None:
                batch.append((current, times, material))
                if len(batch) >= _CARRY_CHUNK:
                    _write_carried(conn, key, batch)
                    batch = []
            current, times, material = lock, [], None
        times.append(KeyTimes(tracking, fetched, expires, revoked))
        carried += 1
        if revoked is not None:
            continue
        opened = _open_old(key, lock, tracking, expires, bytes(sealed))
        if opened is not None:  # else tampered: carried with no material (see above)
            material = {} if material is None else material
            material[tracking] = opened
    if current is not None:
        batch.append((current, times, material))
    _write_carried(conn, key, batch)
    conn.execute("DELETE FROM offline_keys")
    return carried


_CARRY_CHUNK: Final = 500


def _open_old(
    key: DataKey, lock: str, tracking: str, expires: int, sealed: bytes
) -> tuple[bytes, bytes] | None:
    """A per-key row of before, opened as that layout sealed it; None if it does not open."""
    aad = b"noke|%d|" % expires + lock.encode() + b"|" + tracking.encode()
    try:
        plaintext = key.open(sealed, aad)
    except StoreError:
        return None
    if len(plaintext) < _OLD_LENGTH.size:
        return None
    (length,) = _OLD_LENGTH.unpack_from(plaintext)
    end = _OLD_LENGTH.size + length
    if end > len(plaintext):
        return None
    return plaintext[_OLD_LENGTH.size : end], plaintext[end:]


def _write_carried(
    conn: sqlite3.Connection, key: DataKey, batch: list[tuple[str, list[KeyTimes], Material | None]]
) -> None:
    texts = [encode_times(times) for _, times, _ in batch]
    to_seal = [
        (pack_material(material), row_aad(lock, text))
        for (lock, _, material), text in zip(batch, texts, strict=True)
        if material
    ]
    sealed_rows = iter(key.seal_many(to_seal))
    conn.executemany(
        "INSERT INTO noke_lock_keys (lock_id, keys, sealed) VALUES (?, ?, ?)",
        [
            (lock, text, next(sealed_rows) if material else b"")
            for (lock, _, material), text in zip(batch, texts, strict=True)
        ],
    )
