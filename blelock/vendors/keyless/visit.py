"""One visit to a Keyless lock: the stand-in conversation (:mod:`blelock.vendors.keyless.protocol`)
over a LockLink, with what the store holds for that lock.

A visit opens (or sets the time, or re-keys), then collects every audit entry after the last
one kept, and puts them in the outbox with the new cursor in one transaction, before it returns
or raises: what the lock gave is never lost, and the next visit never asks for it twice. A
certificate the platform issued for a pending re-keying is installed first, so the keys bound
to the new lock key work in the same visit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from blelock.clock import Clock, SystemClock
from blelock.config import Timeouts
from blelock.errors import CloudError, LockRefused, lock_context
from blelock.model import LogRecord
from blelock.transport.base import LinkOpener, LockLink
from blelock.transport.drive import deadline, drive
from blelock.vendors.keyless import protocol as keyless

__all__ = [
    "AUDIT_LOG",
    "CSR_LOG",
    "KeylessLogSink",
    "KeylessMaterial",
    "KeylessOutcome",
    "KeylessVisit",
    "StatementSource",
]

AUDIT_LOG = "audit"
"""The outbox session name, and the cursor's log name, of audit entries."""
CSR_LOG = "csr"
"""The outbox session of a certificate signing request from a re-keying: it goes to the
platform with the next upload, and must survive whatever happens after the lock made it. The
payload is ``keyless.encode_rekey_payload(csr, endorsement)``: the platform certifies only a CSR
the lock's current key endorsed."""

REFUSAL_HINTS: Mapping[keyless.ResultCode, str] = {
    keyless.ResultCode.EXPIRED: "run `blelock sync` while online for a fresh key; if the lock's "
    "clock is wrong, `blelock keyless set-time` with a key that allows UPDATE_TIME",
    keyless.ResultCode.NOT_YET_VALID: "the key is not valid yet by the lock's clock; wait, or "
    "correct the lock's clock with `blelock keyless set-time`",
    keyless.ResultCode.WRONG_OPERATION: "your permission does not include this operation; ask "
    "the administrator",
    keyless.ResultCode.REVOKED: "the key was revoked; ask the administrator for access",
    keyless.ResultCode.WRONG_LOCK_KEY: "the lock was re-keyed; run `blelock sync` while online",
    keyless.ResultCode.AUDIT_FULL: "the lock's audit log is full of entries nobody collected; "
    "this visit collected them, so try again (and run `blelock upload` while online)",
    keyless.ResultCode.TIME_REFUSED: "the lock will not go back in time more than the clock "
    "tolerance without the platform's signed time; run the time update while online",
}
_ROLLBACK_HINT = (
    "setting the lock's clock back more than the clock tolerance needs the platform's signed "
    "time, and the platform could not be asked ({why}); run `blelock keyless set-time` again "
    "while online"
)
_DEFAULT_HINT = "run `blelock sync` while online and try again; if it persists, report it"


StatementSource = Callable[[str, bytes], Awaitable[bytes]]
"""(lock id, lock nonce) -> the platform's time statement for that nonce; raises CloudError
when the platform cannot be asked (offline, or no UPDATE_TIME permission in force)."""


class KeylessLogSink(Protocol):
    """The outbox (vendor "keyless"): durable when ``append`` returns, cursors included."""

    async def append(
        self, records: Sequence[LogRecord], cursors: Mapping[tuple[str, str], int] | None = None
    ) -> None: ...

    async def cursor(self, lock_id: str, log: str) -> int: ...


@dataclass(frozen=True, slots=True)
class KeylessMaterial:
    """What the companion holds for one lock, from the store (refreshed online first when the
    platform could be reached)."""

    ca_certificate: x509.Certificate
    credentials: Sequence[keyless.Credential] = field(repr=False)
    revocations: bytes = b""
    pending_certificate: bytes | None = None
    """Issued by the platform for the re-keying the lock started on an earlier visit."""
    earlier_certificates: Sequence[bytes] = ()


@dataclass(frozen=True, slots=True)
class KeylessOutcome:
    lock_id: str
    operation: str
    key_id: str | None
    audit_collected: int
    certificate_installed: bytes | None = None
    """DER of the certificate the lock now runs on, when this visit installed it."""
    csr: bytes | None = None
    """The lock's certificate signing request, when this visit started a re-keying."""
    time_set: tuple[datetime, datetime] | None = None
    """(the lock's clock before, after) when this visit set it."""
    audit_gaps: tuple[tuple[int, int], ...] = ()
    """Runs of audit sequence numbers (first, last) the lock did not give: reported, never
    passed over (a DROPPED entry among those collected says the lock made room)."""


class KeylessVisit:
    def __init__(
        self,
        lock_id: str,
        open_link: LinkOpener,
        material: KeylessMaterial,
        timeouts: Timeouts,
        logs: KeylessLogSink,
        clock: Clock | None = None,
        statements: StatementSource | None = None,
    ) -> None:
        self.lock_id = lock_id
        self._statements = statements
        self._no_statement: str | None = None  # why a needed statement could not be had
        self._open_link = open_link
        self._material = material
        self._timeouts = timeouts
        self._logs = logs
        self._clock = clock or SystemClock()
        self._after = 0  # the audit cursor this visit started from

    async def open(self, *, rekey: bool = False) -> KeylessOutcome:
        """Open the lock; with ``rekey``, also make it start a re-keying (visit one)."""
        steps: list[keyless.Step] = [keyless.Open()]
        if rekey:
            steps.append(keyless.StartRekey())
        return await self._visit("open", steps)

    async def set_time(self) -> KeylessOutcome:
        """Set the lock's clock to this machine's (needs a key allowing UPDATE_TIME)."""
        now = self._clock.now_utc().astimezone(UTC).replace(microsecond=0)
        return await self._visit("set time", [keyless.SetTime(now)])

    async def _visit(self, operation: str, steps: list[keyless.Step]) -> KeylessOutcome:
        with lock_context(self.lock_id, operation):
            after = self._after = await self._logs.cursor(self.lock_id, AUDIT_LOG)
            if self._material.pending_certificate is not None:
                steps = [keyless.InstallCertificate(self._material.pending_certificate), *steps]
            steps = [*steps, keyless.CollectAudit(after)]
            conversation = keyless.KeylessConversation(
                ca_cert=self._material.ca_certificate,
                locking_device_id=self.lock_id,
                credentials=self._material.credentials,
                steps=steps,
                now=self._clock.now_utc(),
                revocations=self._material.revocations,
                earlier_certificates=self._material.earlier_certificates,
            )
            try:
                async with deadline(self._timeouts.visit, "the visit"):
                    await self._converse(conversation)
            finally:
                # Whatever happened, what the lock gave is kept before anyone hears of it.
                await self._keep_audit(conversation.events, after)
            return self._outcome(operation, conversation.events)

    async def _converse(self, conversation: keyless.KeylessConversation) -> None:
        async with self._open_link() as link:
            await link.subscribe(keyless.NOTIFY_UUID, timeout=self._timeouts.gatt)
            await self._drive(link, conversation)

    async def _drive(self, link: LockLink, conversation: keyless.KeylessConversation) -> None:
        refused: list[keyless.Refused] = []
        needed: list[keyless.StatementNeeded] = []

        def keep(event: keyless.Event) -> None:
            # Raised once the conversation ends: a refused visit may still collect the log.
            if isinstance(event, keyless.Refused) and not refused:
                refused.append(event)
            elif isinstance(event, keyless.StatementNeeded):
                needed.append(event)

        while True:
            await drive(
                link,
                conversation,
                write_timeout=self._timeouts.command,
                answer_timeout=min(self._timeouts.command, keyless.LIMITS.answer_timeout_s),
                handle=keep,
            )
            if not conversation.awaiting_statement:
                break
            # Paused on the same link, inside the visit's deadline: ask the platform.
            conversation.provide_statement(await self._statement(needed[-1]))
        if refused:
            reason = refused[0].reason
            hint = REFUSAL_HINTS.get(reason, _DEFAULT_HINT)
            if reason is keyless.ResultCode.TIME_REFUSED and self._no_statement is not None:
                hint = _ROLLBACK_HINT.format(why=self._no_statement)
            raise LockRefused(
                f"the lock refused {refused[0].command.name}: {reason.name}",
                reason=reason,
                hint=hint,
            )

    async def _statement(self, needed: keyless.StatementNeeded) -> bytes:
        """The platform's time statement for the paused request, or b"" (the lock then allows
        going back only within the tolerance)."""
        if self._statements is None:
            self._no_statement = "this visit is offline"
            return b""
        try:
            with lock_context(self.lock_id, "fetch the platform's time statement"):
                return await self._statements(needed.locking_device_id, needed.nonce)
        except CloudError as exc:
            self._no_statement = exc.message
            return b""

    async def _keep_audit(self, events: Sequence[keyless.Event], after: int) -> None:
        received = int(self._clock.now_utc().timestamp())
        csrs = [
            LogRecord(self.lock_id, CSR_LOG, received, event.request.hex())
            for event in events
            if isinstance(event, keyless.CsrReady)
        ]
        entries = [
            entry
            for event in events
            if isinstance(event, keyless.AuditEntries)
            for entry in event.entries
            if entry.sequence > after
        ]
        records = [
            LogRecord(self.lock_id, AUDIT_LOG, received, entry.blob.hex()) for entry in entries
        ]
        if not records and not csrs:
            return
        cursor = {(self.lock_id, AUDIT_LOG): max(e.sequence for e in entries)} if entries else {}
        await self._logs.append(records + csrs, cursor)

    def _outcome(self, operation: str, events: Sequence[keyless.Event]) -> KeylessOutcome:
        key_id: str | None = None
        installed: bytes | None = None
        csr: bytes | None = None
        time_set: tuple[datetime, datetime] | None = None
        collected = 0
        gaps: list[tuple[int, int]] = []
        for event in events:
            if isinstance(event, keyless.Opened | keyless.FirmwareUpdateAccepted):
                key_id = event.key_id
            elif isinstance(event, keyless.CertificateInstalled):
                installed = event.certificate.public_bytes(Encoding.DER)
            elif isinstance(event, keyless.CsrReady):
                csr = event.csr
            elif isinstance(event, keyless.TimeSet):
                time_set = (event.previous, event.now)
            elif isinstance(event, keyless.AuditEntries):
                collected += sum(entry.sequence > self._after for entry in event.entries)
                gaps.extend((gap.first, gap.last) for gap in event.gaps)
        return KeylessOutcome(
            self.lock_id, operation, key_id, collected, installed, csr, time_set, tuple(gaps)
        )
