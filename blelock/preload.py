"""Importing what a cold command needs later while it waits on the radio or a cloud.

A cold command imports its whole path one module after another, and the radio's waits (the
connection, each answer) and a cloud's round trips leave the interpreter idle meanwhile. What
is sure to come later (the CLI's table, a visit's link library after the sync before it) can
be imported in a thread during those waits. The thread competes for the interpreter (it hands
it over every few milliseconds), so this is for idle time, not for work running alongside.

Where the event loop then needs such a module, it awaits :func:`imported` rather than importing
it: an import statement reached while another thread is importing the module waits on the
module's lock with the loop stalled (as importing it in the loop would, reading its files).

Only for a cold command, and only for what it will use anyway: a resident process (the kiosk,
the agent) has imported it all once already, and there a preload would race the in-loop
imports of other jobs; a preload that may be wasted is CPU a busy kiosk does not have.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from collections.abc import Sequence

__all__ = ["import_available", "imported", "in_background", "is_ready"]


def is_ready(module: str) -> bool:
    """Whether ``module`` is imported and done initialising (in ``sys.modules`` while still
    being imported, by any thread, is not ready: it is the flag the import system itself
    consults to decide whether to wait on the module's lock)."""
    found = sys.modules.get(module)
    spec = getattr(found, "__spec__", None)
    return found is not None and not getattr(spec, "_initializing", False)


def in_background(modules: Sequence[str]) -> threading.Thread | None:
    """Import those of ``modules`` not imported yet, in order, in a daemon thread (returned,
    None when there was nothing to do or no thread could start); one that fails is passed
    over, left to the command's own import of it to raise."""
    missing = [name for name in modules if name not in sys.modules]
    if not missing:
        return None
    thread = threading.Thread(
        target=import_available, args=(missing,), name="blelock-preload", daemon=True
    )
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: the command imports them itself, later
        return None
    return thread


async def imported(module: str) -> None:
    """Return once ``module`` is imported, the event loop free meanwhile: at once when it is
    ready, else imported in a worker thread (which waits for an import of it underway)."""
    if not is_ready(module):
        await asyncio.to_thread(importlib.import_module, module)


def import_available(modules: Sequence[str]) -> None:
    """Import ``modules`` in order, passing over one that fails: what is imported only to
    save time later must not fail what imports it (a module that is gone fails, and says why,
    where it is used)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            continue
