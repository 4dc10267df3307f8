"""Fault switches for one simulated peripheral's radio link.

The radio reads these on every connection attempt and every write, so a test may flip them at
any time. ``refuse_connections`` and ``drop_link_times`` are budgets: the radio spends them as
the faults fire (like ``MechanicalFaults.jam_unlock``), so "refuse the next 2" means exactly the
next two attempts, counted from when it was set. ``-1`` never runs out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["LinkFaults", "parse_fault"]

FOREVER = -1


@dataclass
class LinkFaults:
    drop_link_after_writes: int | None = None
    """On an affected connection the link drops once this many writes were delivered, before
    the next write is delivered (that write is lost)."""
    drop_link_times: int = 1
    """How many connections the drop fault hits (spent when a link drops); after that links
    hold. -1: every connection."""
    refuse_connections: int = 0
    """Refuse the next N connection attempts (spent per refusal). -1: all."""
    slow_factor: float = 1.0
    """Multiplies every latency of this peripheral."""
    out_of_range: bool = False
    """Not advertising; a connection attempt fails "not found"."""

    links_dropped: int = 0
    """Counter: links this fault dropped so far."""
    connections_refused: int = 0
    """Counter: connection attempts this fault refused so far."""

    def spend_refusal(self) -> bool:
        """Whether to refuse this connection attempt (spending one refusal if so)."""
        if self.refuse_connections == 0:
            return False
        if self.refuse_connections > 0:
            self.refuse_connections -= 1
        self.connections_refused += 1
        return True

    def spend_drop(self, writes_delivered: int) -> bool:
        """Whether the link drops instead of delivering the next write (spending one drop)."""
        limit = self.drop_link_after_writes
        if limit is None or self.drop_link_times == 0 or writes_delivered < limit:
            return False
        if self.drop_link_times > 0:
            self.drop_link_times -= 1
        self.links_dropped += 1
        return True


def parse_fault(spec: str, base: LinkFaults | None = None) -> LinkFaults:
    """``LinkFaults`` from a CLI spec such as ``"drop-after=2,drop-times=1"``, ``"refuse=3"``,
    ``"slow=4"`` or ``"out-of-range"``, on top of ``base`` (which is left untouched)."""
    faults = dataclasses.replace(base) if base is not None else LinkFaults()
    parts = [part.strip() for part in spec.split(",")]
    if not any(parts):
        raise ValueError(f"fault {spec!r}: empty; expected e.g. drop-after=2 or out-of-range")
    for part in parts:
        name, has_value, value = part.partition("=")
        if name == "out-of-range" and not has_value:
            faults.out_of_range = True
        elif name == "drop-after":
            faults.drop_link_after_writes = _count(spec, part, value, allow_forever=False)
        elif name == "drop-times":
            faults.drop_link_times = _count(spec, part, value, allow_forever=True)
        elif name == "refuse":
            faults.refuse_connections = _count(spec, part, value, allow_forever=True)
        elif name == "slow":
            faults.slow_factor = _factor(spec, part, value)
        else:
            raise ValueError(
                f"fault {spec!r}: unknown part {part!r}; expected drop-after=K, drop-times=K, "
                "refuse=K, slow=FACTOR or out-of-range"
            )
    return faults


def _count(spec: str, part: str, value: str, *, allow_forever: bool) -> int:
    try:
        count = int(value)
    except ValueError:
        count = -2
    if count >= 0 or (allow_forever and count == FOREVER):
        return count
    wanted = "a whole number ≥ 0" + (" or -1 (always)" if allow_forever else "")
    raise ValueError(f"fault {spec!r}: in {part!r}, {value!r} is not {wanted}")


def _factor(spec: str, part: str, value: str) -> float:
    try:
        factor = float(value)
    except ValueError:
        factor = 0.0
    if factor > 0 and factor != float("inf"):
        return factor
    raise ValueError(f"fault {spec!r}: in {part!r}, {value!r} is not a positive number")
