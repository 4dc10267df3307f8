"""Attack 1 (issue 19, critical): re-key takeover. A user with any permission on a Keyless lock
asked the platform to certify the attacker's own key as the lock's (a CSR whose CN is the lock
id), then promoted it by uploading entries signed with it. Closed: the platform certifies only
a CSR endorsed by the lock's current key, and only the lock's own signed install-OK entry
completes a re-keying."""

from __future__ import annotations

import base64

from blelock.vendors.keyless import protocol as kl
from tests.security._kit import T0, b64, conversation, platform, run


async def test_a_permission_holder_cannot_have_their_own_key_certified_as_the_lock() -> None:
    async with platform() as rig:
        lock = rig.lock()
        lock_id = lock.locking_device_id
        record = rig.state.locking_devices[lock_id]
        genuine = record.certificate
        attacker_device_key, attacker_lock_key = kl.generate_key(), kl.generate_key()
        attacker = await rig.user()
        _, token = await rig.device(attacker, attacker_device_key)
        await rig.permission(attacker, lock_id)
        path = f"/mobile/locking-device/{lock_id}"
        csr = kl.make_csr(attacker_lock_key, lock_id)

        # The attack as it worked: a CSR with CN = the lock id, nothing proving the lock made it.
        bare = await rig.mobile("POST", f"{path}/csr", token, json={"csr": b64(csr)})
        assert bare.status_code == 400, bare.text
        # Endorsed by a key that is not the lock's current one (the attacker's own).
        self_endorsed = {
            "csr": b64(csr),
            "endorsement": b64(kl.endorse_csr(attacker_lock_key, lock_id, csr)),
        }
        answer = await rig.mobile("POST", f"{path}/csr", token, json=self_endorsed)
        assert answer.status_code == 400, answer.text
        assert record.pending_certificate is None

        # Promotion by upload: an "install OK" entry signed with the attacker's key.
        forged = kl.sign_audit_entry(
            kl.AuditEntry(1, T0, kl.Command.INSTALL_CERTIFICATE, None, None, kl.ResultCode.OK),
            attacker_lock_key,
        )
        upload = await rig.mobile(
            "POST", f"{path}/audit-log", token, json={"entries": [b64(forged)]}
        )
        assert upload.status_code == 400, upload.text
        assert record.certificate == genuine and rig.state.audit_entries(lock_id) == []

        # The real lock still opens for an honest technician's fresh key.
        honest_key = kl.generate_key()
        honest = await rig.user()
        _, honest_token = await rig.device(honest, honest_key)
        await rig.permission(honest, lock_id)
        credentials = await rig.operating_credentials(honest_token, honest_key, lock_id)
        events = run(lock, conversation(lock, credentials, [kl.Open()], at=T0))
        assert any(isinstance(e, kl.Opened) for e in events) and lock.opens == 1


async def test_certificate_and_log_routes_need_standing_on_that_lock() -> None:
    async with platform() as rig:
        lock = rig.lock()
        lock_id = lock.locking_device_id
        stranger = await rig.user()
        _, token = await rig.device(stranger, kl.generate_key())
        path = f"/mobile/locking-device/{lock_id}"
        certificate = await rig.mobile("GET", f"{path}/certificate", token)
        assert certificate.status_code == 403, certificate.text
        entry = kl.sign_audit_entry(
            kl.AuditEntry(1, T0, kl.Command.OPEN, None, None, kl.ResultCode.OK), lock.key
        )
        for log in ("audit-log", "system-log"):
            upload = await rig.mobile(
                "POST", f"{path}/{log}", token, json={"entries": [b64(entry)]}
            )
            assert upload.status_code == 403, upload.text
        assert rig.state.audit_entries(lock_id) == rig.state.system_entries(lock_id) == []


async def test_honest_rekeying_completes_only_on_the_locks_signed_install_entry() -> None:
    async with platform() as rig:
        lock = rig.lock()
        lock_id = lock.locking_device_id
        record = rig.state.locking_devices[lock_id]
        key = kl.generate_key()
        user = await rig.user()
        _, token = await rig.device(user, key)
        await rig.permission(user, lock_id)
        credentials = await rig.operating_credentials(token, key, lock_id)
        (ready,) = run(lock, conversation(lock, credentials, [kl.StartRekey()], at=T0))[1:]
        assert isinstance(ready, kl.CsrReady) and ready.endorsement
        path = f"/mobile/locking-device/{lock_id}"
        body = {"csr": b64(ready.csr), "endorsement": b64(ready.endorsement)}
        answer = await rig.mobile("POST", f"{path}/csr", token, json=body)
        assert answer.status_code == 202, answer.text
        again = await rig.mobile("POST", f"{path}/csr", token, json=body)
        assert again.status_code == 202, again.text  # the same request: idempotent
        # A different CSR, even one the lock's key endorsed, does not replace a pending one
        # unless an administrator sends it.
        other = kl.make_csr(kl.generate_key(), lock_id)
        replace = {"csr": b64(other), "endorsement": b64(kl.endorse_csr(lock.key, lock_id, other))}
        refused = await rig.mobile("POST", f"{path}/csr", token, json=replace)
        assert refused.status_code == 409, refused.text
        pending = record.pending_certificate
        assert pending is not None
        issued = await rig.mobile("GET", f"{path}/certificate", token)
        new_cert = base64.b64decode(issued.json()["certificate"])

        # Until the lock's signed install-OK entry arrives, the platform keeps the current key.
        entries = run(lock, conversation(lock, credentials, [kl.CollectAudit(0)], at=T0))
        blobs = [e.blob for ev in entries if isinstance(ev, kl.AuditEntries) for e in ev.entries]
        upload = await rig.mobile(
            "POST", f"{path}/audit-log", token, json={"entries": [b64(b) for b in blobs]}
        )
        assert upload.status_code == 200, upload.text
        assert record.pending_certificate is pending and record.certificate is not pending

        fresh = await rig.operating_credentials(token, key, lock_id)  # both generations
        events = run(
            lock,
            conversation(
                lock, fresh, [kl.InstallCertificate(new_cert), kl.CollectAudit(len(blobs))], at=T0
            ),
        )
        assert any(isinstance(e, kl.CertificateInstalled) for e in events)
        tail = [e.blob for ev in events if isinstance(ev, kl.AuditEntries) for e in ev.entries]
        upload = await rig.mobile(
            "POST", f"{path}/audit-log", token, json={"entries": [b64(b) for b in tail]}
        )
        assert upload.status_code == 200, upload.text
        assert record.certificate is pending and record.pending_certificate is None


async def test_an_administrator_may_replace_a_pending_rekeying() -> None:
    async with platform() as rig:
        lock = rig.lock()
        lock_id = lock.locking_device_id
        admin = await rig.user("ADMIN")
        _, token = await rig.device(admin, kl.generate_key())
        await rig.permission(admin, lock_id)
        path = f"/mobile/locking-device/{lock_id}/csr"
        for _ in range(2):
            csr = kl.make_csr(kl.generate_key(), lock_id)
            body = {"csr": b64(csr), "endorsement": b64(kl.endorse_csr(lock.key, lock_id, csr))}
            answer = await rig.mobile("POST", path, token, json=body)
            assert answer.status_code == 202, answer.text
            pending = rig.state.locking_devices[lock_id].pending_certificate
            assert pending is not None
            assert pending.der == rig.state.locking_devices[lock_id].certificates()[0].der
