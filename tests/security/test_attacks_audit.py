"""Attack 2 (issue 19, high): audit erasure by radio alone. Every decodable request was logged,
even one refused before any credential was checked, and the log evicted its oldest entries at
its capacity: 4096 junk requests erased a technician's OPEN entry, and the companion took the
gap in silence. Closed: unauthenticated refusals are counted in one signed entry, an entry not
yet collected is never evicted, and every gap is reported (companion and platform)."""

from __future__ import annotations

import dataclasses
import os
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blelock.vendors.keyless import protocol as kl
from simulators.keyless_lock import SimKeylessLock
from tests.security._kit import (
    CA_KEY,
    DEVICE_ID,
    T0,
    b64,
    collect,
    conversation,
    credential,
    platform,
    run,
    send,
    standalone_lock,
)


def junk_request(lock: SimKeylessLock) -> bytes:
    """A well-formed REQUEST with a nonce the lock never issued: anyone can send it."""
    forged = credential(lock)
    grant = kl.verify_grant(forged.grant, CA_KEY.public_key())
    return kl.encode_request(forged, grant, command=kl.Command.OPEN, nonce=os.urandom(16))


def test_radio_junk_cannot_push_a_technicians_open_out_of_the_log() -> None:
    lock = standalone_lock()
    technician = credential(lock, device_id=DEVICE_ID)
    key_id = kl.verify_grant(technician.grant, CA_KEY.public_key()).key_id
    events = run(lock, conversation(lock, [technician], [kl.Open()], at=T0))
    assert any(isinstance(e, kl.Opened) for e in events)

    junk = junk_request(lock)
    lock.on_connect()
    attempts = kl.LIMITS.audit_capacity + 10
    for _ in range(attempts):
        answer = send(lock, junk)
        assert isinstance(answer, kl.Result) and answer.code is kl.ResultCode.STALE_NONCE
    lock.on_disconnect()

    entries, gaps = collect(lock)
    opens = [e for e in entries if e.operation is kl.Command.OPEN and e.key_id == key_id]
    assert [e.result for e in opens] == [kl.ResultCode.OK]
    assert opens[0].operating_device_id == DEVICE_ID
    summaries = [e for e in entries if e.kind is kl.AuditKind.UNAUTHENTICATED]
    assert [s.count for s in summaries] == [attempts]  # counted, in one signed entry
    assert gaps == [] and len(lock.audit_log) == 2


def test_a_sniffed_grant_with_a_junk_proof_never_blames_its_holder() -> None:
    lock = standalone_lock()
    victim = credential(lock, device_id=DEVICE_ID)
    grant = kl.verify_grant(victim.grant, CA_KEY.public_key())
    lock.on_connect()
    challenge = send(lock, kl.encode_hello())
    assert isinstance(challenge, kl.Challenge)
    replay = kl.encode_request(
        kl.Credential(victim.grant, kl.generate_key()),  # the grant, not its holder's key
        grant,
        command=kl.Command.OPEN,
        nonce=challenge.nonce,
    )
    answer = send(lock, replay)
    lock.on_disconnect()
    assert isinstance(answer, kl.Result) and answer.code is kl.ResultCode.BAD_PROOF
    entries, _ = collect(lock)
    assert all(e.operating_device_id is None and e.key_id is None for e in entries)
    assert [(e.kind, e.count) for e in entries] == [(kl.AuditKind.UNAUTHENTICATED, 1)]


def test_uncollected_entries_are_never_evicted_and_the_lock_refuses_instead() -> None:
    lock = standalone_lock(limits=dataclasses.replace(kl.LIMITS, audit_capacity=6))
    holder = credential(lock)
    for _ in range(6):
        events = run(lock, conversation(lock, [holder], [kl.Open()], at=T0))
        assert any(isinstance(e, kl.Opened) for e in events)
    # Full of authenticated, uncollected entries: the seventh open is refused, not logged over.
    events = run(lock, conversation(lock, [holder], [kl.Open(), kl.CollectAudit(0)], at=T0))
    assert kl.Refused(kl.Command.OPEN, kl.ResultCode.AUDIT_FULL) in events
    pages = [e for e in events if isinstance(e, kl.AuditEntries)]  # ...and collected at once
    assert [x.sequence for p in pages for x in p.entries] == [1, 2, 3, 4, 5, 6]
    assert lock.opens == 6
    # Collected: the oldest collected entries make room, the lock acts again.
    events = run(lock, conversation(lock, [holder], [kl.Open()], at=T0))
    assert any(isinstance(e, kl.Opened) for e in events) and lock.opens == 7


def test_the_companion_reports_a_gap_and_a_dropped_entry_explains_it() -> None:
    lock = standalone_lock(limits=dataclasses.replace(kl.LIMITS, audit_capacity=4))
    holder = credential(lock)
    junk = junk_request(lock)
    for _ in range(3):  # each open after junk: one UNAUTHENTICATED summary and one OPEN
        lock.on_connect()
        send(lock, junk)
        lock.on_disconnect()
        run(lock, conversation(lock, [holder], [kl.Open()], at=T0))
        collect(lock, after=lock.audit_log[-1].sequence)  # nothing new; marks the OPENs
    entries, gaps = collect(lock, after=0)
    assert gaps  # some collected entries were evicted: reported, not silent
    assert all(e.kind is not kl.AuditKind.REQUEST or e.sequence > 0 for e in entries)


async def test_the_platform_reports_every_gap_in_what_it_was_given() -> None:
    async with platform() as rig:
        lock = rig.lock()
        user = await rig.user()
        _, token = await rig.device(user, kl.generate_key())
        await rig.permission(user, lock.locking_device_id)
        blobs = [
            kl.sign_audit_entry(
                kl.AuditEntry(n, T0, kl.Command.OPEN, None, str(uuid.uuid4()), kl.ResultCode.OK),
                lock.key,
            )
            for n in (1, 2, 5, 9)
        ]
        answer = await rig.mobile(
            "POST",
            f"/mobile/locking-device/{lock.locking_device_id}/audit-log",
            token,
            json={"entries": [b64(b) for b in blobs]},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["gaps"] == [[3, 4], [6, 8]]
        assert rig.state.audit_gaps[lock.locking_device_id] == [(3, 4), (6, 8)]


# --- the property: no sequence of unauthenticated requests changes what a collector gets ------

_FOREIGN = credential(standalone_lock())  # another lock's grant


def _attack(lock: SimKeylessLock, holder: kl.Credential, kind: int, noise: bytes) -> bytes:
    """One unauthenticated request of a given kind, with fresh bytes in it; ``holder`` is a
    grant of this lock the attacker sniffed (not its private key)."""
    _HOLDER = kl.Credential(holder.grant, kl.generate_key())
    _GRANT = kl.verify_grant(holder.grant, CA_KEY.public_key())
    challenge = send(lock, kl.encode_hello())
    assert isinstance(challenge, kl.Challenge)
    nonce = challenge.nonce
    if kind == 0:  # a nonce the lock never issued
        return kl.encode_request(_HOLDER, _GRANT, command=kl.Command.OPEN, nonce=noise[:16])
    if kind == 1:  # the sniffed grant, a proof by another key
        return kl.encode_request(_HOLDER, _GRANT, command=kl.Command.OPEN, nonce=nonce)
    if kind == 2:  # a tampered grant
        tampered = bytearray(_HOLDER.grant)
        tampered[10 + noise[0] % 60] ^= 1 + noise[1] % 255
        body = kl.encode_request(_HOLDER, _GRANT, command=kl.Command.OPEN, nonce=nonce)
        return body.replace(_HOLDER.grant, bytes(tampered))
    if kind == 3:  # another lock's grant
        grant = kl.verify_grant(_FOREIGN.grant, CA_KEY.public_key())
        return kl.encode_request(_FOREIGN, grant, command=kl.Command.READ_AUDIT, nonce=nonce)
    # a revocation list nobody signed
    forged = kl.sign_revocation_list(kl.RevocationList(99, frozenset()), kl.generate_key())
    return kl.encode_request(
        _HOLDER, _GRANT, command=kl.Command.OPEN, nonce=nonce, revocations=forged
    )


def _fingerprint(entries: list[kl.AuditEntry]) -> list[tuple[object, ...]]:
    return [
        (e.operation, e.result, e.operating_device_id, e.key_id)
        for e in entries
        if e.kind is kl.AuditKind.REQUEST
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 4), st.binary(min_size=16, max_size=16)),
        max_size=6,
    )
)
def test_unauthenticated_requests_change_nothing_a_collector_gets_but_a_count(
    script: list[tuple[int, int, bytes]],
) -> None:
    """Between honest opens (slot = which gap), any unauthenticated requests: the collector
    gets the same authenticated entries as without them, plus counts that sum to them."""
    honest_runs = 4
    baseline = standalone_lock(limits=dataclasses.replace(kl.LIMITS, audit_capacity=12))
    attacked = standalone_lock(limits=dataclasses.replace(kl.LIMITS, audit_capacity=12))
    for lock in (baseline, attacked):
        holder = credential(lock)
        for slot in range(honest_runs):
            if lock is attacked:
                lock.on_connect()
                for at, kind, noise in script:
                    if at == slot:
                        answer = send(lock, _attack(lock, holder, kind, noise))
                        assert isinstance(answer, kl.Result)
                        assert answer.code in kl.UNAUTHENTICATED_REFUSALS
                lock.on_disconnect()
            run(lock, conversation(lock, [holder], [kl.Open()], at=T0))
    clean, clean_gaps = collect(baseline)
    got, gaps = collect(attacked)
    assert [f[:2] for f in _fingerprint(got)] == [f[:2] for f in _fingerprint(clean)]
    assert all(f[2] == DEVICE_ID for f in _fingerprint(got))
    assert gaps == clean_gaps == []
    counted = sum(e.count for e in got if e.kind is kl.AuditKind.UNAUTHENTICATED)
    assert counted == len([s for s in script if s[0] < honest_runs])
