"""Firmware over the air: a Secure DFU transfer driven over a LockLink, resumable.

The planning and every check live in :class:`blelock.protocol.dfu_transfer.DfuSession`; this
module only moves its bytes. The bootloader keeps the progress (executed objects survive a
dropped link), so a transfer interrupted by a lost link — or by a killed process, on the next
run — resumes from the last verified offset: each new connection starts a new session that
Selects the bootloader's state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from blelock.errors import LinkLost, LockRefused, lock_context
from blelock.model import MacAddress
from blelock.protocol.dfu import (
    CONTROL_POINT_UUID,
    RESPONSE_TIMEOUT_S,
    ButtonlessResult,
    bootloader_address_after,
    decode_buttonless_response,
    encode_enter_bootloader,
)
from blelock.protocol.dfu_package import DfuPackage
from blelock.protocol.dfu_transfer import (
    DfuSession,
    Event,
    Finished,
    Progress,
    Refused,
    packet_size_for_mtu,
)
from blelock.transport.base import LinkOpener
from blelock.transport.drive import drive

__all__ = ["DfuOutcome", "enter_bootloader", "update_firmware"]

CONNECTIONS = 4
"""A lost link is normal during a long transfer; each retry resumes, so a few are cheap."""
WRITE_TIMEOUT_S = 5.0
"""One ATT write: a few connection intervals; 5 s means the link is gone."""


@dataclass(frozen=True, slots=True)
class DfuOutcome:
    lock_id: MacAddress
    version: str
    size: int
    connections: int
    bytes_sent: int
    """Image bytes this run wrote: less than ``size`` when it resumed a transfer that an
    earlier connection or an earlier, killed run left half done."""


async def update_firmware(
    lock_id: MacAddress,
    open_link: LinkOpener,
    package: DfuPackage,
    *,
    prn: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
) -> DfuOutcome:
    """Send ``package`` to the bootloader ``open_link`` connects to; LockRefused if it refuses
    the package (it keeps its old firmware), LinkLost if the link keeps dropping."""
    sessions: list[DfuSession] = []
    for connection in range(1, CONNECTIONS + 1):
        try:
            with lock_context(lock_id, "firmware update"):
                finished = await _one_connection(open_link, package, prn, on_progress, sessions)
            sent = sum(session.image_bytes_sent for session in sessions)
            return DfuOutcome(lock_id, package.version, finished.size, connection, sent)
        except LinkLost:
            if connection == CONNECTIONS:
                raise
    raise AssertionError("unreachable: the last connection returns or raises")


async def enter_bootloader(lock_id: MacAddress, open_link: LinkOpener, characteristic: str) -> str:
    """Ask a Nordic application into its bootloader through its buttonless DFU characteristic
    (``BUTTONLESS_UNBONDED_UUID`` or ``BUTTONLESS_BONDED_UUID``), for devices no cloud command
    puts there. Returns the address the bootloader will advertise at; LockRefused if the
    application says no."""
    expected = bootloader_address_after(lock_id, characteristic)
    with lock_context(lock_id, "enter the bootloader"):
        async with open_link() as link:
            await link.subscribe(characteristic, timeout=WRITE_TIMEOUT_S)  # indications
            await link.write(
                characteristic, encode_enter_bootloader(), timeout=WRITE_TIMEOUT_S, response=True
            )
            result = decode_buttonless_response(await link.notification(timeout=RESPONSE_TIMEOUT_S))
            if result is not ButtonlessResult.SUCCESS:
                raise LockRefused(
                    f"the device would not enter its bootloader ({result.name})",
                    reason=result,
                    hint="a bonded device needs the bond; a busy one, another try",
                )
    return expected


async def _one_connection(
    open_link: LinkOpener,
    package: DfuPackage,
    prn: int,
    on_progress: Callable[[Progress], None] | None,
    sessions: list[DfuSession],
) -> Finished:
    async with open_link() as link:
        await link.subscribe(CONTROL_POINT_UUID, timeout=WRITE_TIMEOUT_S)
        session = DfuSession(package, packet_size=packet_size_for_mtu(link.info.mtu), prn=prn)
        sessions.append(session)  # its bytes count even if this link drops
        finished: list[Finished] = []

        def handle(event: Event) -> None:
            if isinstance(event, Refused):
                raise LockRefused(
                    f"the bootloader refused the package: {event.message}",
                    reason=event.result,
                    hint="the lock keeps its old firmware; check that the package is made "
                    "for this lock's hardware and signed for it",
                )
            if isinstance(event, Finished):
                finished.append(event)
            if on_progress is not None:
                on_progress(session.progress)

        await drive(
            link,
            session,
            write_timeout=WRITE_TIMEOUT_S,
            answer_timeout=RESPONSE_TIMEOUT_S,
            handle=handle,
        )
        if not finished:
            raise AssertionError("a DFU session ended without finishing or refusing")
        return finished[0]
