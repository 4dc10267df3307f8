"""What a vendor driver needs from a link to a lock, whatever carries it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

__all__ = ["LinkInfo", "LinkOpener", "LockLink"]


@dataclass(frozen=True, slots=True)
class LinkInfo:
    mtu: int
    rssi: int | None


class LockLink(Protocol):
    """One connection to one lock. Every call has a timeout; a dropped link raises LinkLost
    from whatever call is waiting, at once."""

    @property
    def info(self) -> LinkInfo: ...

    async def read(self, char_uuid: str, *, timeout: float) -> bytes: ...

    async def subscribe(self, char_uuid: str, *, timeout: float) -> None:
        """Start notifications; they queue until :meth:`notification` takes them."""

    async def write(
        self, char_uuid: str, data: bytes, *, timeout: float, response: bool = False
    ) -> None:
        """Write without response (what command characteristics take), or with (a DFU control
        point)."""

    async def notification(self, *, timeout: float) -> bytes:
        """The next notification, in arrival order."""


LinkOpener = Callable[[], AbstractAsyncContextManager[LockLink]]
"""Opens a fresh connection each time it is called (a retry needs a fresh session)."""
