"""The data key: where it comes from, how it fails, and the key check that guards the store."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from blelock.errors import StoreError
from blelock.store.crypto import DATA_KEY_ENV, DATA_KEY_FILE, DataKey, generation_aad
from blelock.store.db import Database

ENV_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.urlsafe_b64encode(bytes(range(100, 132))).decode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- DataKey on its own (blocking file I/O: plain, loop-less tests) -----------------------------


def test_created_key_file_is_private_and_reloads(tmp_path: Path) -> None:
    key_dir = tmp_path / "config"
    made = DataKey.load(key_dir, {}, create=True)
    path = key_dir / DATA_KEY_FILE
    assert _mode(path) == 0o600 and _mode(key_dir) == 0o700
    again = DataKey.load(key_dir, {}, create=False)
    assert again.open(made.seal(b"secret", b"aad"), b"aad") == b"secret"
    assert str(path) in again.source


def test_missing_key_without_create_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="data key missing"):
        DataKey.load(tmp_path, {}, create=False)
    assert not (tmp_path / DATA_KEY_FILE).exists()


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    from_file = DataKey.load(tmp_path, {}, create=True)
    from_env = DataKey.load(tmp_path, {DATA_KEY_ENV: ENV_KEY}, create=True)
    assert DATA_KEY_ENV in from_env.source
    sealed = from_env.seal(b"secret", b"aad")
    assert DataKey(bytes(range(32)), "same bytes").open(sealed, b"aad") == b"secret"
    with pytest.raises(StoreError):
        from_file.open(sealed, b"aad")


def test_blank_environment_variable_means_unset(tmp_path: Path) -> None:
    key = DataKey.load(tmp_path, {DATA_KEY_ENV: "  "}, create=True)
    assert DATA_KEY_FILE in key.source


def test_environment_key_without_padding_is_accepted(tmp_path: Path) -> None:
    key = DataKey.load(tmp_path, {DATA_KEY_ENV: ENV_KEY.rstrip("=")}, create=False)
    assert DATA_KEY_ENV in key.source


@pytest.mark.parametrize(
    "text",
    [
        "c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0",  # valid base64, 24 bytes
        base64.urlsafe_b64encode(b"k" * 33).decode(),  # one byte too long
        ENV_KEY[:-2] + "!!",  # not base64 at all
        "hunter2-hunter2_hunter2.hunter2-hunter2-hun",  # 43 characters, one not base64
    ],
)
def test_malformed_environment_key_is_refused_without_quoting_it(tmp_path: Path, text: str) -> None:
    with pytest.raises(StoreError) as caught:
        DataKey.load(tmp_path, {DATA_KEY_ENV: text}, create=True)
    error = caught.value
    assert DATA_KEY_ENV in error.message and "malformed" in error.message
    _assert_not_quoted(error, text)
    assert not (tmp_path / DATA_KEY_FILE).exists()  # a bad env key never falls back to a file


def test_malformed_key_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / DATA_KEY_FILE
    text = "Zm9vYmFyYmF6cXV4cXV1eA==\n"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(StoreError) as caught:
        DataKey.load(tmp_path, {}, create=True)
    assert str(path) in caught.value.message and "malformed" in caught.value.message
    _assert_not_quoted(caught.value, text.strip())
    assert path.read_text() == text  # never replaced


def test_binary_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / DATA_KEY_FILE).write_bytes(os.urandom(32) + b"\xff")
    with pytest.raises(StoreError, match="malformed"):
        DataKey.load(tmp_path, {}, create=True)


def test_loose_key_file_is_tightened(tmp_path: Path) -> None:
    DataKey.load(tmp_path, {}, create=True)
    (tmp_path / DATA_KEY_FILE).chmod(0o644)
    DataKey.load(tmp_path, {}, create=False)
    assert _mode(tmp_path / DATA_KEY_FILE) == 0o600


def test_seal_binds_associated_data_and_detects_tampering() -> None:
    key = DataKey.generate()
    sealed = key.seal(b"offline key", b"noke|AA|t1")
    assert sealed != key.seal(b"offline key", b"noke|AA|t1")  # a fresh nonce every time
    with pytest.raises(StoreError, match="tampered with or sealed under another data key"):
        key.open(sealed, b"noke|BB|t1")
    flipped = bytes([sealed[0], sealed[1] ^ 1]) + sealed[2:]
    with pytest.raises(StoreError, match="tampered"):
        key.open(flipped, b"noke|AA|t1")
    with pytest.raises(StoreError, match="truncated"):
        key.open(sealed[:20], b"noke|AA|t1")


@pytest.mark.parametrize("generation", [None, 7])
def test_sealing_many_gives_what_sealing_one_by_one_gives(generation: int | None) -> None:
    key = DataKey.generate()
    key.generation = generation
    items = [(b"key %d" % n, b"noke|AA|t%d" % n) for n in range(50)]
    sealed = key.seal_many(items)
    assert [key.open(blob, aad) for blob, (_, aad) in zip(sealed, items, strict=True)] == [
        plaintext for plaintext, _ in items
    ]
    # Each value under a fresh nonce of its own (each layer's too), as one by one.
    layers = 1 if generation is None else 2
    assert len(sealed[0]) == len(key.seal(*items[0]))
    nonces = {blob[:12] for blob in sealed}
    if generation is not None:
        nonces |= {key.open_bare(blob, generation_aad(generation))[:12] for blob in sealed}
    assert len(nonces) == layers * len(items)
    # Still bound to its own associated data (and generation).
    with pytest.raises(StoreError, match="tampered"):
        key.open(sealed[0], items[1][1])
    if generation is not None:
        key.generation = generation + 1
        with pytest.raises(StoreError, match="not of this store's generation"):
            key.open(sealed[0], items[0][1])
    assert key.seal_many([]) == []


def test_repr_shows_the_source_only() -> None:
    raw = bytes(range(32))
    key = DataKey(raw, "the test")
    assert repr(key) == "DataKey(source='the test')"
    assert raw.hex() not in repr(key) and ENV_KEY not in repr(key)


def _assert_not_quoted(error: StoreError, secret: str) -> None:
    fragment = secret.strip().rstrip("=")[:12]
    for text in (str(error), error.one_line(), repr(error), str(error.hint)):
        assert fragment not in text
    # Nothing chained either: a traceback under --debug must not show the key.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


# --- the key check in the store ---------------------------------------------------------------


async def test_first_unlock_creates_the_key_and_the_check(db: Database, key_dir: Path) -> None:
    key = await db.unlock(key_dir, {})
    assert (await asyncio.to_thread((key_dir / DATA_KEY_FILE).exists)) is True
    checks = await db.run(
        lambda conn: conn.execute("SELECT count(*) FROM meta WHERE key = 'key_check'").fetchone()
    )
    assert checks == (1,)
    again = await db.unlock(key_dir, {})
    assert again.open(key.seal(b"x", b"y"), b"y") == b"x"


async def test_wrong_data_key_is_refused_at_open(db: Database, key_dir: Path) -> None:
    await db.unlock(key_dir, {DATA_KEY_ENV: ENV_KEY})
    with pytest.raises(StoreError) as caught:
        await db.unlock(key_dir, {DATA_KEY_ENV: OTHER_KEY})
    message = caught.value.message
    assert "the data key does not match this store" in message
    assert f"the {DATA_KEY_ENV} environment variable" in message
    _assert_not_quoted(caught.value, OTHER_KEY)


async def test_file_key_for_an_env_key_store_is_refused(db: Database, key_dir: Path) -> None:
    await db.unlock(key_dir, {})  # enrolled with a key file
    with pytest.raises(StoreError, match="does not match"):
        await db.unlock(key_dir, {DATA_KEY_ENV: ENV_KEY})


async def test_missing_data_key_is_refused_and_no_new_key_is_made(
    db: Database, key_dir: Path
) -> None:
    await db.unlock(key_dir, {})
    key_file = key_dir / DATA_KEY_FILE
    await asyncio.to_thread(key_file.unlink)
    with pytest.raises(StoreError, match="data key missing") as caught:
        await db.unlock(key_dir, {})
    assert "no new key was made" in caught.value.message
    assert (await asyncio.to_thread(key_file.exists)) is False


async def test_store_reopened_with_its_key_works(store_dir: Path, key_dir: Path) -> None:
    path = store_dir / "blelock.db"
    async with await Database.open(path) as db:
        first = await db.unlock(key_dir, {})
    async with await Database.open(path) as db:
        second = await db.unlock(key_dir, {})
    assert second.open(first.seal(b"x", b"y"), b"y") == b"x"


def test_racing_creators_agree_on_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: DataKey.load(tmp_path, {}, create=True), range(8)))
    sealed = keys[0].seal(b"secret", b"aad")
    assert all(key.open(sealed, b"aad") == b"secret" for key in keys)
    assert [p.name for p in tmp_path.iterdir()] == [DATA_KEY_FILE]  # no drafts left behind


def test_a_tag_is_keyed_stable_and_never_the_plain_digest() -> None:
    import hashlib

    raw = os.urandom(32)
    one, two = DataKey(raw, "kiosk 1"), DataKey(raw, "kiosk 2")
    tag = one.tag(b"493817")
    assert tag == two.tag(b"493817") and len(tag) == 64  # every kiosk with the key agrees
    assert tag != DataKey.generate().tag(b"493817")  # another key: another tag
    assert tag != one.tag(b"493818")
    assert tag != hashlib.sha256(b"493817").hexdigest()
    assert raw.hex() not in repr(one) and tag not in repr(one)
