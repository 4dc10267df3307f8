"""A store file is whole or absent: made atomically, and an empty or half-made one is refused."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from blelock.errors import StoreError
from blelock.store import db as db_module
from blelock.store.db import LATEST_VERSION, Database


def _names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


async def test_a_zero_byte_store_is_refused_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "blelock.db"
    await asyncio.to_thread(path.touch, 0o600)
    with pytest.raises(StoreError) as caught:
        await Database.open(path)
    assert "is empty (0 bytes)" in caught.value.message and str(path) in caught.value.message
    assert caught.value.hint and "move it aside" in caught.value.hint
    assert path.stat().st_size == 0 and _names(tmp_path) == [path.name]


async def test_a_new_store_appears_whole_and_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "blelock.db"
    seen: list[str] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def link(src: str | Path, dst: str | Path) -> None:
        # At the moment the name appears, what it names is already a migrated store.
        with sqlite3.connect(src) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        conn.close()
        assert not os.path.lexists(dst)
        real_link(src, dst)

    monkeypatch.setattr(db_module.os, "fsync", fsync)
    monkeypatch.setattr(db_module.os, "link", link)
    async with await Database.open(path):
        pass
    temporary = [name for name in seen if name.endswith(".new")]
    assert temporary, seen  # the file's data reached the disk before its name
    assert str(tmp_path) in seen  # and so did the name
    assert [n for n in _names(tmp_path) if n.endswith(".new")] == []


async def test_a_crash_while_creating_leaves_no_store_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "blelock.db"

    def crash(src: str | Path, dst: str | Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(db_module.os, "link", crash)
    monkeypatch.setattr(db_module.os, "rename", crash)
    with pytest.raises(StoreError, match="cannot create the store"):
        await Database.open(path)
    assert _names(tmp_path) == []  # neither a half-made store nor a temporary file
    monkeypatch.undo()
    async with await Database.open(path) as db:  # and the next try makes it whole
        assert await db.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == (
            LATEST_VERSION
        )
