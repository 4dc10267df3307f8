"""The companion's side of the Keyless stand-in, sans-I/O: the steps a visit asks for, the
actions to take over the link (:class:`Write`, :class:`AwaitNotification`), the events a
conversation produces, and :class:`KeylessConversation` itself (like ``DfuSession``; the lead's
async driver runs it over a link).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from cryptography import x509

from blelock.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from blelock.vendors.keyless.protocol._codes import Command, ResultCode
from blelock.vendors.keyless.protocol._credentials import (
    AuditEntry,
    Credential,
    Grant,
    _cert_key,
    _valid,
    certificate_lock_id,
    key_id_of,
    verify_audit_entry,
    verify_csr_endorsement,
    verify_grant,
    verify_lock_certificate,
)
from blelock.vendors.keyless.protocol._limits import WRITE_UUID
from blelock.vendors.keyless.protocol._wire import (
    _RESULT_DOMAIN,
    Challenge,
    Malformed,
    Reassembler,
    Result,
    decode_audit_page,
    decode_lock_message,
    decode_rekey_payload,
    encode_hello,
    encode_rekey_payload,
    encode_request,
    fragment,
    parse_time_argument,
    time_argument,
)

# === the companion's conversation ===============================================================


@dataclass(frozen=True, slots=True)
class Open:
    pass


@dataclass(frozen=True, slots=True)
class UpdateFirmware:
    pass


@dataclass(frozen=True, slots=True)
class SetTime:
    new_time: datetime
    statement: bytes = b""
    """A platform time statement for the nonce of this request (needed only to go back more
    than the tolerance; see ``sign_time_statement``)."""


@dataclass(frozen=True, slots=True)
class CollectAudit:
    after_sequence: int
    """Collect every entry with a greater sequence (the last one uploaded)."""


@dataclass(frozen=True, slots=True)
class StartRekey:
    pass


@dataclass(frozen=True, slots=True)
class InstallCertificate:
    certificate: bytes


Step = Open | UpdateFirmware | SetTime | CollectAudit | StartRekey | InstallCertificate


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``data`` (one fragment) to :data:`WRITE_UUID`, without response."""

    data: bytes
    characteristic: ClassVar[str] = WRITE_UUID
    response: ClassVar[bool] = False
    expects_notification: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class AwaitNotification:
    """Wait (at most ``LIMITS.answer_timeout_s``) for one :data:`NOTIFY_UUID` notification and
    hand it to :meth:`KeylessConversation.receive`."""

    characteristic: ClassVar[None] = None
    data: ClassVar[bytes] = b""
    response: ClassVar[bool] = False
    expects_notification: ClassVar[bool] = True


Action = Write | AwaitNotification


@dataclass(frozen=True, slots=True)
class Identified:
    """The lock proved nothing yet, but its certificate chains to the pinned CA."""

    certificate: x509.Certificate
    lock_key_id: bytes
    lock_time: datetime
    audit_last_sequence: int
    revocation_version: int


@dataclass(frozen=True, slots=True)
class Opened:
    key_id: str


@dataclass(frozen=True, slots=True)
class FirmwareUpdateAccepted:
    key_id: str


@dataclass(frozen=True, slots=True)
class TimeSet:
    previous: datetime
    now: datetime


@dataclass(frozen=True, slots=True)
class AuditGap:
    """Sequence numbers ``first``..``last`` the lock did not give: reported, never silent (a
    DROPPED entry of the lock explains a gap it made; anything else is for the platform to
    judge)."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class AuditEntries:
    entries: tuple[AuditEntry, ...]
    more: bool
    gaps: tuple[AuditGap, ...] = ()


@dataclass(frozen=True, slots=True)
class CsrReady:
    csr: bytes
    endorsement: bytes = field(default=b"", repr=False)
    """The lock's current key's signature over (lock id, SHA-256 of the CSR): the platform
    certifies only an endorsed CSR (see ``verify_csr_endorsement``)."""

    @property
    def request(self) -> bytes:
        """CSR and endorsement as one blob (what the companion keeps and uploads)."""
        return encode_rekey_payload(self.csr, self.endorsement)


@dataclass(frozen=True, slots=True)
class CertificateInstalled:
    certificate: x509.Certificate
    lock_key_id: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    command: Command
    reason: ResultCode


@dataclass(frozen=True, slots=True)
class StatementNeeded:
    """The next step sets the lock's clock back (``new_time`` before ``lock_time``), which the
    lock allows beyond the tolerance only with a platform time statement bound to ``nonce``.
    The conversation pauses (``next_action()`` returns None, ``awaiting_statement`` is true)
    until :meth:`KeylessConversation.provide_statement` gives one (or ``b""`` to go without:
    the lock then decides, and refuses more than the tolerance)."""

    locking_device_id: str
    nonce: bytes
    lock_time: datetime
    new_time: datetime


Event = (
    Identified
    | Opened
    | FirmwareUpdateAccepted
    | TimeSet
    | AuditEntries
    | CsrReady
    | CertificateInstalled
    | Refused
    | StatementNeeded
)


def _issued_at(cert_der: bytes) -> datetime:
    try:
        return x509.load_der_x509_certificate(bytes(cert_der)).not_valid_before_utc
    except (ValueError, TypeError, x509.InvalidVersion):
        raise LocalProtocolError("an earlier certificate is not DER X.509") from None


def _step_command(step: Step) -> Command:
    if isinstance(step, Open):
        return Command.OPEN
    if isinstance(step, UpdateFirmware):
        return Command.UPDATE_FIRMWARE
    if isinstance(step, SetTime):
        return Command.UPDATE_TIME
    if isinstance(step, CollectAudit):
        return Command.READ_AUDIT
    if isinstance(step, StartRekey):
        return Command.START_REKEY
    return Command.INSTALL_CERTIFICATE


class KeylessConversation:
    """One connection's worth of requests, companion side, sans-I/O.

    ``next_action()`` says what to do (:class:`Write` a fragment, :class:`AwaitNotification`),
    or None when finished; ``receive(notification)`` returns the events a complete message
    produced (often none: a fragment). The conversation says HELLO, checks the lock's
    certificate against ``ca_cert`` (and its CN against ``locking_device_id``), picks the
    credential bound to the lock's current key (offline keys: primary or alternative), runs the
    steps in order (audit collection pages until the lock says no more), verifies every
    signed result, and stops at the first refusal. A :class:`SetTime` that goes back pauses
    after the lock's nonce is known (:class:`StatementNeeded`) until :meth:`provide_statement`.
    ``now`` is the companion's clock, used only
    to check the certificate's validity. ``earlier_certificates`` (DER, from the platform) let
    audit entries the lock signed with an earlier key generation verify.
    """

    def __init__(
        self,
        *,
        ca_cert: x509.Certificate,
        locking_device_id: str,
        credentials: Sequence[Credential],
        steps: Sequence[Step],
        now: datetime,
        revocations: bytes = b"",
        earlier_certificates: Sequence[bytes] = (),
    ) -> None:
        if not credentials:
            raise LocalProtocolError("a conversation needs at least one credential")
        platform_key = _cert_key(ca_cert)
        self._credentials: list[tuple[Credential, Grant]] = []
        for credential in credentials:
            try:
                grant = verify_grant(credential.grant, platform_key)
            except RemoteProtocolError as exc:
                raise LocalProtocolError(
                    f"a credential's grant is unusable: {exc.message}"
                ) from None
            self._credentials.append((credential, grant))
        self._ca = ca_cert
        self._lock_id = locking_device_id
        self._steps = list(steps)
        self._now = now
        self._revocations = revocations
        self._reassembler = Reassembler()
        self._outgoing: list[bytes] = fragment(encode_hello())
        self._awaiting = False
        self._done = False
        self._nonce: bytes | None = None
        self._cert: x509.Certificate | None = None
        # Audit entries signed before a re-keying verify with the lock's earlier certificates.
        self._certs: list[x509.Certificate] = [
            verify_lock_certificate(der, ca_cert, at=_issued_at(der))
            for der in earlier_certificates
        ]
        self._chosen: tuple[Credential, Grant] | None = None
        self._pending: tuple[Command, bytes] | None = None
        self._audit_after = 0
        self._lock_time: datetime | None = None
        self._statement_for: bytes | None = None  # the nonce a statement is awaited for
        self.events: list[Event] = []

    @property
    def done(self) -> bool:
        return self._done

    @property
    def certificate(self) -> x509.Certificate | None:
        return self._cert

    @property
    def awaiting_statement(self) -> bool:
        """Paused until :meth:`provide_statement` (see :class:`StatementNeeded`)."""
        return self._statement_for is not None and not self._done

    def provide_statement(self, statement: bytes) -> None:
        """The platform's time statement for the nonce :class:`StatementNeeded` named (``b""``:
        none could be had); the paused request goes out with it. The lock, not the companion,
        judges the statement: a forged one or one for another nonce is refused there."""
        if self._statement_for is None or self._done:
            raise LocalProtocolError("no time statement was asked for")
        step = self._steps[0]
        assert isinstance(step, SetTime)
        self._statement_for = None
        self._send(Command.UPDATE_TIME, time_argument(step.new_time, bytes(statement)))

    def next_action(self) -> Action | None:
        if self._done or self._statement_for is not None:
            return None
        if self._outgoing:
            return Write(self._outgoing.pop(0))
        self._awaiting = True
        return AwaitNotification()

    def receive(self, notification: bytes) -> list[Event]:
        if not self._awaiting or self._done:
            raise RemoteProtocolError("the lock notified while nothing was asked")
        try:
            message = self._reassembler.feed(notification)
            if message is None:
                return []
            self._awaiting = False
            events = self._handle(decode_lock_message(message))
        except ProtocolError:
            self._done = True
            raise
        self.events.extend(events)
        return events

    def _handle(self, message: Challenge | Result | Malformed) -> list[Event]:
        if isinstance(message, Malformed):
            raise RemoteProtocolError("the lock could not decode our message")
        if isinstance(message, Challenge):
            return self._on_challenge(message)
        return self._on_result(message)

    def _on_challenge(self, challenge: Challenge) -> list[Event]:
        if self._cert is not None:
            raise RemoteProtocolError("the lock sent a second challenge")
        cert = verify_lock_certificate(challenge.certificate, self._ca, at=self._now)
        if certificate_lock_id(cert) != self._lock_id:
            raise RemoteProtocolError("the lock's certificate names another locking device")
        self._cert = cert
        self._certs.append(cert)
        self._nonce = challenge.nonce
        self._lock_time = challenge.lock_time
        lock_key_id = key_id_of(_cert_key(cert))
        matching = [pair for pair in self._credentials if pair[1].lock_key_id == lock_key_id]
        # None bound to this key: send the first anyway, so that the lock refuses and logs it.
        self._chosen = (matching or self._credentials)[0]
        event = Identified(
            cert,
            lock_key_id,
            challenge.lock_time,
            challenge.audit_last_sequence,
            challenge.revocation_version,
        )
        return [event, *self._send_next_step()]

    def _send_next_step(self) -> list[Event]:
        """Send the next step's request (or pause for a time statement: its event)."""
        if not self._steps:
            self._done = True
            return []
        step = self._steps[0]
        command = _step_command(step)
        argument = b""
        if isinstance(step, SetTime):
            back = self._lock_time is not None and step.new_time < self._lock_time
            if back and not step.statement:
                # Going back at all may cross the lock's floor (its time at the last accepted
                # request, which can lie up to the tolerance above its clock): ask for the
                # platform's word, bound to the nonce this request will carry.
                assert self._nonce is not None and self._lock_time is not None
                self._statement_for = self._nonce
                return [StatementNeeded(self._lock_id, self._nonce, self._lock_time, step.new_time)]
            argument = time_argument(step.new_time, step.statement)
        elif isinstance(step, CollectAudit):
            self._audit_after = max(self._audit_after, step.after_sequence)
            argument = self._audit_after.to_bytes(4, "big")
        elif isinstance(step, InstallCertificate):
            argument = step.certificate
        self._send(command, argument)
        return []

    def _send(self, command: Command, argument: bytes) -> None:
        assert self._chosen is not None and self._nonce is not None
        credential, grant = self._chosen
        message = encode_request(
            credential,
            grant,
            command=command,
            nonce=self._nonce,
            argument=argument,
            revocations=self._revocations,
        )
        self._revocations = b""  # the lock has it now (or refused it, and will again)
        self._pending = (command, argument)
        self._outgoing = fragment(message)

    def _on_result(self, result: Result) -> list[Event]:
        if self._pending is None or self._cert is None or self._chosen is None:
            raise RemoteProtocolError("the lock sent a result to no request")
        command, argument = self._pending
        if result.command is not command or result.request_nonce != self._nonce:
            raise RemoteProtocolError("the lock's result answers another request")
        signer = self._cert
        if command is Command.INSTALL_CERTIFICATE and result.code is ResultCode.OK:
            signer = verify_lock_certificate(argument, self._ca, at=self._now)
        if not _valid(_cert_key(signer), result.signature, _RESULT_DOMAIN, result.signed):
            raise RemoteProtocolError("the lock's result is not signed by its certified key")
        self._pending = None
        self._nonce = result.next_nonce
        self._lock_time = result.lock_time
        if result.code is not ResultCode.OK:
            refused: list[Event] = [Refused(command, result.code)]
            collect: list[Step] = [s for s in self._steps if isinstance(s, CollectAudit)]
            full = result.code is ResultCode.AUDIT_FULL and command is not Command.READ_AUDIT
            if full and collect:
                # The lock acts again once its log is collected: collect it now.
                self._steps = collect[:1]
                return refused + self._send_next_step()
            self._done = True
            return refused
        key_id = self._chosen[1].key_id
        events: list[Event]
        finished_step = True
        if command is Command.OPEN:
            events = [Opened(key_id)]
        elif command is Command.UPDATE_FIRMWARE:
            events = [FirmwareUpdateAccepted(key_id)]
        elif command is Command.UPDATE_TIME:
            previous = parse_time_argument(result.payload)
            events = [TimeSet(previous, result.lock_time)]
        elif command is Command.READ_AUDIT:
            blobs, more = decode_audit_page(result.payload)
            entries = tuple(verify_audit_entry(blob, self._certs) for blob in blobs)
            gaps: list[AuditGap] = []
            for entry in entries:
                # Duplicates never are legitimate; every gap is reported.
                if entry.sequence <= self._audit_after:
                    raise RemoteProtocolError("the lock repeated or reordered audit entries")
                if entry.sequence > self._audit_after + 1:
                    gaps.append(AuditGap(self._audit_after + 1, entry.sequence - 1))
                self._audit_after = entry.sequence
            if more and not entries:
                raise RemoteProtocolError("the lock said 'more' with an empty audit page")
            events = [AuditEntries(entries, more, tuple(gaps))]
            finished_step = not more
        elif command is Command.START_REKEY:
            csr, endorsement = decode_rekey_payload(result.payload)
            # Checked here too: an impostor's CSR must not even reach the outbox.
            verify_csr_endorsement(
                csr, endorsement, locking_device_id=self._lock_id, current=self._cert
            )
            events = [CsrReady(csr, endorsement)]
        else:
            events = [CertificateInstalled(signer, key_id_of(_cert_key(signer)))]
            self._cert = signer
            self._certs.append(signer)
            new_key_id = key_id_of(_cert_key(signer))
            matching = [pair for pair in self._credentials if pair[1].lock_key_id == new_key_id]
            self._chosen = (matching or [self._chosen])[0]
        if finished_step:
            self._steps.pop(0)
            events.extend(self._send_next_step())
        else:
            self._send(Command.READ_AUDIT, self._audit_after.to_bytes(4, "big"))
        return events
