"""Unix sockets of the long-running processes (``blelock serve``'s API, ``blelock agent``) and
systemd's readiness notification: shared, so that both refuse a socket others could swap alike."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

from blelock.errors import ConfigError

__all__ = ["notify", "unix_socket"]


def notify(state: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if systemd gave one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)  # a datagram to a local socket: never worth waiting for
        sock.sendto(state.encode(), address)


def unix_socket(path: Path, setting: str = "serve_socket") -> socket.socket:
    """The API's Unix socket at ``path``, 0600 from the moment it exists. The directory must be
    writable by its owner only (else another user could swap the name); a socket left by a
    service that died is replaced, one a live service answers on is not."""
    parent = path.parent
    try:
        info = parent.stat()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {path}: its directory {parent} is unusable ({exc.strerror})",
            hint=f"create the directory (mode 0700) or choose another {setting}",
        ) from None
    if info.st_mode & 0o022 or info.st_uid != os.getuid():
        raise ConfigError(
            f"cannot listen on {path}: {parent} may be written by other users, who could put "
            "their own socket in its place",
            hint=f"put {setting} in a directory only this user may write (e.g. "
            "$XDG_RUNTIME_DIR, or one made with mode 0700)",
        )
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(
                f"cannot listen on {path}: something that is not a socket is there",
                hint=f"choose another {setting}, or move that file aside",
            )
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # nobody answers: left by a service that died
            else:
                raise ConfigError(
                    f"cannot listen on {path}: another service is listening there",
                    hint=f"stop it first, or choose another {setting}",
                )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # No moment at which the socket exists with a wider mode: bind under a tight umask (the
    # service is single-threaded at this point).
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {path} ({exc.strerror})", hint=f"check {setting}"
        ) from None
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock
