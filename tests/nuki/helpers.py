"""Run a client exchange against a simulated Nuki lock directly (no radio): the protocol and
the lock's rules, quickly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from blelock.protocol.exchange import Exchange
from blelock.vendors.nuki import protocol as nuki
from simulators.nuki_lock import SimNukiLock

BERLIN_WINTER = dt.datetime(2026, 3, 27, 10, 0, tzinfo=dt.UTC)


class Clock:
    """The world's clock, set by the test."""

    def __init__(self, now: dt.datetime = BERLIN_WINTER) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def converse(lock: SimNukiLock, exchange: Exchange[object]) -> list[object]:
    events: list[object] = []
    while (action := exchange.next_action()) is not None:
        if action.characteristic is None:
            raise AssertionError("the exchange waits for an answer the lock never sent")
        for _, note in lock.on_write(action.characteristic, action.data):
            events += exchange.receive(note)
    return events


def pair(lock: SimNukiLock, *, name: str = "tech", pin: int | None = None) -> nuki.Credentials:
    lock.on_connect()
    exchange = nuki.PairingExchange(
        lock.pairing_char,
        nuki.generate_keypair(),
        app_id=0x1234,
        name=name,
        ultra=lock.ultra,
        security_pin=pin,
        chunk=20,
    )
    converse(lock, exchange)
    lock.on_disconnect()
    assert exchange.refused is None, exchange.refused
    assert exchange.result is not None
    return exchange.result.credentials


def command(
    lock: SimNukiLock, credentials: nuki.Credentials, requests: Sequence[nuki.Request]
) -> tuple[list[nuki.Message], nuki.Refused | None]:
    lock.on_connect()
    exchange = nuki.CommandExchange(nuki.USDIO_CHAR, credentials, requests, chunk=20)
    events = converse(lock, exchange)
    lock.on_disconnect()
    answers = [e.message for e in events if isinstance(e, nuki.Answer)]
    return answers, exchange.refused
