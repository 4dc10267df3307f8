"""``blelock-sim`` as a child process, for harnesses written in Python (tests, benchmarks)."""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["simulator_process"]


@contextlib.contextmanager
def simulator_process(
    *args: str, start_timeout: float = 60, stop_timeout: float = 20
) -> Iterator[dict[str, Any]]:
    """Run ``blelock-sim --json --until-stdin-closes ARGS``; yield what it announced
    (``{"env": settings for blelock, "locks": [...]}``), and its ``pid``. Closing its stdin
    stops it."""
    child = subprocess.Popen(
        [sys.executable, "-m", "simulators", "--json", "--until-stdin-closes", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        ready, _, _ = select.select([child.stdout], [], [], start_timeout)
        if not ready:
            raise TimeoutError(f"blelock-sim announced nothing within {start_timeout:g} s")
        announced: dict[str, Any] = json.loads(child.stdout.readline())
        yield announced | {"pid": child.pid}
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
