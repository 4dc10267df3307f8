"""The AES-GCM envelope for secrets at rest, and where its data key lives.

The data key is 32 random bytes. A kiosk whose disk should not hold it sets ``BLELOCK_DATA_KEY``
(urlsafe base64); otherwise it is the file ``data.key`` (mode 0600) in the key directory, created
on first use. The environment wins so that an image can be cloned with its key kept elsewhere.

A sealed blob is ``nonce (12 random bytes) || ciphertext || tag``. The associated data binds a
blob to where it belongs (for an offline key: the lock and the tracking key), so a blob copied to
another row fails to open instead of being used for the wrong lock. Once the store has a
generation (:mod:`blelock.store.generation`), that envelope is sealed once more with the
generation as associated data, so a value from an older copy of the store does not open.

This module does blocking file I/O: call it from the store's writer thread, never from the loop.
Nothing here ever puts key bytes into a message, a repr or a chained exception.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from blelock.errors import StoreError

__all__ = [
    "DATA_KEY_ENV",
    "DATA_KEY_FILE",
    "KEY_BYTES",
    "NONCE_BYTES",
    "DataKey",
    "fsync_directory",
    "generation_aad",
    "tighten",
]

DATA_KEY_ENV = "BLELOCK_DATA_KEY"
DATA_KEY_FILE = "data.key"
KEY_BYTES = 32
"""AES-256."""
NONCE_BYTES = 12
"""GCM's native nonce size. Random nonces are safe far beyond the number of secrets a store holds
(the 2^-32 collision bound is reached only after ~2^32 seals under one key)."""
_TAG_BYTES = 16
_TAG_INFO = b"blelock: code tags"
"""HKDF's info for the subkey of :meth:`DataKey.tag`."""

_MALFORMED = (
    f"expected {KEY_BYTES} bytes as urlsafe base64, {4 * ((KEY_BYTES + 2) // 3)} characters"
)
_HINT_FIX = (
    f"copy the key again exactly as it was written, into {DATA_KEY_ENV} or the key file, or "
    f"restore {DATA_KEY_FILE} from a backup"
)


class DataKey:
    """A 32-byte AES-GCM key and a description of where it came from (never the key itself)."""

    __slots__ = ("_aead", "_tag_key", "generation", "source")

    def __init__(self, key: bytes, source: str) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a data key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        # A subkey of its own for tags, so a tag never uses the sealing key directly.
        self._tag_key = HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_TAG_INFO
        ).derive(key)
        self.source = source
        """Where the key came from, for messages: the environment variable or the file path."""
        self.generation: int | None = None
        """The store generation sealed values are bound to (set by ``Database.unlock``; None:
        the bare envelope, as for the key check). See :mod:`blelock.store.generation`."""

    def __repr__(self) -> str:
        return f"DataKey(source={self.source!r})"

    @classmethod
    def generate(cls, source: str = "a freshly generated key") -> DataKey:
        return cls(os.urandom(KEY_BYTES), source)

    @classmethod
    def load(cls, directory: Path, environ: Mapping[str, str], *, create: bool) -> DataKey:
        """The key from ``BLELOCK_DATA_KEY``, else from ``directory/data.key``.

        With ``create`` a missing file is made (0600, exclusively: two processes racing end up
        with the same key). Without it, a missing key is a :class:`StoreError`."""
        found = cls.find(directory, environ)
        if found is not None:
            return found
        if not create:
            raise StoreError(
                f"data key missing: {DATA_KEY_ENV} is not set and {directory / DATA_KEY_FILE} "
                "does not exist",
                hint=f"set {DATA_KEY_ENV}, or restore {DATA_KEY_FILE} from a backup",
            )
        return cls._create_file(directory)

    @classmethod
    def find(cls, directory: Path, environ: Mapping[str, str]) -> DataKey | None:
        """The key from the environment or the file, or None when neither exists."""
        text = environ.get(DATA_KEY_ENV, "")
        if text.strip():  # blank means unset, as for the other BLELOCK_* variables
            source = f"the {DATA_KEY_ENV} environment variable"
            return cls(_decode(text, source), source)
        path = directory / DATA_KEY_FILE
        source = f"the key file {path}"
        try:
            with _open_private(path, os.O_RDONLY) as fd:
                raw = _read_all(fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(
                f"cannot read {source}: {exc.strerror}; nothing was changed",
                hint="check the file's owner and permissions",
            ) from None
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise StoreError(f"{source} is malformed ({_MALFORMED})", hint=_HINT_FIX) from None
        return cls(_decode(text, source), source)

    @classmethod
    def _create_file(cls, directory: Path) -> DataKey:
        """Write a new key beside its final name, then link it into place: the name appears
        only once the key is whole and on disk, and a key another process put there first is
        never overwritten (both then use that one)."""
        path = directory / DATA_KEY_FILE
        key = os.urandom(KEY_BYTES)
        draft = directory / f".{DATA_KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, base64.urlsafe_b64encode(key) + b"\n")
                # On disk before anything is sealed under it: a key lost to a power cut would
                # orphan every secret written after it.
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(draft, path)
            except FileExistsError:
                found = cls.find(directory, {})
                if found is None:  # pragma: no cover - it existed a moment ago
                    raise StoreError(f"the key file {path} vanished while being created") from None
                return found
        except OSError as exc:
            raise StoreError(
                f"cannot create the key file {path}: {exc.strerror}",
                hint="check the directory's permissions, or set BLELOCK_KEY_DIR (key_dir in the "
                "config file) to a writable directory",
            ) from None
        finally:
            with contextlib.suppress(OSError):
                draft.unlink()
        fsync_directory(directory)
        return cls(key, f"the key file {path}")

    def tag(self, data: bytes) -> str:
        """A keyed digest of ``data`` (HMAC-SHA256 under a subkey, hex): names a secret in a
        clear column (an access item's ``native``) without letting anyone who lacks the key
        recover it by trying every candidate. The same key always gives the same tag; the
        store generation does not enter it."""
        mac = hmac.HMAC(self._tag_key, hashes.SHA256())
        mac.update(data)
        return mac.finalize().hex()

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        inner = self.seal_bare(plaintext, aad)
        if self.generation is None:
            return inner
        return self.seal_bare(inner, generation_aad(self.generation))

    def seal_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        """:meth:`seal` of each ``(plaintext, aad)``, for a bulk write (a fleet's offline keys):
        the same envelopes, with every nonce drawn in one read from the OS's random source
        instead of one system call per layer. Each nonce is still 12 random bytes of its own,
        from the same source, so none is likelier to repeat than with :meth:`seal`."""
        generation = self.generation
        step = NONCE_BYTES if generation is None else 2 * NONCE_BYTES
        nonces = os.urandom(step * len(items))
        encrypt = self._aead.encrypt
        sealed: list[bytes] = []
        append = sealed.append
        if generation is None:
            for at, (plaintext, aad) in enumerate(items):
                nonce = nonces[at * step : at * step + NONCE_BYTES]
                append(nonce + encrypt(nonce, plaintext, aad))
            return sealed
        outer_aad = generation_aad(generation)
        for at, (plaintext, aad) in enumerate(items):
            start = at * step
            inner_nonce = nonces[start : start + NONCE_BYTES]
            outer_nonce = nonces[start + NONCE_BYTES : start + step]
            inner = inner_nonce + encrypt(inner_nonce, plaintext, aad)
            append(outer_nonce + encrypt(outer_nonce, inner, outer_aad))
        return sealed

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext, or StoreError when the blob is not what was sealed for ``aad`` (at
        this store's generation, once it has one)."""
        if self.generation is not None:
            try:
                blob = self.open_bare(blob, generation_aad(self.generation))
            except StoreError:
                raise StoreError(
                    "a sealed value is not of this store's generation: the store was rolled "
                    f"back, or the value tampered with or sealed under another data key "
                    f"({self.source})"
                ) from None
        return self.open_bare(blob, aad)

    def seal_bare(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open_bare(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of one envelope, or StoreError when it is not what was sealed for
        ``aad``."""
        if len(blob) < NONCE_BYTES + _TAG_BYTES:
            raise StoreError(
                "a sealed value is truncated: it was tampered with or sealed under another "
                f"data key ({self.source})"
            )
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise StoreError(
                f"a sealed value was tampered with or sealed under another data key ({self.source})"
            ) from None


def generation_aad(generation: int) -> bytes:
    """The associated data of a sealed value's outer envelope: its store generation."""
    return b"blelock store generation|" + generation.to_bytes(8, "big")


def _decode(text: str, source: str) -> bytes:
    """Base64 → 32 bytes. The error names the source and never the text (it is a secret)."""
    compact = "".join(text.split())
    compact += "=" * (-len(compact) % 4)
    try:
        key = base64.b64decode(compact, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise StoreError(f"{source} is malformed ({_MALFORMED})", hint=_HINT_FIX)
    return key


@contextlib.contextmanager
def _open_private(path: Path, flags: int) -> Iterator[int]:
    """Open ``path`` and, if group or others may read it, make it 0600 first: a key file left
    readable by a copy or a restore is tightened rather than refused."""
    fd = os.open(path, flags)
    try:
        tighten(path, fd)
        yield fd
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def fsync_directory(directory: Path) -> None:
    """Make a new directory entry durable (POSIX: fsync the directory itself)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def tighten(path: Path, fd: int | None = None) -> None:
    """Make ``path`` readable by its owner only (0600) if it is more open than that."""
    mode = os.fstat(fd).st_mode if fd is not None else path.stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        if fd is not None:
            os.fchmod(fd, 0o600)
        else:
            path.chmod(0o600)
