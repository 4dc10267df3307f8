"""The ``blelock`` entry point (``python -m blelock`` and the console script): a front that
imports only the standard library's small modules, so that an ``open`` / ``unlock`` /
``unshackle`` handed to a running ``blelock agent`` costs little more than the interpreter's
start. Any other command, or no agent answering, or one that is of another version or serves
other settings, and the command runs in this process as it always has (:func:`blelock.cli.main`).

The agent's socket: ``BLELOCK_AGENT_SOCKET`` (``off`` or empty: never use an agent), else
``$XDG_RUNTIME_DIR/blelock/agent.sock``, else ``$TMPDIR/blelock-UID/agent.sock`` (``/tmp`` when
``TMPDIR`` is unset). The client speaks only to a socket owned by this user in a directory no one
else may enter, and (on Linux) only to a peer running as this user.

One JSON object a line. The agent greets (``hello``: protocol, blelock's version, a nonce); the
client asks (its argv, working directory, its ``BLELOCK_*`` and path variables as HMACs under the
nonce, never their values, and what rich needs to know of its terminal); the agent answers
``fallback`` (the client runs the command itself: nothing was touched) or ``started``, and then,
once the visit is over, the exact stdout, stderr and exit code the command would have had here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import stat
import struct
import sys
from collections.abc import Mapping, Sequence

from blelock import __version__

# Not typing's: importing typing is the largest module this front would load (3-5 ms of its
# ~25), and its names are wanted in annotations only. Type checkers read this name as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "COMPARED_VARIABLES",
    "FORWARDED_COMMANDS",
    "PROTOCOL",
    "SOCKET_ENV",
    "TERMINAL_VARIABLES",
    "agent_socket_path",
    "environment_digests",
    "main",
    "peer_uid",
]

PROTOCOL = 1
SOCKET_ENV = "BLELOCK_AGENT_SOCKET"
FORWARDED_COMMANDS = frozenset({"open", "unlock", "unshackle"})
"""What the agent runs: the commands a technician waits on. Everything else (firmware updates
with their progress bars, sync, the office commands) runs in the client's own process."""
COMPARED_VARIABLES = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")
"""Besides ``BLELOCK_*``: where the default config file and store are (platformdirs)."""
TERMINAL_VARIABLES = (
    "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
    "COLUMNS", "LINES",
)  # fmt: skip
"""What rich reads to decide colours and width: the agent renders as this terminal would."""
_VALUE_OPTIONS = frozenset({"--config", "--data-dir"})
_FLAG_OPTIONS = frozenset({"--json", "--debug"})
GREETING_TIMEOUT_S = 2.0
AGENT_STOPPED = (
    "blelock: the agent stopped before answering; whatever the lock gave is kept in the store "
    "(`blelock logs` lists it): check the lock, then run the command again (with no agent "
    "running it runs here)"
)
CANCELLED = (
    "blelock: cancelled here; a visit the agent began goes on to its end and keeps its records "
    "(`blelock logs` lists them)"
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if _command(args) in FORWARDED_COMMANDS:
        path = agent_socket_path(os.environ)
        if path is not None:
            code = _through_agent(path, args)
            if code is not None:
                return code
    from blelock.cli import main as run_here

    return run_here(args)


def agent_socket_path(environ: Mapping[str, str]) -> str | None:
    given = environ.get(SOCKET_ENV)
    if given is not None:
        return None if given.strip() in ("", "off") else given
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "blelock", "agent.sock")
    temp = environ.get("TMPDIR") or "/tmp"
    return os.path.join(temp, f"blelock-{os.getuid()}", "agent.sock")


def environment_digests(environ: Mapping[str, str], nonce: bytes) -> dict[str, str]:
    """Each variable the settings depend on, as an HMAC of its value under the agent's nonce:
    equal digests say equal values without a value (a key, a token) crossing the socket."""
    names = [
        name for name in environ
        if (name.startswith("BLELOCK_") and name != SOCKET_ENV) or name in COMPARED_VARIABLES
    ]  # fmt: skip
    return {
        name: hmac.new(nonce, environ[name].encode(), hashlib.sha256).hexdigest()
        for name in sorted(names)
    }


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (SO_PEERCRED); None where the system has no
    such option (then the directory's mode 0700 is what keeps others out)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    credentials = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return int(uid)


def _command(args: Sequence[str]) -> str | None:
    """The command named, skipping the common options before it; None when anything else
    (help, version, an option this front does not know) comes first."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in _FLAG_OPTIONS:
            index += 1
        elif arg in _VALUE_OPTIONS:
            index += 2
        elif arg.split("=", 1)[0] in _VALUE_OPTIONS:
            index += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def _private(path: str) -> bool:
    """The socket is this user's, in a directory only this user may enter."""
    me = os.getuid()
    try:
        folder, node = os.stat(os.path.dirname(path) or "."), os.lstat(path)
    except OSError:
        return False
    return (
        folder.st_uid == me
        and not folder.st_mode & 0o077
        and node.st_uid == me
        and stat.S_ISSOCK(node.st_mode)
    )


def _through_agent(path: str, args: list[str]) -> int | None:
    """The exit code of the command run by the agent, having printed its output; None when
    the agent is absent or declines (nothing was done: the caller runs the command)."""
    if not _private(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    asked = False
    with sock:
        try:
            stream = _greeted(sock, path)
            if stream is None:
                return None
            asked = True  # from here on the agent may begin the visit
            _send(stream, _request(args, stream.nonce))
            started = _receive(stream.file)
            if started is None or not started.get("started"):
                return None  # declined (other settings, say) or gone before touching anything
            answer = _receive(stream.file)
        except KeyboardInterrupt:
            print(CANCELLED if asked else "blelock: cancelled", file=sys.stderr)
            return 130
        except (OSError, ValueError, KeyError):
            if not asked:
                return None
            answer = None
        if answer is None:
            print(AGENT_STOPPED, file=sys.stderr)
            return 1
        sys.stdout.write(str(answer.get("stdout", "")))
        sys.stdout.flush()
        sys.stderr.write(str(answer.get("stderr", "")))
        return int(answer.get("code", 1))


class _Greeted:
    def __init__(self, file: Any, nonce: bytes) -> None:
        self.file = file
        self.nonce = nonce


def _greeted(sock: socket.socket, path: str) -> _Greeted | None:
    """The connection to an agent of this version and this user, once it greeted; else None.
    An agent that does not greet at once (stopped, stuck) is passed over: the command runs
    here rather than hang; once greeted, a visit takes as long as its own budget says."""
    sock.settimeout(GREETING_TIMEOUT_S)
    sock.connect(path)
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        return None
    stream = sock.makefile("rwb")
    hello = _receive(stream)
    if (
        hello is None
        or hello.get("hello") != "blelock-agent"
        or hello.get("protocol") != PROTOCOL
        or hello.get("version") != __version__
    ):
        return None
    sock.settimeout(None)
    return _Greeted(stream, bytes.fromhex(str(hello["nonce"])))


def _request(args: list[str], nonce: bytes) -> dict[str, Any]:
    return {
        "argv": args,
        "cwd": os.getcwd(),
        "environment": environment_digests(os.environ, nonce),
        "terminal": {
            "stdout": _is_terminal(sys.stdout),
            "stderr": _is_terminal(sys.stderr),
            "variables": {
                name: os.environ[name] for name in TERMINAL_VARIABLES if name in os.environ
            },
            "size": _terminal_size(),
        },
    }


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _terminal_size() -> list[int] | None:
    """As rich finds it: the first of stdin, stdout, stderr that is a terminal."""
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        return [size.columns, size.lines]
    return None


def _send(stream: _Greeted, message: dict[str, Any]) -> None:
    stream.file.write(json.dumps(message).encode() + b"\n")
    stream.file.flush()


def _receive(stream: Any) -> dict[str, Any] | None:
    """The next message; None at end of stream or on what is not one."""
    line = stream.readline()
    if not line.endswith(b"\n"):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
