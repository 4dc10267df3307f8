"""Environment variables changed for a while and put back as they were: the agent renders in
its client's terminal variables, and the demo points itself at the simulator it started."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

__all__ = ["variables_set"]


@contextlib.contextmanager
def variables_set(changes: Mapping[str, str | None]) -> Iterator[None]:
    """Each variable of ``changes`` set (None: unset) meanwhile; afterwards each as it was."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        _assign(changes)
        yield
    finally:
        _assign(saved)


def _assign(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
