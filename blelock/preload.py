"""Importing what a command needs later while it waits on the radio or a cloud.

A cold command imports its whole path one module after another, and the radio's waits (the
connection, each answer) and a cloud's round trips leave the interpreter idle meanwhile. What
is sure to come later (the CLI's table, a visit's link library after the sync before it) can
be imported in a thread during those waits: the thread holds the interpreter only while the
event loop has nothing to do.

Where the event loop then needs such a module, it awaits :func:`imported` rather than importing
it: a preload still underway would make an import statement wait on the module's lock with the
loop stalled (as importing it in the loop would, reading its files).

Only for what the command will use anyway: a preload that may be wasted is CPU a busy kiosk
does not have, and the unlock path's imports stay what the operation uses.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from collections.abc import Sequence

__all__ = ["imported", "in_background"]

_underway: dict[str, int] = {}
"""Modules being imported in a thread (a preload's or :func:`imported`'s), with how many are at
it: in ``sys.modules`` already, but not ready."""
_counting = threading.Lock()


def _begin(name: str) -> None:
    with _counting:
        _underway[name] = _underway.get(name, 0) + 1


def _end(name: str) -> None:
    with _counting:
        if (left := _underway[name] - 1) > 0:
            _underway[name] = left
        else:
            del _underway[name]


def _ready(name: str) -> bool:
    return name in sys.modules and name not in _underway


def in_background(modules: Sequence[str]) -> threading.Thread | None:
    """Import those of ``modules`` not imported yet, in order, in a daemon thread (returned,
    None when all were); one that fails is passed over, left to the command's own import of
    it to raise."""
    missing = [name for name in modules if name not in sys.modules and name not in _underway]
    if not missing:
        return None
    for name in missing:
        _begin(name)
    thread = threading.Thread(
        target=_import_each, args=(missing,), name="blelock-preload", daemon=True
    )
    thread.start()
    return thread


async def imported(module: str) -> None:
    """Return once ``module`` is imported, the event loop free meanwhile: at once when it is,
    else imported in a worker thread (which waits for an import of it underway)."""
    if _ready(module):
        return
    _begin(module)
    # Counted down by the thread, once done: a caller cancelled meanwhile leaves it underway.
    await asyncio.to_thread(_import_one, module)


def _import_one(name: str) -> None:
    try:
        importlib.import_module(name)
    finally:
        _end(name)


def _import_each(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the command imports it again where it needs it, and says why there
            continue
        finally:
            _end(name)
