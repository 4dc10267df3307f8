"""ASSA ABLOY Keyless BLE *stand-in* protocol, sans-I/O, both roles.

The vendor's BLE protocol and Mobile API are not public. Everything here is invented for blelock
and its simulators, and documented in ``docs/keyless-ble-standin.md``; it is **not** the vendor's
protocol. What it keeps honest is the security model of issue 4: a platform CA certifies each
lock's operational key (X.509, ECDSA P-256), the platform signs grants (operating and offline
keys) bound to one lock key generation, the lock challenges with a fresh nonce, the companion
proves possession of the grant's holder key, the lock checks everything against its own clock
and revocation list and answers with a result signed by its operational key. Audit entries are
signed by the lock and numbered (refusals before any proof are only counted, and every gap is
reported); re-keying takes two offline visits (endorsed CSR out,
certificate in).

Every invented number lives in :data:`LIMITS` (in ``_limits``), and nowhere else.

Companion side: :class:`KeylessConversation` says what to write and what to wait for (like
``DfuSession``); the lead's async driver runs it over a link. Lock side: the message codecs and
:func:`check_request` (the acceptance rules, in order); ``simulators.keyless_lock`` holds the state.

Import from this package; its private modules, lowest first (none imports one listed after it):

* ``_limits``: :class:`KeylessLimits` / :data:`LIMITS`, the GATT UUIDs, :data:`COMPANY_ID`.
* ``_fields``: byte helpers (bounds-checked reader, field encodings).
* ``_codes``: :class:`ResultCode`, :class:`Command`.
* ``_credentials``: keys, the platform CA, CSRs and lock certificates, grants, credentials,
  revocation lists, signed audit entries.
* ``_wire``: framing (:func:`fragment`, :class:`Reassembler`), the envelope, the messages.
* ``_advert``: the advertisement, encoded and parsed.
* ``_lock``: the lock's acceptance rules (:data:`REFUSAL_RULES`, :func:`check_request`).
* ``_conversation``: the companion's :class:`KeylessConversation`, its steps, actions, events.
"""

from __future__ import annotations

from blelock.vendors.keyless.protocol._advert import (
    KeylessAdvert,
    encode_advert,
    local_name_for,
    parse_keyless_advert,
)
from blelock.vendors.keyless.protocol._codes import (
    UNAUTHENTICATED_REFUSALS,
    AuditKind,
    Command,
    ResultCode,
)
from blelock.vendors.keyless.protocol._conversation import (
    Action,
    AuditEntries,
    AuditGap,
    AwaitNotification,
    CertificateInstalled,
    CollectAudit,
    CsrReady,
    Event,
    FirmwareUpdateAccepted,
    Identified,
    InstallCertificate,
    KeylessConversation,
    Open,
    Opened,
    Refused,
    SetTime,
    StartRekey,
    StatementNeeded,
    Step,
    TimeSet,
    UpdateFirmware,
    Write,
)
from blelock.vendors.keyless.protocol._credentials import (
    AuditEntry,
    Credential,
    Grant,
    GrantKind,
    Operation,
    RevocationList,
    TimeStatement,
    audit_entry_body,
    certificate_lock_id,
    endorse_csr,
    generate_key,
    issue_certificate,
    key_id_of,
    load_public_key_bytes,
    make_csr,
    make_platform_ca,
    public_key_bytes,
    sign_audit_entry,
    sign_grant,
    sign_revocation_list,
    sign_time_statement,
    verify_audit_entry,
    verify_csr_endorsement,
    verify_grant,
    verify_lock_certificate,
    verify_revocation_list,
    verify_time_statement,
)
from blelock.vendors.keyless.protocol._limits import (
    COMPANY_ID,
    LIMITS,
    NOTIFY_UUID,
    SERVICE_UUID,
    WRITE_UUID,
    KeylessLimits,
)
from blelock.vendors.keyless.protocol._lock import (
    REFUSAL_RULES,
    LockView,
    check_request,
)
from blelock.vendors.keyless.protocol._wire import (
    Challenge,
    Hello,
    Malformed,
    Reassembler,
    Request,
    Result,
    decode_audit_page,
    decode_lock_message,
    decode_rekey_payload,
    decode_request,
    encode_audit_page,
    encode_challenge,
    encode_hello,
    encode_malformed,
    encode_rekey_payload,
    encode_request,
    encode_result,
    fragment,
    parse_time_argument,
    parse_time_update,
    proof_payload,
    time_argument,
)

__all__ = [
    "COMPANY_ID",
    "LIMITS",
    "NOTIFY_UUID",
    "REFUSAL_RULES",
    "SERVICE_UUID",
    "UNAUTHENTICATED_REFUSALS",
    "WRITE_UUID",
    "Action",
    "AuditEntries",
    "AuditEntry",
    "AuditGap",
    "AuditKind",
    "AwaitNotification",
    "CertificateInstalled",
    "Challenge",
    "CollectAudit",
    "Command",
    "Credential",
    "CsrReady",
    "Event",
    "FirmwareUpdateAccepted",
    "Grant",
    "GrantKind",
    "Hello",
    "Identified",
    "InstallCertificate",
    "KeylessAdvert",
    "KeylessConversation",
    "KeylessLimits",
    "LockView",
    "Malformed",
    "Open",
    "Opened",
    "Operation",
    "Reassembler",
    "Refused",
    "Request",
    "Result",
    "ResultCode",
    "RevocationList",
    "SetTime",
    "StartRekey",
    "StatementNeeded",
    "Step",
    "TimeSet",
    "TimeStatement",
    "UpdateFirmware",
    "Write",
    "audit_entry_body",
    "certificate_lock_id",
    "check_request",
    "decode_audit_page",
    "decode_lock_message",
    "decode_rekey_payload",
    "decode_request",
    "encode_advert",
    "encode_audit_page",
    "encode_challenge",
    "encode_hello",
    "encode_malformed",
    "encode_rekey_payload",
    "encode_request",
    "encode_result",
    "endorse_csr",
    "fragment",
    "generate_key",
    "issue_certificate",
    "key_id_of",
    "load_public_key_bytes",
    "local_name_for",
    "make_csr",
    "make_platform_ca",
    "parse_keyless_advert",
    "parse_time_argument",
    "parse_time_update",
    "proof_payload",
    "public_key_bytes",
    "sign_audit_entry",
    "sign_grant",
    "sign_revocation_list",
    "sign_time_statement",
    "time_argument",
    "verify_audit_entry",
    "verify_csr_endorsement",
    "verify_grant",
    "verify_lock_certificate",
    "verify_revocation_list",
    "verify_time_statement",
]
