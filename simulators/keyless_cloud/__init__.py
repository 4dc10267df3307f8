"""A simulated ASSA ABLOY Keyless platform: a Starlette app with its own reading of the vendor doc.

Served over real HTTP on 127.0.0.1 (uvicorn) for end-to-end runs, or through
``httpx.ASGITransport(app=keyless_app(state))`` in unit tests. It does not use blelock's client
models: it reads requests the way ``shared/vendor-docs/keyless-administration-api-v2.txt``
documents them, so a client that drifts from the document fails here.

Administration API v2 (public; the app's ``/`` is the API's ``/administration`` root)
-------------------------------------------------------------------------------------

* Every request carries ``X-Api-Key`` (wrong or missing → 403) and ``Accept:
  application/vnd.assaabloy.keyless.administration-2+json`` (anything else, ``*/*`` included,
  → 406: the document says the media type must be requested *explicitly*). Answers are in that
  media type; errors are ``application/problem+json`` with ``type``, ``title``, ``status`` and a
  ``detail`` that names the broken rule.
* ``POST /login`` trades ``userId`` + ``accessKey`` for a token valid one hour; every other route
  wants ``Authorization: Bearer <token>`` (missing, unknown or expired → 401) of a user whose role
  is ``ADMIN`` (a ``USER`` → 403).
* Lists page with ``limit`` (1..100, default 50; outside → 400) and ``next-page-token``: a token
  names the last item handed out, so paging survives creations and deletions in between, and it
  only works for the list (and filters) that issued it. ``nextPageToken`` is left out on the
  last page.
* Path identifiers must be UUIDs (else 400); unknown ones → 404, as do unknown identifiers
  named in a body (the vendor's mock answers 404 there too).
* Paths are singular nouns (``/user``, ``/locking-device``, ``/permission``...), as the vendor's
  ``curl`` example and the public mock spell them; paths the excerpt does not show are ours:
  ``/locking-device-system-log`` and ``/locking-device-audit-log`` (query
  ``locking-device-id``), ``/gateway-device-system-log`` / ``-audit-log`` (query
  ``gateway-device-id``), ``DELETE /operating-device-invitation/{id}`` (revoke),
  ``POST /remote-command/{id}/cancel`` and ``POST /testing/locking-device/{id}/re-key``.
* Status codes the excerpt leaves open are ours: creations 201, deletions/updates/revocations 204,
  conflicts with the resource's state (accepted invitation, full gateway, unclaimed lock...) 409.
* Invitations with ``deliveryMechanism: NONE`` answer the ``invitationCode`` (the document says
  integrators take the code from the ``NONE`` mechanism); SMS ones land in :attr:`sent_sms`.

Operating-device side: a stand-in, NOT the vendor's Mobile API (which is not public)
-----------------------------------------------------------------------------------

Plain ``application/json``; no ``X-Api-Key``; errors are problem+json. Grants, certificates,
revocation lists and audit entries are encoded by :mod:`blelock.vendors.keyless.protocol`.

* ``POST /mobile/activation`` ``{invitationCode, publicKey}`` (base64 65-byte P-256 point) →
  201 ``{operatingDeviceId, accessKey}``; the invitation must be pending and unexpired and its
  user must not have an operating device yet (one per user, as the document says).
* ``POST /mobile/login`` ``{operatingDeviceId, accessKey}`` → ``{token}``, valid one hour.
* ``GET /mobile/ca`` → ``{certificate}``: the platform CA (base64 DER) the companion pins.
* ``GET /mobile/operating-keys`` → one signed operating key per permission of the device's user
  that is valid now, on a claimed lock: valid until ``min(permission end, now +
  operatingKeyValidityDuration)``, bound to the lock's current operational key, with that
  certificate.
* ``GET /mobile/offline-keys`` → the values of the offline keys issued to this device (the
  Administration API lists their metadata only): a grant and its PKCS#8 private key each.
* ``GET /mobile/revocations`` → ``{version, list}``: the newest signed revocation list. Deleting a
  permission, operating device or user revokes the operating keys handed out for it (our choice:
  the vendor says revoking a permission does not touch downloaded keys; the stand-in lock can
  do better, so it does).
* ``POST /mobile/locking-device/{id}/audit-log`` and ``.../system-log`` ``{entries: [base64]}``
  → ``{accepted, duplicates}``: each entry is a lock-signed entry in the format of
  :func:`blelock.vendors.keyless.protocol.sign_audit_entry` (the protocol has no separate
  system-entry format yet, so the system log takes the same) and must verify against one of
  the lock's certificates (400 otherwise); idempotent by (lock, sequence). An entry signed by
  the key of the certificate a pending re-keying issued, or a successful
  ``INSTALL_CERTIFICATE``, proves the lock installed it: the re-keying completes.
* ``POST /mobile/locking-device/{id}/csr`` ``{csr}`` → 202: the platform issues the lock's next
  operational certificate (the device's user needs a permission on that lock: the document
  keeps certificate updates to the permission framework); ``GET .../certificate`` → it, or 404
  when none is pending.

While a re-keying is pending, an offline key comes as a primary bound to the new lock key and an
alternative bound to the current one, as the document's ``alternativeKey`` describes.

Layout
------

* :mod:`~simulators.keyless_cloud.state`: the limits, what the platform knows
  (:class:`KeylessPlatformState`, its records, :class:`PlatformFaults`) and :func:`register_lock`.
* :mod:`~simulators.keyless_cloud._http`: problems, request bodies, parsing, one ``Call``, paging
  and the JSON views every handler shares.
* :mod:`~simulators.keyless_cloud.admin` and :mod:`~simulators.keyless_cloud.gateways`: the
  Administration API v2 handlers.
* :mod:`~simulators.keyless_cloud.mobile`: the operating-device stand-in's handlers.
* :mod:`~simulators.keyless_cloud.app`: the route table and :func:`keyless_app`.
"""

from __future__ import annotations

from simulators.keyless_cloud.app import keyless_app
from simulators.keyless_cloud.state import (
    MEDIA_TYPE,
    Association,
    GatewayDevice,
    Invitation,
    InvitationStatus,
    KeylessPlatformState,
    LockCertificate,
    LockingDevice,
    LogEntry,
    OfflineKey,
    OperatingDevice,
    Permission,
    PlatformFaults,
    RemoteCommand,
    Role,
    SentSms,
    Submission,
    User,
    register_lock,
)

__all__ = [
    "MEDIA_TYPE",
    "Association",
    "GatewayDevice",
    "Invitation",
    "InvitationStatus",
    "KeylessPlatformState",
    "LockCertificate",
    "LockingDevice",
    "LogEntry",
    "OfflineKey",
    "OperatingDevice",
    "Permission",
    "PlatformFaults",
    "RemoteCommand",
    "Role",
    "SentSms",
    "Submission",
    "User",
    "keyless_app",
    "register_lock",
]
