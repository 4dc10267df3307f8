"""A private D-Bus daemon (Debian's ``dbus`` package) for the emulated ``org.bluez``.

Never the machine's system bus: a fresh ``dbus-daemon`` listening on a socket of its own in the
temporary directory, gone when the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator

__all__ = ["INSTALL_HINT", "BusUnavailable", "dbus_daemon", "private_bus"]

INSTALL_HINT = "install Debian's dbus package (sudo apt-get install -y dbus)"
_TMP = tempfile.gettempdir()  # resolved once, at import, not inside an event loop


class BusUnavailable(RuntimeError):
    """No dbus-daemon on this machine, or it would not start."""


def dbus_daemon() -> str | None:
    """The dbus-daemon executable, or None."""
    return shutil.which("dbus-daemon")


@contextlib.asynccontextmanager
async def private_bus() -> AsyncIterator[str]:
    """Start a private bus for the block; yields its address (``unix:path=…``)."""
    executable = dbus_daemon()
    if executable is None:
        raise BusUnavailable(f"dbus-daemon is not installed: {INSTALL_HINT}")
    process = await asyncio.create_subprocess_exec(
        executable,
        "--session",  # session policy: the user who started it may own any name
        "--nofork",
        "--nopidfile",
        "--nosyslog",
        f"--address=unix:dir={_TMP}",
        "--print-address=1",
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,  # its fd-limit warning when not root, nothing else
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        # The daemon prints its address once it listens: that line is the readiness signal.
        line = await asyncio.wait_for(process.stdout.readline(), timeout=10)
        address = line.decode().strip()
        if not address:
            raise BusUnavailable(f"dbus-daemon exited ({await process.wait()}) before listening")
        yield address.split(",guid=")[0]
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
