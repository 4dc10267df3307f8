"""What every benchmark prints about the machine it ran on, so that figures from different
hosts (and from one host on different days) can be told apart from changes in the code.

One figure cannot say how fast a host is for this product. Stop 33's host ran a pure-Python
loop twice as fast as stop 32's, yet started processes, made system calls and served kiosk
visits more slowly. So the reference is a composite, each part the cost of something the
product's figures are made of:

* ``loop``: 1M iterations of a pure-Python loop (the interpreter's own speed);
* ``start``: a bare ``python -c pass`` (process start-up, page faults, reading the disk);
* ``fsync``: one 4 KiB write made durable (each store commit pays it);
* ``syscall``: ``asyncio.get_running_loop()`` (CPython 3.11 makes a ``getpid`` system call
  in it; asyncio, anyio and httpx call it dozens of times per request);
* ``http``: the client's CPU for one small POST through httpx on loopback, against a server
  in another process that answers from a constant (what each cloud call costs the client).

Each as min / median / max of a few runs; the whole line takes under two seconds.

``load()`` is the machine's load averages, printed before and after a bench's runs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

__all__ = ["cpu_of_process", "load", "reference"]

_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def reference() -> str:
    """The composite host line (see the module docstring)."""
    parts = [
        ("loop", _runs(_loop, 5), "ms"),
        ("start", _runs(_bare_start, 5), "ms"),
        ("fsync", _runs(_fsync, 20), "ms"),
        ("syscall", _running_loop_ns(), "ns"),
        ("http", _http_client_cpu_us(), "us"),
    ]
    return "host: " + "; ".join(f"{name} {_three(values)} {unit}" for name, values, unit in parts)


def cpu_of_process(pid: int) -> float:
    """CPU seconds (user + system, all threads) another process has spent so far (Linux:
    /proc; this process's own is ``time.process_time()``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _three(values: Sequence[float]) -> str:
    return "/".join(_figure(v) for v in (min(values), statistics.median(values), max(values)))


def _figure(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _runs(measure: Callable[[], float], count: int) -> list[float]:
    return [measure() for _ in range(count)]


def _loop() -> float:
    started = time.perf_counter()
    total = 0
    for number in range(1_000_000):
        total += number
    return (time.perf_counter() - started) * 1e3


def _bare_start() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return (time.perf_counter() - started) * 1e3


def _fsync() -> float:
    with tempfile.NamedTemporaryFile() as scratch:
        scratch.write(os.urandom(4096))
        scratch.flush()
        started = time.perf_counter()
        os.fsync(scratch.fileno())
        return (time.perf_counter() - started) * 1e3


def _running_loop_ns() -> list[float]:
    async def measure() -> list[float]:
        figures = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(20_000):
                asyncio.get_running_loop()
            figures.append((time.perf_counter() - started) / 20_000 * 1e9)
        return figures

    return asyncio.run(measure())


def _http_client_cpu_us(requests: int = 200, rounds: int = 3) -> list[float]:
    import httpx

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(listener.fileno())], pass_fds=[listener.fileno()]
    )
    listener.close()  # the server holds it; connections wait in its backlog until it accepts

    async def measure() -> list[float]:
        figures = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/") as client:
            for _ in range(20):  # the connection, and httpx's lazy imports, before timing
                await client.post("upload/", content=b"{}")
            for _ in range(rounds):
                started = time.thread_time()
                for _ in range(requests):
                    answer = await client.post("upload/", content=b"{}")
                    assert answer.status_code == 200
                figures.append((time.thread_time() - started) / requests * 1e6)
        return figures

    try:
        return asyncio.run(measure())
    finally:
        server.kill()
        server.wait()


# A constant-answer HTTP/1.1 server on an inherited listening socket: the least a server can
# cost, so that the ``http`` figure is the client's.
_SERVER = f"""
import socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
answer = {_ANSWER!r}
while True:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = b""
    while data := conn.recv(65536):
        pending += data
        while (end := pending.find(b"\\r\\n\\r\\n")) >= 0:
            head = pending[:end].lower()
            length = 0
            if b"content-length:" in head:
                length = int(head.split(b"content-length:")[1].split(b"\\r\\n")[0])
            if len(pending) < end + 4 + length:
                break
            pending = pending[end + 4 + length :]
            conn.sendall(answer)
"""
