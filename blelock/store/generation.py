"""The store's generation: a counter that rises whenever a revocation or replacement of keys
is written, kept both in the database and **outside** it, next to the data key.

Every sealed value carries the generation it was sealed at (an outer AES-GCM layer whose
associated data is the generation, see :meth:`blelock.store.crypto.DataKey.seal`); a bump
reseals every live sealed value at the next generation in the same transaction as the
revocation, then raises the outside counter. A database copied before the revocation (a backup
put back, or a stolen copy rolled back) has a lower generation than the file: it is refused on
unlock, and its rows, sealed at the old generation, do not open under the current one even if
its counter is edited.

Why a file of its own (``store.generation`` in the key directory, 0600, written beside its
name, fsync'd, renamed into place) and not sealed into ``data.key``: the data key may come
from ``BLELOCK_DATA_KEY`` with no file at all, and ``data.key`` is written exactly once (linked
into place): rewriting it on every bump would put every secret at risk of a torn write, where
a torn generation file costs only this counter (and is refused, never guessed).

Blocking file I/O: call it from the store's writer thread.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from blelock.errors import StoreError
from blelock.store.crypto import fsync_directory, tighten

__all__ = ["GENERATION_FILE", "read_generation", "write_generation"]

GENERATION_FILE: Final = "store.generation"


def read_generation(directory: Path) -> int | None:
    """The generation last written outside the database, or None if there is none yet."""
    path = directory / GENERATION_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(
            f"cannot read the store generation {path}: {exc.strerror}; nothing was changed",
            hint="check the file's owner and permissions",
        ) from None
    try:
        tighten(path, fd)
        raw = os.read(fd, 64)
    finally:
        os.close(fd)
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise StoreError(
            f"the store generation {path} is damaged; nothing was changed",
            hint="restore it from the backup made with the key directory; never lower it by "
            "hand (it is what keeps an older copy of the store from being used)",
        )
    return int(text)


def write_generation(directory: Path, generation: int) -> None:
    """Replace the outside counter with ``generation``, durably (draft, fsync, rename)."""
    path = directory / GENERATION_FILE
    draft = directory / f".{GENERATION_FILE}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, f"{generation}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(draft, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            draft.unlink()
        raise StoreError(
            f"cannot write the store generation {path}: {exc.strerror}",
            hint="check the key directory's permissions (BLELOCK_KEY_DIR, key_dir in the "
            "config file)",
        ) from None
    fsync_directory(directory)
