"""``blelock serve`` as a process: the runner, the API on uvicorn, signals, systemd notify.

SIGTERM (systemd stop) and SIGINT: refuse new operations (503), let in-flight ones finish
within their budgets, close the HTTP server gracefully, stop the background work, exit 0.
uvicorn's own signal capture is switched off: it would re-raise the signal after shutdown and
turn a clean stop into death by SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from blelock.config import Settings
from blelock.errors import ConfigError
from blelock.service.api import create_app
from blelock.service.logs import configure_logging, logger
from blelock.service.runner import SCAN_WINDOW_S, Runner

__all__ = ["serve"]

HTTP_SHUTDOWN_S = 10
"""Open HTTP exchanges get this long to finish once every job is done."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the service installs its own handlers (see the module docstring)


def _notify(state: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if systemd gave one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)  # a datagram to a local socket: never worth waiting for
        sock.sendto(state.encode(), address)


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bound before the server starts, so the port chosen for 0 can be logged."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Answers are small: send them without waiting for the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror})",
            hint="check serve_host / serve_port, and that no other service holds the port",
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _unix_socket(path: Path) -> socket.socket:
    """The API's Unix socket at ``path``, 0600 from the moment it exists. The directory must be
    writable by its owner only (else another user could swap the name); a socket left by a
    service that died is replaced, one a live service answers on is not."""
    parent = path.parent
    try:
        info = parent.stat()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {path}: its directory {parent} is unusable ({exc.strerror})",
            hint="create the directory (mode 0700) or choose another serve_socket",
        ) from None
    if info.st_mode & 0o022 or info.st_uid != os.getuid():
        raise ConfigError(
            f"cannot listen on {path}: {parent} may be written by other users, who could put "
            "their own socket in its place",
            hint="put serve_socket in a directory only this user may write (e.g. "
            "$XDG_RUNTIME_DIR, or one made with mode 0700)",
        )
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(
                f"cannot listen on {path}: something that is not a socket is there",
                hint="choose another serve_socket, or move that file aside",
            )
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # nobody answers: left by a service that died
            else:
                raise ConfigError(
                    f"cannot listen on {path}: another service is listening there",
                    hint="stop it first, or choose another serve_socket",
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
            f"cannot listen on {path} ({exc.strerror})", hint="check serve_socket"
        ) from None
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(settings: Settings, *, scan_window: float = SCAN_WINDOW_S) -> None:
    """Run until SIGTERM or SIGINT; then drain and return."""
    token = settings.serve_token
    if token is None:
        raise ConfigError(
            "the service needs an API token and none is configured",
            hint="set serve_token in the config file (mode 0600) or BLELOCK_SERVE_TOKEN",
        )
    configure_logging(settings.log_format)
    unix = settings.serve_socket
    if unix is not None:
        sock = _unix_socket(unix)
    else:
        if settings.serve_host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning(
                "the API listens beyond this machine", extra={"host": settings.serve_host}
            )
        sock = _listening_socket(settings.serve_host, settings.serve_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Runner(settings, scan_window=scan_window) as runner:
            config = uvicorn.Config(
                create_app(runner, token),
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=HTTP_SHUTDOWN_S,
            )
            http = _Server(config)
            http_task = asyncio.create_task(http.serve(sockets=[sock]))
            if unix is not None:
                logger.info("listening", extra={"socket": str(unix)})
            else:
                host, port = sock.getsockname()[:2]
                logger.info("listening", extra={"host": host, "port": port})
            _notify("READY=1")
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({stopping, http_task}, return_when=asyncio.FIRST_COMPLETED)
            _notify("STOPPING=1")
            logger.info("stopping: finishing in-flight operations")
            runner.stop_accepting()
            await runner.drain()
            http.should_exit = True
            await http_task
            stopping.cancel()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        sock.close()
        if unix is not None:
            with contextlib.suppress(FileNotFoundError):
                unix.unlink()
