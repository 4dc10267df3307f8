"""The SQLite file behind the store: opened safely, migrated, and used from one writer thread.

Durability is the point of this file: a log record acknowledged to the user must survive a power
cut, so the database runs in WAL mode with ``synchronous=FULL`` (every commit is fsync'd). A
write that a power cut may undo without harm (the outbox forgetting records the cloud already
has: they go again under the key the cloud kept) asks for ``durable=False`` and commits without
the wait; the next durable commit syncs it too, and a crash of the process alone loses nothing.

Opening never destroys anything. A file that is not SQLite, belongs to another application, was
written by a newer blelock, or is corrupt is refused with a :class:`StoreError` before a single
byte of it is written. The file and its directory are private (0600 / 0700): the database holds
sealed offline keys and the locks' logs.

Every query runs in ONE dedicated thread that owns the connection, so the event loop never blocks
on disk I/O and the connection is never shared between threads. ``await db.run(fn)`` runs
``fn(connection)`` in that thread inside a transaction: committed when ``fn`` returns, rolled back
when it raises. A caller cancelled while ``fn`` runs does not stop it: the transaction then
commits or rolls back as a whole, so the store stays consistent either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

from blelock.errors import StoreDamaged, StoreError, StoreFull
from blelock.store.crypto import (
    DATA_KEY_ENV,
    DATA_KEY_FILE,
    DataKey,
    fsync_directory,
    generation_aad,
    tighten,
)
from blelock.store.generation import GENERATION_FILE, read_generation, write_generation
from blelock.store.migrations import LATEST_VERSION, MIGRATIONS

__all__ = [
    "APPLICATION",
    "KEY_CHECK_AAD",
    "LATEST_VERSION",
    "MIGRATIONS",
    "Database",
    "disk_room",
    "has_room_for_a_visit",
    "integrity_problems",
    "opens_key_check",
]

T = TypeVar("T")

APPLICATION: Final = "blelock"
"""The marker in ``meta`` that tells our database from any other SQLite file."""

KEY_CHECK_AAD: Final = b"blelock key check"
_KEY_CHECK_PLAINTEXT: Final = b"blelock key check v1"

BUSY_TIMEOUT_S: Final = 30.0
"""How long to wait for another blelock process (the service and a CLI command may share one
store) to finish its write. The longest write, a 500,000-key sync, takes a few seconds on a
laptop and maybe ten times that on a Raspberry Pi; a visit's logs must not be refused then."""

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_COMPANIONS: Final = ("-wal", "-shm", "-journal")
"""SQLite's side files: they hold the same data as the database, so they get the same mode."""
_MOVE_ASIDE: Final = "move it aside or point --data-dir elsewhere"


class Database:
    """One SQLite store, owned by one writer thread. Make it with :meth:`open`."""

    def __init__(self, path: Path, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self.path = path
        self._executor = executor
        self._conn = conn
        self._closed = False
        self._key_dir: Path | None = None
        self._bound: DataKey | None = None  # the unlocked key, kept at the store's generation

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    @classmethod
    async def open(
        cls, path: Path, plugin_migrations: Mapping[str, Sequence[str]] | None = None
    ) -> Database:
        """Open (creating if absent) and migrate the store at ``path``, or refuse clearly;
        ``plugin_migrations``: each vendor plugin's own schema scripts, by plugin name."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blelock-store")
        opening = executor.submit(_open_connection, path, plugin_migrations or {})
        try:
            conn = await asyncio.wrap_future(opening)
        except asyncio.CancelledError:
            # The thread keeps going; close what it opens once it is done (same thread, FIFO).
            executor.submit(_close_opened, opening)
            executor.shutdown(wait=False)
            raise
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(path, executor, conn)

    async def run(
        self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True, durable: bool = True
    ) -> T:
        """``fn(connection)`` in the writer thread, in one transaction.

        ``write=False`` begins a deferred transaction (a consistent snapshot that does not take
        the write lock, so another process's writer is not held up). ``durable=False``: the
        commit does not wait for the disk (``synchronous=NORMAL`` for this transaction only), for
        a write a power cut may undo (see the module's docstring)."""
        if self._closed:
            raise RuntimeError("the store is closed")
        return await asyncio.wrap_future(
            self._executor.submit(self._transaction, fn, write, durable)
        )

    async def ensure_room(self, nbytes: int) -> None:
        """Raise :class:`StoreFull` unless ``nbytes`` more can be written to the store now.

        Two limits are checked, in the writer thread: the pages SQLite may still add
        (``max_page_count``, less the free pages it reuses first) and the filesystem's free
        space, of which a commit needs about twice ``nbytes`` (the write-ahead log, then the
        database file at the checkpoint) plus the shared-memory index. Called before a visit
        touches a lock, with a bound on what the visit can produce: a lock opened must have
        room for its records. (Another process writing meanwhile could still use the room up;
        the bound leaves a wide margin for one visit's few rows.)"""
        if self._closed:
            raise RuntimeError("the store is closed")
        await asyncio.wrap_future(self._executor.submit(self._ensure_room, nbytes))

    def _ensure_room(self, nbytes: int) -> None:
        try:
            size, limit, count, free = (
                int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])
                for name in ("page_size", "max_page_count", "page_count", "freelist_count")
            )
        except sqlite3.Error as exc:
            raise _failed(self.path, exc) from exc
        headroom = (limit - count + free) * size
        if headroom < nbytes:
            raise StoreFull(
                f"the store {self.path} is at its size limit ({_size(headroom)} left, a visit "
                f"needs {_size(nbytes)} for the lock's records); the lock was not touched"
            )
        problem = disk_room(self.path.parent, _disk_need(nbytes))
        if problem is not None:
            raise StoreFull(f"{problem}: a visit's records would not fit; the lock was not touched")

    async def unlock(
        self, key_dir: Path, environ: Mapping[str, str], *, create: bool = True
    ) -> DataKey:
        """The data key for this store, checked against the key check kept in ``meta``.

        A store without a key check (a new one) is enrolled: the key is found or, with
        ``create``, made, and a value sealed under it is stored. A store with one only ever
        accepts the key that sealed it: a fresh key would silently orphan every secret."""
        enrolled = await self.run(_has_key_check, write=False)
        # Only enrolling writes; checking the key must not take the write lock.
        key = await self.run(
            lambda conn: _unlock(conn, self.path, key_dir, environ, create), write=not enrolled
        )
        await self._in_writer(lambda: self._bind_generation(key, key_dir))
        self._key_dir = key_dir
        self._bound = key
        return key

    async def run_revoking(
        self, fn: Callable[[sqlite3.Connection], tuple[T, bool]], key: DataKey
    ) -> T:
        """Like :meth:`run`, for a write that may revoke or replace keys: ``fn`` returns (its
        result, whether it did). If it did, the same transaction reseals every sealed value at
        the next store generation, and the counter outside the database is raised once it has
        committed: a copy of the store from before can no longer be used (see
        :mod:`blelock.store.generation`)."""
        if self._closed:
            raise RuntimeError("the store is closed")
        key_dir = self._key_dir
        if key.generation is None or key_dir is None:
            raise RuntimeError("run_revoking needs the data key from this store's unlock()")

        def job() -> T:
            bumped: list[int] = []

            def inner(conn: sqlite3.Connection) -> T:
                result, revoked = fn(conn)
                if revoked:
                    assert key.generation is not None
                    new = key.generation + 1
                    _reseal_all(conn, key, key.generation, new)
                    bumped.append(new)
                return result

            result = self._transaction(inner, True)
            if bumped:
                key.generation = bumped[0]  # same thread, before any later run seals
                write_generation(key_dir, bumped[0])
            return result

        return await self._in_writer(job)

    async def _in_writer(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._executor.submit(fn))

    def _follow_generation(self, conn: sqlite3.Connection) -> None:
        """Another process (``blelock sync`` beside the kiosk) may have raised the generation:
        every transaction brings the unlocked key up to the database's. Lower than what this
        process saw: the file was swapped for an older copy under it, refused."""
        key = self._bound
        if key is None or key.generation is None:
            return
        found = _generation_in(conn)
        if found is None or found < key.generation:
            raise StoreError(
                f"this store {self.path} is older than the last one this device used "
                f"(generation {found}, this process saw {key.generation}): replaced by a "
                "backup while in use? It may hold keys revoked since; nothing was changed",
                hint="put back the store this device last used and restart",
            )
        key.generation = found

    def _bind_generation(self, key: DataKey, key_dir: Path) -> None:
        outside = read_generation(key_dir)
        inside = self._transaction(_generation_in, False)
        if inside is None:
            inside = self._transaction(lambda conn: _adopt_generation(conn, key, outside), True)
        if outside is not None and inside < outside:
            raise StoreError(
                f"this store {self.path} is older than the last one this device used "
                f"(generation {inside}, and {key_dir / GENERATION_FILE} says {outside}): "
                "restored from a backup? It may hold keys revoked since; nothing was changed",
                hint="use the store this device last used; or move this one aside and run "
                "`blelock sync` while online to start afresh (pending logs in it still "
                f"upload: `blelock upload`); never lower {GENERATION_FILE} by hand",
            )
        key.generation = inside
        if outside != inside:
            # Newer inside: the last bump committed but its file write did not (a crash).
            write_generation(key_dir, inside)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wrap_future(self._executor.submit(_close, self._conn))
        finally:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _transaction(
        self, fn: Callable[[sqlite3.Connection], T], write: bool, durable: bool = True
    ) -> T:
        if durable:
            return self._in_transaction(fn, write)
        # Changed between transactions only, and back at once: every other commit waits.
        try:
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise _failed(self.path, exc) from exc
        try:
            return self._in_transaction(fn, write)
        finally:
            try:
                self._conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise _failed(self.path, exc) from exc

    def _in_transaction(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        conn = self._conn
        try:
            # IMMEDIATE takes the write lock up front: a deferred transaction that reads and
            # then writes can fail with "database is locked" without waiting when another
            # process wrote in between, and every writer here reads first.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                self._follow_generation(conn)
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT (disk full, I/O error): a transaction left open
                # would make every later BEGIN fail.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _failed(self.path, exc) from exc
        return result


_SHM_BYTES: Final = 64 * 1024
"""The WAL's shared-memory index (32 KiB) and slack for a page or two."""


def _disk_need(nbytes: int) -> int:
    return 2 * nbytes + _SHM_BYTES


def _size(nbytes: int) -> str:
    return f"{nbytes / 1024:.0f} KiB" if nbytes < 1024 * 1024 else f"{nbytes / 2**20:.1f} MiB"


def disk_room(directory: Path, need: int) -> str | None:
    """None when the filesystem holding ``directory`` has ``need`` bytes free for blelock (the
    space left to unprivileged users), else a one-line sentence naming the disk. Blocking: call
    it in a thread."""
    try:
        stat = os.statvfs(directory)
    except OSError as exc:
        return f"cannot tell the free space of the disk holding the store {directory}: {exc}"
    free = stat.f_bavail * stat.f_frsize
    if free >= need:
        return None
    return (
        f"the disk holding the store {directory} is full ({_size(free)} free, {_size(need)} needed)"
    )


def has_room_for_a_visit(directory: Path, nbytes: int) -> str | None:
    """What health reports: :func:`disk_room` for a visit of ``nbytes``."""
    return disk_room(directory, _disk_need(nbytes))


def integrity_problems(conn: sqlite3.Connection, limit: int = 1000) -> list[str]:
    """SQLite's full ``integrity_check`` (every index against its table, unlike the
    ``quick_check`` at open): each problem as SQLite words it, none when the file is sound.
    Reads the whole file: for ``blelock store check`` and after SQLite reported damage, not
    for every upload."""
    rows = [str(row[0]) for row in conn.execute(f"PRAGMA integrity_check({int(limit)})")]
    return [] if rows == ["ok"] else rows


def _failed(path: Path, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_CORRUPT:
        return StoreDamaged(f"the store {path} is damaged: {text}; the change was not saved")
    if code == sqlite3.SQLITE_IOERR and (full := disk_room(path.parent, _SHM_BYTES)) is not None:
        # SQLite reports a full disk as an I/O error when it cannot grow its index or log.
        return StoreFull(f"{full}: {text}; the change was not saved")
    if "locked" in text or "busy" in text:
        hint = "another blelock process is using the store; try again when it is done"
    elif "full" in text:
        return StoreFull(f"the store {path} failed: {text}; the change was not saved")
    else:
        hint = "check the disk and the file's permissions; run with --debug to see more"
    return StoreError(f"the store {path} failed: {text}; the change was not saved", hint=hint)


def _unreadable(path: Path, exc: sqlite3.Error) -> StoreError:
    """A file SQLite cannot read: damaged, not a database after all, or merely busy/denied."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code, without extensions
    if code == sqlite3.SQLITE_CORRUPT:
        return _refuse(path, f"is corrupt ({exc})")
    if code == sqlite3.SQLITE_NOTADB:
        return _refuse(path, f"is not a readable SQLite database ({exc})")
    return _failed(path, exc)


def _refuse(path: Path, what: str, hint: str = _MOVE_ASIDE) -> StoreError:
    return StoreError(f"{path} {what}; nothing was changed", hint=hint)


def _open_connection(
    path: Path, plugin_migrations: Mapping[str, Sequence[str]]
) -> sqlite3.Connection:
    """In the writer thread: make or check the file, connect, check it is ours, migrate."""
    _prepare_file(path)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise _refuse(path, f"cannot be opened ({exc})", "check the file's permissions") from None
    try:
        _check_ours(conn, path)
        # Only now is the file known to be ours, so only now may anything about it change.
        for companion in (path, *(path.with_name(path.name + s) for s in _COMPANIONS)):
            with contextlib.suppress(FileNotFoundError):
                tighten(companion)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise _refuse(
                path,
                f"cannot use write-ahead logging (journal mode stays {mode!r})",
                "put the data dir on a local filesystem (--data-dir)",
            )
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        _migrate(conn)
        _migrate_plugins(conn, path, plugin_migrations)
    except sqlite3.Error as exc:
        conn.close()
        raise _failed(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare_file(path: Path) -> None:
    """Create the directory (0700) and, when absent, the store itself: made whole in a private
    temporary file (0600), fsync'd, then linked into place, so ``path`` never names a half-made
    store. An existing file is only read: an empty one is refused, never initialised."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the store directory {path.parent}: {exc.strerror}",
            hint="check its permissions, or point --data-dir elsewhere",
        ) from None
    if not os.path.lexists(path):
        _create(path)
    if not path.is_file():
        raise _refuse(path, "is not a regular file")
    try:
        with path.open("rb") as stream:
            header = stream.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(
            f"cannot read the store {path}: {exc.strerror}; nothing was changed",
            hint="check the file's owner and permissions",
        ) from None
    if not header:
        # blelock never leaves an empty store (it is made whole, then renamed into place):
        # an empty file was truncated or made by someone else; its records may be elsewhere.
        raise _refuse(path, "is empty (0 bytes), so it is not a whole blelock store")
    if header != _SQLITE_MAGIC:
        raise _refuse(path, "is not an SQLite database (so not a blelock store)")


def _create(path: Path) -> None:
    """Make a new, fully migrated store at ``path`` atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            _migrate(conn)
        finally:
            conn.close()
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link, not rename: a store another process made meanwhile is never replaced.
            os.link(temporary, path)
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links
            os.rename(temporary, path)
        # The new name must survive a power cut like the data written under it will.
        fsync_directory(path.parent)
    except sqlite3.Error as exc:
        raise _failed(path, exc) from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreFull(
                f"the disk holding the store {path.parent} is full: cannot create the store"
            ) from None
        raise StoreError(
            f"cannot create the store {path}: {exc.strerror}",
            hint="check the directory's permissions, or point --data-dir elsewhere",
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary.with_name(temporary.name + "-journal"))


def _check_ours(conn: sqlite3.Connection, path: Path) -> None:
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        marker = (
            conn.execute("SELECT value FROM meta WHERE key = 'application'").fetchone()
            if "meta" in tables
            else None
        )
    except sqlite3.Error as exc:
        raise _unreadable(path, exc) from exc
    if version == 0 and not tables:
        # A store is created whole (see _create): an SQLite file with nothing in it is not one.
        raise _refuse(path, "is an empty SQLite database (a half-made store, not a blelock one)")
    if marker is None or marker[0] != APPLICATION:
        raise _refuse(path, "is an SQLite database of another application (no blelock marker)")
    if version > LATEST_VERSION:
        raise _refuse(
            path,
            f"was written by a newer blelock (schema version {version}; this one knows up to "
            f"{LATEST_VERSION})",
            _MOVE_ASIDE + ", or upgrade blelock",
        )
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.Error as exc:
        raise _unreadable(path, exc) from exc
    if problems != ["ok"]:
        raise _refuse(path, f"is corrupt (quick_check: {'; '.join(problems[:3])})")


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (``executescript`` would commit on its own)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:60]!r}")


def _migrate(conn: sqlite3.Connection) -> None:
    # A store already at the latest version needs no write lock: opening must not wait behind
    # (or hold up) another process's long transaction, such as a fleet-sized key sync.
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) >= LATEST_VERSION:
        return
    for version, script in enumerate(MIGRATIONS, start=1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated meanwhile.
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) < version:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _plugin_versions(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT plugin, version FROM plugin_schema").fetchall())


def _migrate_plugins(
    conn: sqlite3.Connection, path: Path, migrations: Mapping[str, Sequence[str]]
) -> None:
    """Each plugin's scripts in order, one transaction each, as the core's are."""
    current = _plugin_versions(conn)
    for plugin, scripts in migrations.items():
        if current.get(plugin, 0) > len(scripts):
            raise _refuse(
                path,
                f"was written by a newer {plugin} plugin (its schema {current[plugin]}, this "
                f"blelock knows {len(scripts)})",
                hint="upgrade blelock, or point --data-dir elsewhere",
            )
        if current.get(plugin, 0) == len(scripts):
            continue
        for version, script in enumerate(scripts, start=1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                if _plugin_versions(conn).get(plugin, 0) < version:
                    for statement in _statements(script):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO plugin_schema (plugin, version) VALUES (?, ?) "
                        "ON CONFLICT (plugin) DO UPDATE SET version = excluded.version",
                        (plugin, version),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise


def _has_key_check(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM meta WHERE key = 'key_check'").fetchone() is not None


def opens_key_check(conn: sqlite3.Connection, key: DataKey) -> bool:
    """Whether ``key`` is the data key this store was enrolled with (False before any): its key
    check is sealed bare, before store generations apply, so it opens whatever the generation."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
    if row is None:
        return False
    try:
        return key.open_bare(bytes(row[0]), KEY_CHECK_AAD) == _KEY_CHECK_PLAINTEXT
    except StoreError:
        return False


def _unlock(
    conn: sqlite3.Connection,
    path: Path,
    key_dir: Path,
    environ: Mapping[str, str],
    create: bool,
) -> DataKey:
    if not _has_key_check(conn):
        # Any table's sealed values (core or plugin, e.g. Nokē's offline keys): a fresh key
        # enrolled now would orphan them.
        if any(
            conn.execute(
                f'SELECT 1 FROM "{table}" WHERE length({_SEALED_COLUMN}) > 0 LIMIT 1'
            ).fetchone()
            for table in _sealed_tables(conn)
        ):
            raise StoreError(
                f"{path} holds sealed secrets but no key check; nothing was changed",
                hint=_MOVE_ASIDE + ", then run `blelock sync` while online",
            )
        key = DataKey.load(key_dir, environ, create=create)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('key_check', ?)",
            (key.seal(_KEY_CHECK_PLAINTEXT, KEY_CHECK_AAD),),
        )
        return key
    found = DataKey.find(key_dir, environ)
    if found is None:
        raise StoreError(
            f"data key missing: {path} holds secrets sealed under a data key, but "
            f"{DATA_KEY_ENV} is not set and {key_dir / DATA_KEY_FILE} does not exist; "
            "nothing was changed (no new key was made: it could not open those secrets)",
            hint=f"restore {DATA_KEY_FILE} from a backup or set {DATA_KEY_ENV}; pending logs "
            "still upload without it (`blelock upload`)",
        )
    if not opens_key_check(conn, found):
        raise StoreError(
            f"the data key does not match this store {path} (the key came from {found.source}); "
            "nothing was changed",
            hint="use the data key this store was created with "
            f"({DATA_KEY_ENV} or {DATA_KEY_FILE}); pending logs still upload without it "
            "(`blelock upload`)",
        )
    return found


_SEALED_COLUMN: Final = "sealed"
"""The convention every table holding secrets follows (core or plugin): a column of this name
holds a :class:`DataKey` blob (or ``x''`` for a secret already deleted). That is how the store
reseals at a new generation without knowing whose tables they are."""


def _sealed_tables(conn: sqlite3.Connection) -> list[str]:
    names = [
        str(row[0])
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not str(row[0]).startswith("sqlite_")
    ]
    return [
        name
        for name in names
        if any(col[1] == _SEALED_COLUMN for col in conn.execute(f'PRAGMA table_info("{name}")'))
    ]


def _update_sealed(conn: sqlite3.Connection, change: Callable[[bytes], bytes]) -> int:
    """Apply ``change`` to every non-empty sealed value; how many there were."""

    def apply(value: bytes | None) -> bytes | None:
        return value if not value else change(bytes(value))

    conn.create_function("blelock_reseal", 1, apply)
    count = 0
    try:
        for table in _sealed_tables(conn):
            count += conn.execute(
                f'UPDATE "{table}" SET {_SEALED_COLUMN} = blelock_reseal({_SEALED_COLUMN}) '
                f"WHERE length({_SEALED_COLUMN}) > 0"
            ).rowcount
    finally:
        conn.create_function("blelock_reseal", 1, None)
    return count


def _reseal_all(conn: sqlite3.Connection, key: DataKey, old: int, new: int) -> None:
    def reseal(blob: bytes) -> bytes:
        try:
            inner = key.open_bare(blob, generation_aad(old))
        except StoreError:
            return blob  # damaged already: left as it is (it opens no more than before)
        return key.seal_bare(inner, generation_aad(new))

    _update_sealed(conn, reseal)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (new,))


def _generation_in(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    return None if row is None else int(row[0])


def _adopt_generation(conn: sqlite3.Connection, key: DataKey, outside: int | None) -> int:
    """A store from before generations (or a new one): its sealed values, accepted this once,
    are wrapped at a generation, and it has one from now on. A store that holds secrets but no
    generation, on a device that already keeps one outside, is an older copy: left as it is."""
    found = _generation_in(conn)  # another process may have adopted it meanwhile
    if found is not None:
        return found
    held = sum(
        conn.execute(
            f'SELECT count(*) FROM "{table}" WHERE length({_SEALED_COLUMN}) > 0'
        ).fetchone()[0]
        for table in _sealed_tables(conn)
    )
    if outside is not None and held:
        return 0  # refused by the caller: older than the outside counter
    generation = outside or 1
    _update_sealed(conn, lambda blob: key.seal_bare(blob, generation_aad(generation)))
    conn.execute("INSERT INTO meta (key, value) VALUES ('generation', ?)", (generation,))
    return generation


def _close(conn: sqlite3.Connection) -> None:
    # SQLite's advice for long-lived stores, just before closing; advisory, so never fatal.
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA optimize")
    conn.close()


def _close_opened(opening: Future[sqlite3.Connection]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _close(opening.result())
