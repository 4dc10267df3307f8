"""Put on a measured command's PYTHONPATH by ``cli_unlock.py --timeline``: writes, to the file
``BENCH_TIMELINE_FILE`` names, one JSON line per socket the process connects and one at its
exit, each with the wall clock (``time.time()``, the bench's clock too) and how many modules
were loaded by then. The bench reads the scan's first socket and the link's from them: what
the process did before the radio was first asked is what no radio wait can hide.

Not part of blelock: nothing here is imported unless a bench puts this directory on the path.
"""

import atexit
import json
import os
import sys
import time

_PATH = os.environ.get("BENCH_TIMELINE_FILE")
_EVENTS: list[dict[str, object]] = []


def _connect(event: str, args: tuple[object, ...]) -> None:
    if event == "socket.connect":
        _EVENTS.append({"at": time.time(), "to": repr(args[1]), "modules": len(sys.modules)})


def _write() -> None:
    _EVENTS.append({"at": time.time(), "to": "exit", "modules": len(sys.modules)})
    assert _PATH is not None
    with open(_PATH, "a", encoding="utf-8") as out:
        out.write(json.dumps(_EVENTS) + "\n")


if _PATH:
    sys.addaudithook(_connect)
    atexit.register(_write)
