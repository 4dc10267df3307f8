"""``blelock agent``: a resident process (run it under systemd or in tmux) that keeps the store
open and the vendors' cloud clients alive, and runs the ``open`` / ``unlock`` / ``unshackle``
commands that :mod:`blelock.entry` hands it on a Unix socket: a command then pays for no
imports, no store opening and no new HTTPS connection, only for the visit itself.

It serves only a client whose settings are its own (the same ``BLELOCK_*`` and path variables,
compared as HMACs under a nonce of this connection; the same config file and data dir, loaded
now), of its own version, running as its own user (SO_PEERCRED); anything else is declined and
the client runs the command in its own process. A command runs here exactly as the CLI runs it
(:func:`blelock.cli.open.visit`), and its output is rendered as it would be on the client's
terminal, so the client prints the same bytes and exits with the same code. A visit once begun
finishes even when its client goes away (Ctrl-C): its records are in the store either way.

SIGTERM or SIGINT: no new commands, the ones running finish, the store closes, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from blelock import __version__, jobs, preload, vendors
from blelock.cli import build_parser
from blelock.cli import open as open_command
from blelock.cli.context import settings_from
from blelock.cli.environ import variables_set
from blelock.cli.render import DRAW_MODULES, report_failure
from blelock.collector import set_start_up_aside
from blelock.config import Settings
from blelock.entry import (
    FORWARDED_COMMANDS,
    PROTOCOL,
    SOCKET_ENV,
    TERMINAL_VARIABLES,
    agent_socket_path,
    environment_digests,
    peer_uid,
)
from blelock.errors import BlelockError, ConfigError, UsageError
from blelock.service.logs import logger
from blelock.service.runner import Runner
from blelock.service.sockets import notify, unix_socket
from blelock.store import Store
from blelock.vendors.base import KeptClients

__all__ = ["Agent", "kiosk_agent", "listen", "run", "serve_agent"]

Output = tuple[str, str, int]
"""A command's stdout, stderr and exit code."""
RadioSlot = Callable[[str, str], contextlib.AbstractAsyncContextManager[None]]
"""(lock id, operation) → held while the visit runs."""


def run(args: argparse.Namespace) -> int:
    path = agent_socket_path(os.environ)
    if path is None:
        raise UsageError(
            f"{SOCKET_ENV} is off, so no client would find an agent",
            hint=f"unset {SOCKET_ENV}, or set it to the socket's path",
        )
    settings = settings_from(args)
    sock = listen(Path(path))
    try:
        asyncio.run(serve_agent(settings, sock))
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()
    return 0


def listen(path: Path) -> socket.socket:
    """The agent's socket at ``path`` (0600, in a directory of mode 0700)."""
    _private_directory(path.parent)
    return unix_socket(path, SOCKET_ENV)


async def serve_agent(settings: Settings, sock: socket.socket) -> None:
    """Serve on ``sock`` until SIGTERM or SIGINT; then let the running commands finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await asyncio.to_thread(load_visit_modules)
        async with jobs.open_store(settings) as store, KeptClients() as clients:
            agent = Agent(settings, store, clients)
            server = await asyncio.start_unix_server(agent.serve_client, sock=sock)
            set_start_up_aside()
            _say(f"{__version__} listening on {sock.getsockname()}")
            notify("READY=1")
            await stop.wait()
            notify("STOPPING=1")
            server.close()
            await agent.finish()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


@contextlib.asynccontextmanager
async def kiosk_agent(runner: Runner) -> AsyncIterator[None]:
    """``blelock serve``'s agent socket, when ``BLELOCK_AGENT_SOCKET`` names one (never the
    default path: a kiosk and a technician's own agent must not race for it). Its visits take
    the runner's gate for their lock and one of its connection slots."""
    path = os.environ.get(SOCKET_ENV) and agent_socket_path(os.environ)
    if not path:
        yield
        return
    try:
        sock = await asyncio.to_thread(listen, Path(path))
    except ConfigError as exc:
        logger.warning("not serving the CLI", extra={"error": exc.one_line()})
        yield
        return
    await asyncio.to_thread(load_visit_modules)
    agent = Agent(runner.settings, runner.store, runner.clients, radio_slot=runner.radio_slot)
    server = await asyncio.start_unix_server(agent.serve_client, sock=sock)
    logger.info("serving the CLI", extra={"socket": path})
    try:
        yield
    finally:
        server.close()
        await agent.finish()
        sock.close()
        await asyncio.to_thread(_remove, Path(path))


def load_visit_modules() -> None:
    """What the agent's visits would otherwise import lazily, imported now (call it in a
    thread): in a resident process the lazy import a one-shot command wants would stall the
    event loop, and every visit on it. Every plugin's ``cloud_modules`` (the first time a visit
    goes online), and the results table's modules (the agent draws it in its loop; a cold
    command preloads them instead, see :mod:`blelock.preload`)."""
    for plugin in vendors.plugins().values():
        for module in plugin.cloud_modules:
            importlib.import_module(module)
    # Some are rich's own internals, which a later rich may drop: the agent still starts.
    preload.import_available(DRAW_MODULES)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _private_directory(folder: Path) -> None:
    """The socket's directory, made 0700 when missing; one others may enter is refused (they
    could read which locks are opened from the socket's traffic, or race for its name)."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700, parents=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigError(
            f"the agent's socket directory {folder} is open to other users",
            hint=f"chmod 700 {folder}, or set {SOCKET_ENV} to a socket in a private directory",
        )


class Agent:
    """Serves clients on one loop, with one open store and one set of kept cloud clients."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clients: KeptClients,
        *,
        uid: int | None = None,
        radio_slot: RadioSlot | None = None,
    ) -> None:
        """``radio_slot``: what a visit must hold first (inside ``blelock serve``, the runner's
        gate for the lock and one of its connection slots, so that the kiosk's jobs and the
        CLI's commands take turns rather than fight for the radio)."""
        self.settings = settings
        self._radio_slot = radio_slot
        self._store = store
        self._clients = clients
        self._uid = os.getuid() if uid is None else uid
        self._running: set[asyncio.Task[Output]] = set()
        self._built: argparse.ArgumentParser | None = None
        # A relative path in the settings means another directory to a client elsewhere.
        self._paths_relative = (
            _has_relative_path(settings.model_dump())
            or not Path(os.environ.get("BLELOCK_CONFIG", "/")).is_absolute()
        )

    async def _parser(self) -> argparse.ArgumentParser:
        """The CLI's own parser, built once (in a thread: argparse looks at the terminal)."""
        if self._built is None:
            self._built = await asyncio.to_thread(build_parser)
        return self._built

    async def finish(self) -> None:
        """Until every command begun has finished."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            uid = peer_uid(writer.get_extra_info("socket"))
            if uid is not None and uid != self._uid:
                return  # closed unanswered: the client runs the command itself
            nonce = secrets.token_bytes(16)
            await _send(
                writer,
                {"hello": "blelock-agent", "protocol": PROTOCOL, "version": __version__,
                 "nonce": nonce.hex()},
            )  # fmt: skip
            request = json.loads(await reader.readline())
            admitted = await self._admit(request, nonce)
            if isinstance(admitted, str):
                _say(f"declined {_shown(request)}: {admitted}")
                await _send(writer, {"fallback": admitted})
                return
            await _send(writer, {"started": True})
            task = asyncio.create_task(self._run(admitted, request["terminal"]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            # Shielded: a visit half done is finished, whatever becomes of this connection.
            stdout, stderr, code = await asyncio.shield(task)
            _say(f"ran {_shown(request)}: exit {code}")
            await _send(writer, {"stdout": stdout, "stderr": stderr, "code": code})
        except (ConnectionError, ValueError, KeyError, TypeError):
            pass  # the client went away or spoke nonsense; a visit it began still finishes
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _admit(self, request: Mapping[str, Any], nonce: bytes) -> argparse.Namespace | str:
        """The command's arguments, or why this agent does not run it."""
        argv = request["argv"]
        if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
            return "not a command line"
        if request["environment"] != environment_digests(os.environ, nonce):
            return "its BLELOCK_* or path variables differ from the agent's"
        parsing = io.StringIO()
        try:
            with contextlib.redirect_stdout(parsing), contextlib.redirect_stderr(parsing):
                args = (await self._parser()).parse_args(argv)
        except SystemExit:
            return "its command line is refused (the client says why)"
        if args.command not in FORWARDED_COMMANDS:
            return f"the agent does not run {args.command}"
        return await asyncio.to_thread(self._same_settings, args, str(request["cwd"]))

    def _same_settings(self, args: argparse.Namespace, cwd: str) -> argparse.Namespace | str:
        """``args`` when they load the agent's settings, seen from ``cwd``; else why not. (In a
        thread: it reads the config file.)"""
        if cwd != os.getcwd() and self._paths_relative:
            return "the agent's settings hold relative paths and the client is elsewhere"
        for name in ("config", "data_dir"):
            if getattr(args, name, None):
                setattr(args, name, os.path.join(cwd, getattr(args, name)))
        try:
            settings = settings_from(args)
        except Exception:
            return "its settings do not load (the client says why)"
        if settings != self.settings:
            return "its settings are not the agent's (restart the agent after changing them)"
        return args

    async def _run(self, args: argparse.Namespace, terminal: Mapping[str, Any]) -> Output:
        """What :func:`blelock.cli.main` would print and return for this command."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._radio_slot is not None:
                    operation = open_command.ALIASES.get(args.command) or args.op or "open"
                    await stack.enter_async_context(self._radio_slot(_lock_key(args), operation))
                result = await open_command.visit(
                    args, self.settings, store=self._store, clients=self._clients
                )
        except Exception as exc:
            failure = exc
            return _rendered(terminal, lambda: _report(failure, args))

        def show() -> int:
            try:
                open_command.show(args, result)
            except Exception as exc:
                return _report(exc, args)
            return 0

        return _rendered(terminal, show)


def _lock_key(args: argparse.Namespace) -> str:
    """The lock's id as the kiosk's gates know it (its vendor's form), when the id or
    ``--vendor`` says; else as given (the visit itself then says what is wrong with it)."""
    try:
        if args.vendor is not None:
            return vendors.plugin(args.vendor).parse_lock_id(args.lock)
        ids = {canonical for _, canonical in jobs.candidates(args.lock)}
    except BlelockError:
        return str(args.lock)
    return ids.pop() if len(ids) == 1 else str(args.lock)


def _say(line: str) -> None:
    """One line a command on the agent's stderr (the journal, under systemd)."""
    print(f"blelock agent: {line}", file=sys.stderr, flush=True)


def _shown(request: Mapping[str, Any]) -> str:
    argv = request.get("argv")
    return " ".join(str(arg) for arg in argv) if isinstance(argv, list) else "?"


def _report(exc: Exception, args: argparse.Namespace) -> int:
    return report_failure(exc, as_json=args.json, debug=args.debug)


class _ClientStream(io.StringIO):
    """Captured output that is a terminal when the client's is (rich asks)."""

    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self._terminal = terminal

    def isatty(self) -> bool:
        return self._terminal


def _rendered(terminal: Mapping[str, Any], render: Callable[[], int]) -> Output:
    """``render``'s output as the client's terminal would show it. Rendering never awaits, so
    no other command's output or environment interleaves with it."""
    out = _ClientStream(bool(terminal.get("stdout")))
    err = _ClientStream(bool(terminal.get("stderr")))
    with (
        _client_variables(terminal),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = render()
    return out.getvalue(), err.getvalue(), code


@contextlib.contextmanager
def _client_variables(terminal: Mapping[str, Any]) -> Iterator[None]:
    """The client's terminal variables (colours, width) in place of the agent's, meanwhile."""
    given = {str(k): str(v) for k, v in dict(terminal.get("variables", {})).items()}
    size = terminal.get("size")
    if isinstance(size, list) and len(size) == 2:
        given.setdefault("COLUMNS", str(size[0]))
        given.setdefault("LINES", str(size[1]))
    with variables_set({name: given.get(name) for name in TERMINAL_VARIABLES}):
        yield


def _has_relative_path(value: object) -> bool:
    if isinstance(value, Path):
        return not value.is_absolute()
    if isinstance(value, dict):
        return any(_has_relative_path(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_relative_path(item) for item in value)
    return False


async def _send(writer: asyncio.StreamWriter, message: Mapping[str, Any]) -> None:
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()
