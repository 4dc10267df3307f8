"""``blelock serve``: the kiosk service (live view, local HTTP API, background upkeep).

Runs until SIGTERM or SIGINT, then finishes in-flight operations and exits 0. Settings come
from the config file and ``BLELOCK_*`` like every command (``serve_host``, ``serve_port``,
``serve_token``, ...). With ``BLELOCK_AGENT_SOCKET`` set, it also serves ``blelock open`` /
``unlock`` of the same user and settings there, as ``blelock agent`` does, each visit in turn
with the kiosk's jobs for the same lock and within its connection slots.
"""

from __future__ import annotations

import argparse
import asyncio

from blelock.cli.context import settings_from


def run(args: argparse.Namespace) -> int:

    from blelock.cli.agent import kiosk_agent
    from blelock.service.server import serve

    asyncio.run(serve(settings_from(args), also=kiosk_agent))
    return 0
