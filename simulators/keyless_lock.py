"""A simulated Keyless lock: the lock side of the stand-in
:mod:`blelock.vendors.keyless.protocol` on the simulated radio (NOT the vendor's protocol; see
``docs/keyless-ble-standin.md``).

Honest in the ways a real lock is: a fresh nonce per HELLO and per answer, one use each; grants
are judged against the platform CA key, the lock's own key generation, its own (drifting) clock
and its merged revocation list (``keyless.REFUSAL_RULES``); every authenticated request but a
successful log read leaves a signed audit entry with the next sequence number, while refusals
before any proof held are only counted (one UNAUTHENTICATED entry sums them up); an entry not yet
collected is never evicted (summaries go first, for a signed DROPPED entry; past that the lock
refuses to act, AUDIT_FULL); re-keying keeps the new key pending until a certificate for
exactly that key, issued by the CA, comes back, and its CSR is endorsed by the current key.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from blelock.errors import ProtocolError, RemoteProtocolError
from blelock.vendors.keyless import protocol as keyless
from simulators.radio import (
    ATT_READ_NOT_PERMITTED,
    ATT_REQUEST_NOT_SUPPORTED,
    ATT_WRITE_NOT_PERMITTED,
    Advertisement,
    CharacteristicSpec,
    GattRefused,
    ServiceSpec,
)

__all__ = ["SimKeylessLock", "ca_signer"]

_Notes = list[tuple[str, bytes]]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _system_clock() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def ca_signer(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    clock: Callable[[], datetime] = _system_clock,
    validity: timedelta = timedelta(days=3650),
) -> Callable[[bytes], bytes]:
    """A CSR-signing callback standing in for the platform (tests without a simulated cloud)."""
    serials = iter(range(1000, 1 << 30))

    def sign(csr_der: bytes) -> bytes:
        now = clock()
        return keyless.issue_certificate(
            csr_der,
            ca_key,
            ca_cert,
            serial=next(serials),
            not_before=now - timedelta(days=1),
            not_after=now + validity,
        )

    return sign


@dataclass
class SimKeylessLock:
    mac: str
    locking_device_id: str
    ca_cert: x509.Certificate
    """The platform CA the lock was provisioned with: grants and lists must be signed by it."""
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: bytes
    """DER of the operational certificate for :attr:`key`."""
    clock: Callable[[], datetime] = field(default=_system_clock)
    clock_drift_s: int = 0
    """How far the lock's clock is off (a fault switch; UPDATE_TIME rewrites it)."""
    rssi: int = -60
    low_battery: bool = False

    connections: int = 0
    opens: int = 0
    firmware_updates: int = 0
    time_updates: int = 0
    rekeys_started: int = 0
    certificates_installed: int = 0
    malformed: int = 0
    refusals: collections.Counter[keyless.ResultCode] = field(default_factory=collections.Counter)
    audit_log: list[keyless.AuditEntry] = field(default_factory=list)
    """Signed entries in sequence order (``blob`` holds the signed bytes)."""
    revocations: keyless.RevocationList = field(
        default_factory=lambda: keyless.RevocationList(0, frozenset())
    )
    pending_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    time_floor: datetime = _EPOCH
    state: str = "locked"
    limits: keyless.KeylessLimits = keyless.LIMITS
    """The stand-in's numbers (a test may shrink ``audit_capacity``)."""
    unlogged_refusals: int = 0
    """Unauthenticated refusals not yet summed up in a signed UNAUTHENTICATED entry."""
    collected_through: int = 0
    """Entries up to this sequence reached an authenticated collector (it asked past them, or
    got the last page): only these may be evicted."""

    _nonce: bytes | None = None
    _reassembler: keyless.Reassembler = field(default_factory=keyless.Reassembler)
    _last_sequence: int = 0

    @classmethod
    def provision(
        cls,
        *,
        mac: str,
        locking_device_id: str,
        ca_cert: x509.Certificate,
        sign_csr: Callable[[bytes], bytes],
        clock: Callable[[], datetime] = _system_clock,
        clock_drift_s: int = 0,
        limits: keyless.KeylessLimits = keyless.LIMITS,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> SimKeylessLock:
        """The lock makes its first key (``key``: a given one, for a seeded world) and CSR; the
        platform (``sign_csr``) certifies it."""
        key = key if key is not None else keyless.generate_key()
        certificate = sign_csr(keyless.make_csr(key, locking_device_id))
        return cls(
            mac=mac,
            locking_device_id=locking_device_id,
            ca_cert=ca_cert,
            key=key,
            certificate=certificate,
            clock=clock,
            clock_drift_s=clock_drift_s,
            limits=limits,
        )

    # --- what tests and the world look at -------------------------------------------------------

    @property
    def address(self) -> str:
        return self.mac

    @property
    def lock_key_id(self) -> bytes:
        return keyless.key_id_of(self.key.public_key())

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.certificate)

    def now(self) -> datetime:
        return self.clock() + timedelta(seconds=self.clock_drift_s)

    # --- Peripheral -----------------------------------------------------------------------------

    def advertisement(self) -> Advertisement | None:
        return Advertisement(
            local_name=keyless.local_name_for(self.locking_device_id),
            manufacturer_data={
                keyless.COMPANY_ID: keyless.encode_advert(
                    self.locking_device_id,
                    rekey_pending=self.pending_key is not None,
                    low_battery=self.low_battery,
                )
            },
            service_uuids=(keyless.SERVICE_UUID,),
            service_data={},
            rssi=self.rssi,
        )

    def services(self) -> tuple[ServiceSpec, ...]:
        return (
            ServiceSpec(
                uuid=keyless.SERVICE_UUID,
                characteristics=(
                    CharacteristicSpec(keyless.WRITE_UUID, ("write", "write-without-response")),
                    CharacteristicSpec(keyless.NOTIFY_UUID, ("notify",)),
                ),
            ),
        )

    def on_connect(self) -> None:
        self.connections += 1
        self._nonce = None
        self._reassembler = keyless.Reassembler()

    def on_disconnect(self) -> None:
        self._nonce = None
        self.state = "locked"  # the lock re-engages when the visit ends

    def on_subscribe(self, char_uuid: str, enabled: bool) -> None:
        if char_uuid != keyless.NOTIFY_UUID:
            raise GattRefused(ATT_REQUEST_NOT_SUPPORTED, f"{char_uuid} does not notify")

    def on_read(self, char_uuid: str) -> bytes:
        raise GattRefused(ATT_READ_NOT_PERMITTED, f"{char_uuid} is not readable")

    def on_write(self, char_uuid: str, data: bytes) -> _Notes:
        if char_uuid != keyless.WRITE_UUID:
            raise GattRefused(ATT_WRITE_NOT_PERMITTED, f"{char_uuid} is not writable")
        try:
            message = self._reassembler.feed(bytes(data))
            if message is None:
                return []
            decoded = keyless.decode_request(message)
        except RemoteProtocolError:
            self.malformed += 1
            return self._notes(keyless.encode_malformed())
        if isinstance(decoded, keyless.Hello):
            self._nonce = os.urandom(keyless.LIMITS.nonce_size)
            return self._notes(
                keyless.encode_challenge(
                    self._nonce,
                    lock_time=self.now(),
                    audit_last_sequence=self._last_sequence,
                    revocation_version=self.revocations.version,
                    certificate=self.certificate,
                )
            )
        return self._notes(self._answer(decoded))

    # --- the lock's logic -----------------------------------------------------------------------

    def _notes(self, message: bytes) -> _Notes:
        return [(keyless.NOTIFY_UUID, part) for part in keyless.fragment(message)]

    def _answer(self, request: keyless.Request) -> bytes:
        signer = self.key
        grant: keyless.Grant | None = None
        payload = b""
        code = self._take_revocations(request.revocations)
        if code is keyless.ResultCode.OK:
            code, grant = keyless.check_request(request, self._view())
        authenticated = code not in keyless.UNAUTHENTICATED_REFUSALS
        reading = request.command is keyless.Command.READ_AUDIT
        if not authenticated:
            # Anyone with a radio can cause these: counted, never one signed entry each.
            self.unlogged_refusals += 1
        elif not reading and not self._make_room(1 + bool(self.unlogged_refusals)):
            code = keyless.ResultCode.AUDIT_FULL  # act only when the record can be kept
            self.unlogged_refusals += 1
            authenticated = False
        elif self._make_room(1):
            self._flush_unlogged()
        if code is keyless.ResultCode.OK and grant is not None:
            # The floor rises to the lock's own time on every accepted request.
            self.time_floor = max(self.time_floor, self.now())
            code, payload, signer = self._execute(request)
        if code is not keyless.ResultCode.OK:
            self.refusals[code] += 1
        if authenticated and not (code is keyless.ResultCode.OK and reading):
            self._append_audit(request.command, code, grant)
        request_nonce, self._nonce = request.nonce, os.urandom(keyless.LIMITS.nonce_size)
        return keyless.encode_result(
            signer,
            command=request.command,
            code=code,
            request_nonce=request_nonce,
            next_nonce=self._nonce,
            lock_time=self.now(),
            payload=payload,
        )

    def _view(self) -> keyless.LockView:
        return keyless.LockView(
            locking_device_id=self.locking_device_id,
            lock_key_id=self.lock_key_id,
            platform_public_key=_ec_key(self.ca_cert),
            now=self.now(),
            expected_nonce=self._nonce,
            revoked=self.revocations.key_ids,
            time_floor=self.time_floor,
        )

    def _take_revocations(self, blob: bytes) -> keyless.ResultCode:
        if not blob:
            return keyless.ResultCode.OK
        try:
            revocations = keyless.verify_revocation_list(blob, _ec_key(self.ca_cert))
        except ProtocolError:
            return keyless.ResultCode.BAD_REVOCATION_LIST
        if revocations.version > self.revocations.version:
            # Merged, never replaced: a key leaves only when this lock's own clock says no
            # grant of it could pass anyway.
            self.revocations = self.revocations.merged(revocations, now=self.now())
        return keyless.ResultCode.OK

    def _execute(
        self, request: keyless.Request
    ) -> tuple[keyless.ResultCode, bytes, ec.EllipticCurvePrivateKey]:
        ok = keyless.ResultCode.OK
        command = request.command
        if command is keyless.Command.OPEN:
            self.opens += 1
            self.state = "unlocked"
        elif command is keyless.Command.UPDATE_FIRMWARE:
            self.firmware_updates += 1
        elif command is keyless.Command.UPDATE_TIME:
            previous = self.now()
            new_time, _ = keyless.parse_time_update(request.argument)
            self.clock_drift_s = int((new_time - self.clock()).total_seconds())
            tolerance = timedelta(seconds=keyless.LIMITS.clock_tolerance_s)
            if new_time < self.time_floor - tolerance:  # only with the platform's statement
                self.time_floor = new_time
            self.time_updates += 1
            return ok, keyless.time_argument(previous), self.key
        elif command is keyless.Command.READ_AUDIT:
            if len(request.argument) != 4:
                return keyless.ResultCode.MALFORMED, b"", self.key
            after = int.from_bytes(request.argument, "big")
            self.collected_through = max(self.collected_through, min(after, self._last_sequence))
            newer = [entry.blob for entry in self.audit_log if entry.sequence > after]
            page = newer[: keyless.LIMITS.audit_page_size]
            more = len(newer) > len(page)
            if not more:
                # The authenticated collector now holds everything: it may make room later.
                self.collected_through = self._last_sequence
            return ok, keyless.encode_audit_page(page, more=more), self.key
        elif command is keyless.Command.START_REKEY:
            if self.pending_key is None:  # idempotent: a second visit one gets the same CSR
                self.pending_key = keyless.generate_key()
                self.rekeys_started += 1
            csr = keyless.make_csr(self.pending_key, self.locking_device_id)
            # The current key vouches for its successor: the platform certifies nothing else.
            endorsement = keyless.endorse_csr(self.key, self.locking_device_id, csr)
            return ok, keyless.encode_rekey_payload(csr, endorsement), self.key
        elif command is keyless.Command.INSTALL_CERTIFICATE:
            return self._install(request.argument)
        return ok, b"", self.key

    def _install(
        self, cert_der: bytes
    ) -> tuple[keyless.ResultCode, bytes, ec.EllipticCurvePrivateKey]:
        if self.pending_key is None:
            return keyless.ResultCode.NO_PENDING_KEY, b"", self.key
        try:
            cert = keyless.verify_lock_certificate(cert_der, self.ca_cert, at=self.now())
        except ProtocolError:
            return keyless.ResultCode.CERTIFICATE_MISMATCH, b"", self.key
        pending_id = keyless.key_id_of(self.pending_key.public_key())
        if keyless.key_id_of(_ec_key(cert)) != pending_id:
            return keyless.ResultCode.CERTIFICATE_MISMATCH, b"", self.key
        self.key, self.pending_key = self.pending_key, None
        self.certificate = cert.public_bytes(serialization.Encoding.DER)
        self.certificates_installed += 1
        return keyless.ResultCode.OK, pending_id, self.key

    def _append_audit(
        self,
        command: keyless.Command | None,
        code: keyless.ResultCode,
        grant: keyless.Grant | None,
        *,
        kind: keyless.AuditKind = keyless.AuditKind.REQUEST,
        count: int = 1,
    ) -> None:
        self._last_sequence += 1
        entry = keyless.AuditEntry(
            sequence=self._last_sequence,
            occurred_at=self.now(),
            operation=command,
            operating_device_id=grant.operating_device_id if grant else None,
            key_id=grant.key_id if grant else None,
            result=code,
            kind=kind,
            count=count,
        )
        blob = keyless.sign_audit_entry(entry, self.key)
        self.audit_log.append(dataclasses.replace(entry, blob=blob))

    def _flush_unlogged(self) -> None:
        """One signed entry counting the unauthenticated refusals since the last entry."""
        if self.unlogged_refusals:
            count, self.unlogged_refusals = self.unlogged_refusals, 0
            self._append_audit(
                None,
                keyless.ResultCode.STALE_NONCE,
                None,
                kind=keyless.AuditKind.UNAUTHENTICATED,
                count=count,
            )

    def _make_room(self, needed: int) -> bool:
        """Room for ``needed`` more entries: collected entries go first (oldest first); then
        uncollected summaries, two at a time, replaced by one signed DROPPED entry counting the
        sequence numbers gone. An uncollected REQUEST entry is never dropped: False then."""
        capacity = self.limits.audit_capacity
        while len(self.audit_log) + needed > capacity:
            collected = next(
                (i for i, e in enumerate(self.audit_log) if e.sequence <= self.collected_through),
                None,
            )
            if collected is not None:
                del self.audit_log[collected]
                continue
            summaries = [
                i for i, e in enumerate(self.audit_log) if e.kind is not keyless.AuditKind.REQUEST
            ][:2]
            if len(summaries) < 2:
                return False
            gone = [self.audit_log[i] for i in summaries]
            for index in reversed(summaries):
                del self.audit_log[index]
            dropped = sum(1 + (e.count if e.kind is keyless.AuditKind.DROPPED else 0) for e in gone)
            self._append_audit(
                None, keyless.ResultCode.OK, None, kind=keyless.AuditKind.DROPPED, count=dropped
            )
        return True


def _ec_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TypeError("the certificate does not carry an EC key")
    return key
