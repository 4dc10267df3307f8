"""The one shape of every sans-I/O exchange with a lock (a vendor's visit, a DFU transfer):
``next_action()`` says what to do on the link, ``receive(notification)`` takes what the lock
sent and returns what it meant. :func:`blelock.transport.drive.drive` is the only loop that
runs one over a real link.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = ["Action", "AwaitNotification", "Exchange", "Write"]

E_co = TypeVar("E_co", covariant=True)


class Action(Protocol):
    """One step on the link: write ``data`` to ``characteristic`` (None: write nothing), with
    or without response, then, if ``expects_notification``, wait for one notification."""

    @property
    def characteristic(self) -> str | None: ...
    @property
    def data(self) -> bytes: ...
    @property
    def response(self) -> bool: ...
    @property
    def expects_notification(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Write:
    characteristic: str
    data: bytes
    response: bool = False
    expects_notification: bool = False


@dataclass(frozen=True, slots=True)
class AwaitNotification:
    characteristic: None = None
    data: bytes = b""
    response: bool = False
    expects_notification: bool = True


class Exchange(Protocol[E_co]):
    def next_action(self) -> Action | None:
        """What to do next; None when the exchange is over (done, or stopped by a refusal) or
        paused for something only its caller can supply (the exchange says so in an event and
        a property; the caller supplies it and drives the same exchange again)."""

    def receive(self, notification: bytes) -> Sequence[E_co]:
        """What the notification meant; raises only blelock's ProtocolError."""
