"""``blelock serve`` as a process: the runner, the API on uvicorn, signals, systemd notify.

SIGTERM (systemd stop) and SIGINT: refuse new operations (503), let in-flight ones finish
within their budgets, close the HTTP server gracefully, stop the background work, exit 0.
uvicorn's own signal capture is switched off: it would re-raise the signal after shutdown and
turn a clean stop into death by SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn

from blelock.collector import set_start_up_aside
from blelock.config import Settings
from blelock.errors import ConfigError
from blelock.service.api import create_app
from blelock.service.logs import configure_logging, logger
from blelock.service.runner import SCAN_WINDOW_S, Runner
from blelock.service.sockets import notify as _notify
from blelock.service.sockets import unix_socket as _unix_socket

__all__ = ["serve"]

HTTP_SHUTDOWN_S = 10
"""Open HTTP exchanges get this long to finish once every job is done."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the service installs its own handlers (see the module docstring)


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


async def serve(
    settings: Settings,
    *,
    scan_window: float = SCAN_WINDOW_S,
    also: Callable[[Runner], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT; then drain and return. ``also``: more to serve from the
    runner while it runs (the CLI's agent socket), ended when in-flight work has drained."""
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
        async with (
            Runner(settings, scan_window=scan_window) as runner,
            contextlib.AsyncExitStack() as extras,
        ):
            if also is not None:
                await extras.enter_async_context(also(runner))
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
            set_start_up_aside()
            _notify("READY=1")
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({stopping, http_task}, return_when=asyncio.FIRST_COMPLETED)
            _notify("STOPPING=1")
            logger.info("stopping: finishing in-flight operations")
            runner.stop_accepting()
            await extras.aclose()
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
