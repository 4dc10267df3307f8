"""The operating-device client: the project's documented stand-in for the non-public Mobile
API (see simulators/keyless_cloud/).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import httpx
from pydantic import SecretStr

from blelock.clock import Clock, SystemClock
from blelock.cloud._http import RetryPolicy
from blelock.config import Timeouts
from blelock.errors import CloudRejected, UsageError
from blelock.vendors.keyless.cloud._client import PATHS, _KeylessClient, _root, _secret
from blelock.vendors.keyless.cloud._problems import _DEVICE_CREDENTIALS_HINT
from blelock.vendors.keyless.cloud.auth import KeylessAuth
from blelock.vendors.keyless.models import (
    MobileActivation,
    MobileCertificate,
    MobileItems,
    MobileOfflineKey,
    MobileOperatingKey,
    MobileRevocations,
    MobileTimeStatement,
    MobileUpload,
    check_id,
)
from blelock.vendors.keyless.protocol import LIMITS

__all__ = ["KeylessMobile"]


class KeylessMobile(_KeylessClient):
    """What an operating device asks of the platform (the project's stand-in for the non-public
    Mobile API): activation, operating and offline keys, revocations, log upload, re-keying.

    Created without credentials, it can only :meth:`activate`; that stores the credentials the
    platform hands out, and every later call logs in with them.
    """

    _accept = "application/json"
    _credentials_hint = _DEVICE_CREDENTIALS_HINT

    def __init__(
        self,
        base_url: str,
        *,
        operating_device_id: str | None = None,
        access_key: SecretStr | str | None = None,
        api_key: SecretStr | str | None = None,
        timeouts: Timeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        clock = clock or SystemClock()
        root = _root(base_url)
        self._api_key = None if api_key is None else _secret(api_key, "API key")
        auth = KeylessAuth(
            root + PATHS["mobile-login"],
            principal_field="operatingDeviceId",
            principal_id=None
            if operating_device_id is None
            else check_id(operating_device_id, "operating device"),
            access_key=None if access_key is None else _secret(access_key, "access key"),
            api_key=self._api_key,
            clock=clock,
            credentials_hint=_DEVICE_CREDENTIALS_HINT,
        )
        super().__init__(
            root, auth, timeouts=timeouts, transport=transport, retry=retry, clock=clock
        )

    async def activate(self, invitation_code: str, public_key: bytes) -> MobileActivation:
        """Accept an invitation with this device's public key (65-byte uncompressed P-256)."""
        if not invitation_code.strip():
            raise UsageError("activation: the invitation code is empty")
        if len(public_key) != 65 or public_key[0] != 0x04:
            raise UsageError(
                "activation: the public key must be a 65-byte uncompressed P-256 point"
            )
        body = {"invitationCode": invitation_code.strip(), "publicKey": _b64(public_key)}
        activation = await self._fetch(
            MobileActivation,
            "POST",
            PATHS["mobile-activation"],
            what="activation",
            body=body,
            authenticated=False,
        )
        self.auth.set_credentials(activation.operating_device_id, activation.access_key)
        return activation

    async def operating_keys(self) -> list[MobileOperatingKey]:
        """One per permission of this device's user that is valid now."""
        items = await self._fetch(
            MobileItems[MobileOperatingKey],
            "GET",
            PATHS["mobile-operating-keys"],
            what="the operating keys",
        )
        return items.items

    async def offline_keys(self) -> list[MobileOfflineKey]:
        """The values of the offline keys issued to this device (with their private keys)."""
        items = await self._fetch(
            MobileItems[MobileOfflineKey],
            "GET",
            PATHS["mobile-offline-keys"],
            what="the offline keys",
        )
        return items.items

    async def revocations(self) -> MobileRevocations:
        return await self._fetch(
            MobileRevocations, "GET", PATHS["mobile-revocations"], what="the revocation list"
        )

    async def upload_audit_log(
        self, locking_device_id: str, entries: Sequence[bytes]
    ) -> MobileUpload:
        """Signed audit entries; the platform keeps one per (lock, sequence number), so a
        retried upload is safe."""
        return await self._upload(locking_device_id, "audit-log", entries)

    async def submit_csr(
        self, locking_device_id: str, csr_der: bytes, endorsement: bytes = b""
    ) -> None:
        """The lock's certificate signing request from a re-keying visit (DER PKCS#10) and the
        lock's current key's endorsement of it (the platform refuses a CSR without one)."""
        lock = check_id(locking_device_id, "csr: locking device")
        if not csr_der:
            raise UsageError("csr: the certificate signing request is empty")
        await self._call(
            "POST",
            f"{PATHS['mobile-locking-device']}/{lock}/csr",
            what=f"the certificate signing request of locking device {lock}",
            body={"csr": _b64(csr_der), "endorsement": _b64(endorsement)},
            lock_id=lock,
            idempotent=True,
        )

    async def certificate(self, locking_device_id: str) -> bytes | None:
        """The certificate issued for the lock's pending CSR (DER), or None if none is."""
        lock = check_id(locking_device_id, "certificate: locking device")
        try:
            answer = await self._fetch(
                MobileCertificate,
                "GET",
                f"{PATHS['mobile-locking-device']}/{lock}/certificate",
                what=f"a certificate for locking device {lock}",
            )
        except CloudRejected as exc:
            if exc.status == 404:
                return None
            raise
        return answer.certificate

    async def time_statement(self, locking_device_id: str, nonce: bytes) -> bytes:
        """The platform's signed time for the lock that issued ``nonce`` (needs an UPDATE_TIME
        permission in force): lets the lock go back more than its clock tolerance."""
        lock = check_id(locking_device_id, "time statement: locking device")
        if len(nonce) != LIMITS.nonce_size:
            raise UsageError(f"time statement: the nonce must be {LIMITS.nonce_size} bytes")
        answer = await self._fetch(
            MobileTimeStatement,
            "POST",
            f"{PATHS['mobile-locking-device']}/{lock}/time-statement",
            what=f"a time statement for locking device {lock}",
            body={"nonce": _b64(nonce)},
            lock_id=lock,
            idempotent=True,  # a second statement for the same nonce changes nothing
        )
        return answer.statement

    async def platform_ca(self) -> bytes:
        """The platform CA certificate (DER) the companion pins."""
        answer = await self._fetch(
            MobileCertificate, "GET", PATHS["mobile-ca"], what="the platform CA certificate"
        )
        return answer.certificate

    async def _upload(
        self, locking_device_id: str, kind: str, entries: Sequence[bytes]
    ) -> MobileUpload:
        lock = check_id(locking_device_id, f"{kind} upload: locking device")
        return await self._fetch(
            MobileUpload,
            "POST",
            f"{PATHS['mobile-locking-device']}/{lock}/{kind}",
            what=f"the {kind} of locking device {lock}",
            body={"entries": [_b64(entry) for entry in entries]},
            lock_id=lock,
            idempotent=True,
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
