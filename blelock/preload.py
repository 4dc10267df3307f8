"""Importing what a command needs later while it waits on the radio.

A cold command imports its whole path one module after another, and the radio's waits (the
connection, each answer) leave the interpreter idle meanwhile. What is sure to come after the
visit (the CLI's table, say) can be imported in a thread during those waits: the thread holds
the interpreter only while the event loop has nothing to do, and the command's own import of
it later finds it done (or waits for it to finish: Python's import lock is per module).

Only for what the command will use anyway: a preload that may be wasted is CPU a busy kiosk
does not have, and the unlock path's imports stay what the operation uses.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Sequence

__all__ = ["in_background"]


def in_background(modules: Sequence[str]) -> threading.Thread | None:
    """Import those of ``modules`` not imported yet, in order, in a daemon thread (returned,
    None when all were); one that fails is passed over, left to the command's own import of
    it to raise."""
    missing = [name for name in modules if name not in sys.modules]
    if not missing:
        return None
    thread = threading.Thread(
        target=_import_each, args=(missing,), name="blelock-preload", daemon=True
    )
    thread.start()
    return thread


def _import_each(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the command imports it again where it needs it, and says why there
            continue
