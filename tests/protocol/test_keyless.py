"""The Keyless stand-in protocol: conversations end to end, one refusal per broken rule, decoders
that raise nothing but ProtocolError, re-keying with primary/alternative keys, time update."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from blelock.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from blelock.vendors.keyless import protocol as kl
from simulators.keyless_lock import SimKeylessLock, ca_signer

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
LOCK_ID = "6f1c2a3e-8b7d-4c5e-9f00-112233445566"
DEVICE_ID = "0a0b0c0d-0e0f-4000-8000-000000000001"
CA_KEY = kl.generate_key()
CA_CERT = kl.make_platform_ca(
    CA_KEY, name="stand-in platform CA", not_before=NOW - 400 * 24 * HOUR,
    not_after=NOW + 4000 * 24 * HOUR,
)  # fmt: skip
SIGN_CSR = ca_signer(CA_KEY, CA_CERT, clock=lambda: NOW)
ALL_OPS = frozenset(kl.Operation)


def make_lock(**kwargs: object) -> SimKeylessLock:
    return SimKeylessLock.provision(
        mac="AA:BB:CC:00:00:01", locking_device_id=LOCK_ID, ca_cert=CA_CERT, sign_csr=SIGN_CSR,
        clock=lambda: NOW, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def credential(
    lock_key_id: bytes,
    *,
    operations: frozenset[kl.Operation] = frozenset({kl.Operation.OPEN}),
    not_before: datetime = NOW - HOUR,
    not_after: datetime = NOW + HOUR,
    locking_device_id: str = LOCK_ID,
    kind: kl.GrantKind = kl.GrantKind.OPERATING,
    key_id: str | None = None,
    signer: ec.EllipticCurvePrivateKey = CA_KEY,
) -> kl.Credential:
    holder = kl.generate_key()
    grant = kl.Grant(
        key_id=key_id or str(uuid.uuid4()),
        kind=kind,
        operating_device_id=DEVICE_ID if kind is kl.GrantKind.OPERATING else None,
        locking_device_id=locking_device_id,
        operations=operations,
        not_before=not_before,
        not_after=not_after,
        lock_key_id=lock_key_id,
        holder_public_key=kl.public_key_bytes(holder.public_key()),
    )
    return kl.Credential(kl.sign_grant(grant, signer), holder)


def conversation(
    credentials: Sequence[kl.Credential], steps: Sequence[kl.Step], **kwargs: object
) -> kl.KeylessConversation:
    return kl.KeylessConversation(
        ca_cert=CA_CERT, locking_device_id=LOCK_ID, credentials=credentials, steps=steps,
        now=NOW, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def run(
    lock: SimKeylessLock,
    conv: kl.KeylessConversation,
    rewrite: Callable[[bytes], bytes] | None = None,
) -> list[kl.Event]:
    """Drive the conversation against the lock in-process; every byte is a 20-byte fragment.
    ``rewrite`` sees each whole message from the lock (a man in the middle)."""
    lock.on_connect()
    lock.on_subscribe(kl.NOTIFY_UUID, True)
    inbox: list[bytes] = []
    middle = kl.Reassembler()
    try:
        while True:
            while (action := conv.next_action()) is not None:
                if isinstance(action, kl.Write):
                    assert len(action.data) <= kl.LIMITS.att_payload
                    notes = lock.on_write(kl.WRITE_UUID, action.data)
                    assert all(len(v) <= kl.LIMITS.att_payload for _, v in notes)
                    for _, value in notes:
                        if rewrite is None:
                            inbox.append(value)
                        elif (message := middle.feed(value)) is not None:
                            inbox.extend(kl.fragment(rewrite(message)))
                else:
                    conv.receive(inbox.pop(0))
            if not conv.awaiting_statement:
                break
            conv.provide_statement(b"")  # no platform here: the lock decides
    finally:
        lock.on_disconnect()
    assert not inbox
    return [e for e in conv.events if not isinstance(e, kl.Identified | kl.StatementNeeded)]


def test_open_round_trip_is_logged_and_signed() -> None:
    lock = make_lock()
    events = run(lock, conversation([credential(lock.lock_key_id)], [kl.Open()]))
    assert len(events) == 1 and isinstance(events[0], kl.Opened)
    assert (lock.opens, len(lock.audit_log)) == (1, 1)
    entry = lock.audit_log[0]
    assert (entry.sequence, entry.operation, entry.result) == (1, kl.Command.OPEN, kl.ResultCode.OK)
    assert entry.operating_device_id == DEVICE_ID and entry.key_id == events[0].key_id
    assert kl.verify_audit_entry(entry.blob, lock.cert) == entry


def test_the_companion_refuses_a_lock_its_ca_did_not_certify() -> None:
    other_ca_key = kl.generate_key()
    other_ca = kl.make_platform_ca(
        other_ca_key, name="rogue", not_before=NOW - HOUR, not_after=NOW + HOUR
    )
    impostor = SimKeylessLock.provision(
        mac="AA:BB:CC:00:00:09", locking_device_id=LOCK_ID, ca_cert=other_ca,
        sign_csr=ca_signer(other_ca_key, other_ca, clock=lambda: NOW), clock=lambda: NOW,
    )  # fmt: skip
    conv = conversation([credential(impostor.lock_key_id)], [kl.Open()])
    with pytest.raises(RemoteProtocolError, match="does not chain"):
        run(impostor, conv)
    assert impostor.opens == 0 and conv.done


def test_the_companion_refuses_a_result_signed_by_another_key() -> None:
    def resign(message: bytes) -> bytes:
        decoded = kl.decode_lock_message(message)
        if not isinstance(decoded, kl.Result):
            return message
        return kl.encode_result(
            kl.generate_key(), command=decoded.command, code=decoded.code,
            request_nonce=decoded.request_nonce, next_nonce=decoded.next_nonce,
            lock_time=decoded.lock_time, payload=decoded.payload,
        )  # fmt: skip

    lock = make_lock()
    conv = conversation([credential(lock.lock_key_id)], [kl.Open()])
    with pytest.raises(RemoteProtocolError, match="not signed"):
        run(lock, conv, rewrite=resign)
    assert conv.done and lock.opens == 1 and not any(isinstance(e, kl.Opened) for e in conv.events)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("expired", kl.ResultCode.EXPIRED),
        ("not yet valid", kl.ResultCode.NOT_YET_VALID),
        ("another lock", kl.ResultCode.WRONG_LOCK),
        ("wrong operation", kl.ResultCode.WRONG_OPERATION),
        ("tampered", kl.ResultCode.BAD_SIGNATURE),
        ("not the platform", kl.ResultCode.BAD_SIGNATURE),
        ("revoked", kl.ResultCode.REVOKED),
        ("old key generation", kl.ResultCode.WRONG_LOCK_KEY),
        ("not the holder", kl.ResultCode.BAD_PROOF),
    ],
)
def test_each_broken_rule_has_its_own_refusal(rule: str, expected: kl.ResultCode) -> None:
    lock = make_lock()
    key = lock.lock_key_id
    kwargs: dict[str, object] = {}
    good = credential(key)
    cred = {
        "expired": lambda: credential(key, not_before=NOW - 3 * HOUR, not_after=NOW - HOUR),
        "not yet valid": lambda: credential(key, not_before=NOW + HOUR, not_after=NOW + 2 * HOUR),
        "another lock": lambda: credential(key, locking_device_id=str(uuid.uuid4())),
        "wrong operation": lambda: credential(
            key, operations=frozenset({kl.Operation.UPDATE_TIME})
        ),
        "tampered": lambda: kl.Credential(good.grant, good.private_key),
        "not the platform": lambda: credential(key, signer=kl.generate_key()),
        "revoked": lambda: good,
        "old key generation": lambda: credential(bytes(32)),
        "not the holder": lambda: kl.Credential(good.grant, kl.generate_key()),
    }[rule]()
    if rule == "revoked":
        revoked = kl.verify_grant(good.grant, CA_KEY.public_key()).key_id
        kwargs["revocations"] = kl.sign_revocation_list(
            kl.RevocationList(3, frozenset({revoked})), CA_KEY
        )
    if rule == "tampered":
        # Build the conversation with the intact grant, then flip a bit of what goes on the air.
        conv = conversation([cred], [kl.Open()])
        grant = bytearray(cred.grant)
        grant[40] ^= 0x01
        conv._credentials = [
            (kl.Credential(bytes(grant), cred.private_key), conv._credentials[0][1])
        ]
    elif rule in ("not the platform",):
        with pytest.raises(LocalProtocolError):  # the companion itself spots a forged grant
            conversation([cred], [kl.Open()])
        conv = conversation([good], [kl.Open()])
        conv._credentials = [(cred, conv._credentials[0][1])]
    else:
        conv = conversation([cred], [kl.Open()], **kwargs)
    events = run(lock, conv)
    assert events == [kl.Refused(kl.Command.OPEN, expected)]
    assert lock.opens == 0 and lock.state == "locked"
    assert lock.refusals == {expected: 1}
    if expected in kl.UNAUTHENTICATED_REFUSALS:  # counted, not logged one by one (issue 19)
        assert lock.audit_log == [] and lock.unlogged_refusals == 1
    else:
        assert [e.result for e in lock.audit_log] == [expected]


def test_revocation_list_is_kept_only_when_newer() -> None:
    lock = make_lock()
    newer = kl.sign_revocation_list(kl.RevocationList(5, frozenset()), CA_KEY)
    older = kl.sign_revocation_list(kl.RevocationList(4, frozenset({str(uuid.uuid4())})), CA_KEY)
    run(lock, conversation([credential(lock.lock_key_id)], [kl.Open()], revocations=newer))
    run(lock, conversation([credential(lock.lock_key_id)], [kl.Open()], revocations=older))
    assert lock.revocations.version == 5 and lock.revocations.key_ids == frozenset()
    assert lock.opens == 2


def test_a_forged_revocation_list_is_refused() -> None:
    lock = make_lock()
    forged = kl.sign_revocation_list(kl.RevocationList(9, frozenset()), kl.generate_key())
    events = run(
        lock, conversation([credential(lock.lock_key_id)], [kl.Open()], revocations=forged)
    )
    assert events == [kl.Refused(kl.Command.OPEN, kl.ResultCode.BAD_REVOCATION_LIST)]
    assert lock.revocations.version == 0


def test_a_replayed_request_is_refused_as_stale() -> None:
    lock = make_lock()
    conv = conversation([credential(lock.lock_key_id)], [kl.Open()])
    sent: list[bytes] = []
    lock.on_connect()
    inbox: list[bytes] = []
    while (action := conv.next_action()) is not None:
        if isinstance(action, kl.Write):
            sent.append(action.data)
            inbox.extend(v for _, v in lock.on_write(kl.WRITE_UUID, action.data))
        else:
            conv.receive(inbox.pop(0))
    lock.on_disconnect()
    lock.on_connect()
    notes = [n for data in sent for n in lock.on_write(kl.WRITE_UUID, data)]
    reassembler = kl.Reassembler()
    messages = [m for _, v in notes if (m := reassembler.feed(v)) is not None]
    result = kl.decode_lock_message(messages[-1])
    assert isinstance(result, kl.Result) and result.code is kl.ResultCode.STALE_NONCE
    assert lock.opens == 1


def test_audit_collection_pages_without_gaps_or_duplicates() -> None:
    lock = make_lock()
    for _ in range(5):
        run(lock, conversation([credential(lock.lock_key_id)], [kl.Open()]))
    for _ in range(6):
        expired = credential(lock.lock_key_id, not_before=NOW - 5 * HOUR, not_after=NOW - 2 * HOUR)
        run(lock, conversation([expired], [kl.Open()]))  # authenticated refusals are logged too
    events = run(lock, conversation([credential(lock.lock_key_id)], [kl.CollectAudit(0)]))
    pages = [e for e in events if isinstance(e, kl.AuditEntries)]
    assert [len(p.entries) for p in pages] == [8, 3] and [p.more for p in pages] == [True, False]
    sequences = [entry.sequence for page in pages for entry in page.entries]
    assert sequences == list(range(1, 12))
    assert len(lock.audit_log) == 11  # reading the log does not write it
    since = run(lock, conversation([credential(lock.lock_key_id)], [kl.CollectAudit(9)]))
    assert [e.sequence for p in since if isinstance(p, kl.AuditEntries) for e in p.entries] == [
        10,
        11,
    ]


def test_rekeying_in_two_visits_with_primary_and_alternative_offline_keys() -> None:
    lock = make_lock()
    old_key_id, old_cert = lock.lock_key_id, lock.certificate
    old_grant = credential(old_key_id)
    (csr_event,) = run(lock, conversation([old_grant], [kl.StartRekey()]))
    assert isinstance(csr_event, kl.CsrReady) and lock.pending_key is not None
    again = run(lock, conversation([credential(old_key_id)], [kl.StartRekey()]))
    assert isinstance(again[0], kl.CsrReady) and lock.rekeys_started == 1  # same pending key
    first_csr = x509.load_der_x509_csr(csr_event.csr)
    assert x509.load_der_x509_csr(again[0].csr).public_key() == first_csr.public_key()
    new_cert = SIGN_CSR(csr_event.csr)
    new_key_id = kl.key_id_of(x509.load_der_x509_certificate(new_cert).public_key())  # type: ignore[arg-type]
    assert lock.lock_key_id == old_key_id  # still the old key until visit two
    offline_id = str(uuid.uuid4())
    primary = credential(new_key_id, kind=kl.GrantKind.OFFLINE, key_id=offline_id)
    alternative = credential(old_key_id, kind=kl.GrantKind.OFFLINE, key_id=offline_id)
    # between the visits, the alternative opens
    assert isinstance(run(lock, conversation([primary, alternative], [kl.Open()]))[0], kl.Opened)
    # a certificate for another key is refused
    stray = SIGN_CSR(kl.make_csr(kl.generate_key(), LOCK_ID))
    refused = run(lock, conversation([credential(old_key_id)], [kl.InstallCertificate(stray)]))
    assert refused == [
        kl.Refused(kl.Command.INSTALL_CERTIFICATE, kl.ResultCode.CERTIFICATE_MISMATCH)
    ]
    # visit two: install, then open with the same offline key pair in the same conversation
    events = run(
        lock,
        conversation([alternative, primary], [kl.InstallCertificate(new_cert), kl.Open()]),
    )
    assert isinstance(events[0], kl.CertificateInstalled) and events[0].lock_key_id == new_key_id
    assert isinstance(events[1], kl.Opened)
    assert lock.lock_key_id == new_key_id and lock.pending_key is None
    assert run(lock, conversation([old_grant], [kl.Open()])) == [
        kl.Refused(kl.Command.OPEN, kl.ResultCode.WRONG_LOCK_KEY)
    ]
    assert isinstance(run(lock, conversation([credential(new_key_id)], [kl.Open()]))[0], kl.Opened)
    no_pending = run(
        lock, conversation([credential(new_key_id)], [kl.InstallCertificate(new_cert)])
    )
    assert no_pending == [kl.Refused(kl.Command.INSTALL_CERTIFICATE, kl.ResultCode.NO_PENDING_KEY)]
    # the whole log, across both key generations, verifies with the two certificates
    log = run(
        lock,
        conversation(
            [credential(new_key_id)], [kl.CollectAudit(0)], earlier_certificates=[old_cert]
        ),
    )
    entries = [e for page in log if isinstance(page, kl.AuditEntries) for e in page.entries]
    assert [e.sequence for e in entries] == list(range(1, len(lock.audit_log) + 1))


def test_update_time_repairs_a_drifted_clock() -> None:
    lock = make_lock(clock_drift_s=2 * 24 * 3600)
    opener = credential(lock.lock_key_id)
    assert run(lock, conversation([opener], [kl.Open()])) == [
        kl.Refused(kl.Command.OPEN, kl.ResultCode.EXPIRED)
    ]
    minutes = timedelta(minutes=5)  # time keys are short (issue 19)
    setter = credential(
        lock.lock_key_id, operations=ALL_OPS, not_before=NOW - minutes, not_after=NOW + minutes
    )
    events = run(lock, conversation([setter], [kl.SetTime(NOW), kl.Open()]))
    assert isinstance(events[0], kl.TimeSet)
    assert events[0].previous == NOW + 48 * HOUR and events[0].now == NOW
    assert isinstance(events[1], kl.Opened) and lock.now() == NOW and lock.time_updates == 1


def test_update_time_needs_the_operation_and_a_time_inside_the_grant() -> None:
    lock = make_lock()
    opener = credential(lock.lock_key_id)
    assert run(lock, conversation([opener], [kl.SetTime(NOW)])) == [
        kl.Refused(kl.Command.UPDATE_TIME, kl.ResultCode.WRONG_OPERATION)
    ]
    setter = credential(lock.lock_key_id, operations=ALL_OPS)
    assert run(lock, conversation([setter], [kl.SetTime(NOW + 5 * HOUR)])) == [
        kl.Refused(kl.Command.UPDATE_TIME, kl.ResultCode.EXPIRED)
    ]
    assert lock.now() == NOW


def test_update_time_never_goes_below_the_trusted_floor() -> None:
    lock = make_lock()
    recent = credential(lock.lock_key_id, not_before=NOW, not_after=NOW + HOUR)
    assert isinstance(run(lock, conversation([recent], [kl.Open()]))[0], kl.Opened)
    then, minutes = NOW - 20 * HOUR, timedelta(minutes=5)
    old_setter = credential(
        lock.lock_key_id, operations=ALL_OPS, not_before=then - minutes, not_after=then + minutes
    )
    assert run(lock, conversation([old_setter], [kl.SetTime(NOW - 20 * HOUR)])) == [
        kl.Refused(kl.Command.UPDATE_TIME, kl.ResultCode.TIME_REFUSED)
    ]


def test_grant_and_revocation_encodings_round_trip() -> None:
    holder = kl.generate_key()
    grant = kl.Grant(
        key_id=str(uuid.uuid4()), kind=kl.GrantKind.OFFLINE, operating_device_id=None,
        locking_device_id=LOCK_ID, operations=ALL_OPS, not_before=NOW, not_after=NOW + HOUR,
        lock_key_id=bytes(range(32)), holder_public_key=kl.public_key_bytes(holder.public_key()),
    )  # fmt: skip
    assert kl.verify_grant(kl.sign_grant(grant, CA_KEY), CA_KEY.public_key()) == grant
    revocations = kl.RevocationList(7, frozenset({str(uuid.uuid4()), str(uuid.uuid4())}))
    blob = kl.sign_revocation_list(revocations, CA_KEY)
    assert kl.verify_revocation_list(blob, CA_KEY.public_key()) == revocations
    with pytest.raises(RemoteProtocolError):
        kl.verify_revocation_list(blob, kl.generate_key().public_key())


def test_fragments_round_trip_and_the_reassembler_is_bounded() -> None:
    message = kl.encode_challenge(
        bytes(16), lock_time=NOW, audit_last_sequence=3, revocation_version=1,
        certificate=bytes(300),
    )  # fmt: skip
    parts = kl.fragment(message)
    assert all(len(p) <= 20 for p in parts) and len(parts) == -(-len(message) // 19)
    reassembler = kl.Reassembler()
    assert [reassembler.feed(p) for p in parts][-1] == message
    reassembler.feed(parts[0])
    with pytest.raises(RemoteProtocolError, match="out of order"):
        reassembler.feed(parts[2])
    assert reassembler.idle
    endless = kl.Reassembler()
    fits = kl.LIMITS.max_message_size // 19
    for index in range(fits):
        assert endless.feed(bytes([0x80 if index == 0 else index & 0x3F]) + bytes(19)) is None
    with pytest.raises(RemoteProtocolError, match="longer"):
        endless.feed(bytes([fits & 0x3F]) + bytes(19))
    assert endless.idle


def test_advert_carries_the_locking_device_id() -> None:
    lock = make_lock()
    advert = lock.advertisement()
    assert advert is not None
    found = kl.parse_keyless_advert(
        local_name=advert.local_name, manufacturer_data=advert.manufacturer_data,
        service_uuids=advert.service_uuids, rssi=-50,
    )  # fmt: skip
    assert found == kl.KeylessAdvert(LOCK_ID, advert.local_name or "", False, False, -50)
    assert kl.parse_keyless_advert(local_name="NOKE3K_C7E6B0C67538", manufacturer_data={}) is None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=24), max_size=12))
def test_random_fragments_raise_only_protocol_errors(chunks: list[bytes]) -> None:
    reassembler = kl.Reassembler()
    for chunk in chunks:
        try:
            message = reassembler.feed(chunk)
        except RemoteProtocolError:
            continue
        if message is not None:
            for decode in (kl.decode_request, kl.decode_lock_message):
                with contextlib.suppress(RemoteProtocolError):
                    decode(message)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    envelope = bytes([data[0] if data else 0]) + len(data[1:]).to_bytes(2, "big") + data[1:]
    decoders = [
        kl.decode_request,
        kl.decode_lock_message,
        lambda b: kl.verify_grant(b, CA_KEY.public_key()),
        lambda b: kl.verify_revocation_list(b, CA_KEY.public_key()),
        lambda b: kl.verify_audit_entry(b, CA_CERT),
        kl.parse_time_argument,
        kl.load_public_key_bytes,
    ]
    for decode in decoders:
        for candidate in (data, envelope, bytes([1, 2, 0x81]) + envelope):
            with contextlib.suppress(ProtocolError):
                decode(candidate)
    adverts = {kl.COMPANY_ID: data[:18]}
    kl.parse_keyless_advert(local_name=data.decode("latin-1"), manufacturer_data=adverts)


# --- issue 17, item 9: what the companion refuses in an audit page -----------------------


def _lock_with_entries(count: int) -> SimKeylessLock:
    lock = make_lock()
    for _ in range(count):
        run(lock, conversation([credential(lock.lock_key_id)], [kl.Open()]))
    return lock


@pytest.mark.parametrize("order", [[0, 0, 1, 2], [1, 0, 2], [0, 2, 1], [0, 1, 2, 1]], ids=str)
def test_an_audit_page_that_repeats_or_reorders_sequences_is_refused(order: list[int]) -> None:
    lock = _lock_with_entries(3)
    entries = list(lock.audit_log)
    lock.audit_log[:] = [entries[i] for i in order]
    with pytest.raises(RemoteProtocolError, match="repeated or reordered audit entries"):
        run(lock, conversation([credential(lock.lock_key_id)], [kl.CollectAudit(0)]))


def _unsigned(blob: bytes) -> bytes:
    """The entry's body without the lock's signature (its length prefix kept)."""
    return blob[: 2 + int.from_bytes(blob[:2], "big")]


@pytest.mark.parametrize(
    ("unsign", "why"),
    [
        (_unsigned, "the signature is 0 bytes"),
        (lambda blob: _unsigned(blob) + bytes(64), "the lock's signature does not hold"),
    ],
    ids=["no-signature", "zeroed-signature"],
)
def test_the_companion_refuses_a_locks_unsigned_audit_entry(
    unsign: Callable[[bytes], bytes], why: str
) -> None:
    import dataclasses

    lock = _lock_with_entries(2)
    second = lock.audit_log[1]
    assert kl.verify_audit_entry(second.blob, lock.cert) == second  # signed as it was
    lock.audit_log[1] = dataclasses.replace(second, blob=unsign(second.blob))
    with pytest.raises(RemoteProtocolError, match=why):
        run(lock, conversation([credential(lock.lock_key_id)], [kl.CollectAudit(0)]))
