"""Every invented number of the Keyless stand-in, in this one place: :data:`LIMITS`, the GATT
UUIDs, the advertising company id and format version. Nothing else may hard-code them (see
``docs/keyless-ble-standin.md``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# === INVENTED NUMBERS: every one of them, in this one place =====================================


@dataclass(frozen=True, slots=True)
class KeylessLimits:
    att_payload: int = 20
    """Bytes per write / notification: the default ATT MTU (23) minus the ATT header."""
    max_message_size: int = 4096
    """Largest envelope (type + length + body) either side reassembles; a bigger one is refused."""
    nonce_size: int = 16
    clock_tolerance_s: int = 300
    """How far outside a grant's window the lock still accepts it (lock clocks drift)."""
    audit_page_size: int = 8
    """Entries per READ_AUDIT answer (8 signed entries fit well under max_message_size)."""
    audit_capacity: int = 4096
    """Entries a lock keeps; the oldest are dropped beyond that (the companion sees a gap)."""
    max_clock_drift_s: int = 86400
    """How far a lock's clock may have drifted from the platform's between visits: the platform
    keeps a revoked key on the list until its not_after + clock_tolerance_s + this."""
    time_grant_validity_s: int = 600
    """An UPDATE_TIME operating key is valid from its issue time for this long; the lock refuses
    an UPDATE_TIME grant whose window is longer."""
    max_revoked_keys: int = 128
    """Key ids in one revocation list (128 x 16 bytes keeps the request under max_message_size)."""
    answer_timeout_s: float = 10.0
    """How long the companion waits for the lock's answer to one message."""
    max_grant_size: int = 512
    max_signature_size: int = 72
    """A DER ECDSA P-256 signature is at most 72 bytes."""


LIMITS = KeylessLimits()

# === GATT and advertising (invented UUIDs; 0xFFFF is the SIG's company id for testing) ==========

SERVICE_UUID = "4b4c5300-0001-4000-8000-7374616e6469"
"""INVENTED ("KLS" ... "standi"): not the vendor's service."""
WRITE_UUID = "4b4c5300-0002-4000-8000-7374616e6469"
"""Companion → lock fragments, write without response."""
NOTIFY_UUID = "4b4c5300-0003-4000-8000-7374616e6469"
"""Lock → companion fragments, notify."""
COMPANY_ID = 0xFFFF
ADVERT_VERSION = 1
_LOCAL_NAME = re.compile(r"KLS-(?P<short>[0-9A-F]{8})")
