"""The simulated Keyless lock through its Peripheral methods, as the radio drives it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from blelock.vendors.keyless import protocol as kl
from simulators.keyless_lock import SimKeylessLock, ca_signer
from simulators.radio import GattRefused

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LOCK_ID = "6f1c2a3e-8b7d-4c5e-9f00-112233445566"
CA_KEY = kl.generate_key()
CA_CERT = kl.make_platform_ca(
    CA_KEY, name="ca", not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=999)
)


def make_lock() -> SimKeylessLock:
    return SimKeylessLock.provision(
        mac="AA:BB:CC:00:00:02",
        locking_device_id=LOCK_ID,
        ca_cert=CA_CERT,
        sign_csr=ca_signer(CA_KEY, CA_CERT, clock=lambda: NOW),
        clock=lambda: NOW,
    )


def exchange(lock: SimKeylessLock, message: bytes) -> kl.Challenge | kl.Result | kl.Malformed:
    notes = [n for part in kl.fragment(message) for n in lock.on_write(kl.WRITE_UUID, part)]
    assert notes and all(c == kl.NOTIFY_UUID and len(v) <= 20 for c, v in notes)
    reassembler = kl.Reassembler()
    messages = [m for _, v in notes if (m := reassembler.feed(v)) is not None]
    assert len(messages) == 1
    return kl.decode_lock_message(messages[0])


def hello(lock: SimKeylessLock) -> kl.Challenge:
    lock.on_connect()
    lock.on_subscribe(kl.NOTIFY_UUID, True)
    challenge = exchange(lock, kl.encode_hello())
    assert isinstance(challenge, kl.Challenge)
    return challenge


def grant_for(lock: SimKeylessLock) -> tuple[kl.Credential, kl.Grant]:
    holder = kl.generate_key()
    grant = kl.Grant(
        key_id=str(uuid.uuid4()),
        kind=kl.GrantKind.OFFLINE,
        operating_device_id=None,
        locking_device_id=LOCK_ID,
        operations=frozenset({kl.Operation.OPEN}),
        not_before=NOW - timedelta(hours=1),
        not_after=NOW + timedelta(hours=1),
        lock_key_id=lock.lock_key_id,
        holder_public_key=kl.public_key_bytes(holder.public_key()),
    )
    return kl.Credential(kl.sign_grant(grant, CA_KEY), holder), grant


def test_advertises_its_locking_device_id_and_one_service() -> None:
    lock = make_lock()
    advert = lock.advertisement()
    assert advert is not None and advert.local_name == kl.local_name_for(LOCK_ID)
    found = kl.parse_keyless_advert(
        local_name=advert.local_name, manufacturer_data=advert.manufacturer_data
    )
    assert found is not None and found.locking_device_id == LOCK_ID and not found.rekey_pending
    (service,) = lock.services()
    assert service.uuid == kl.SERVICE_UUID
    assert {c.uuid for c in service.characteristics} == {kl.WRITE_UUID, kl.NOTIFY_UUID}


def test_each_hello_gets_a_fresh_nonce_and_the_certificate() -> None:
    lock = make_lock()
    first, second = hello(lock), hello(lock)
    assert first.nonce != second.nonce and len(first.nonce) == kl.LIMITS.nonce_size
    cert = kl.verify_lock_certificate(first.certificate, CA_CERT, at=NOW)
    assert kl.certificate_lock_id(cert) == LOCK_ID and first.lock_time == NOW
    assert lock.connections == 2


def test_an_open_request_opens_and_answers_signed_with_a_new_nonce() -> None:
    lock = make_lock()
    challenge = hello(lock)
    credential, grant = grant_for(lock)
    request = kl.encode_request(credential, grant, command=kl.Command.OPEN, nonce=challenge.nonce)
    result = exchange(lock, request)
    assert isinstance(result, kl.Result) and result.code is kl.ResultCode.OK
    assert result.request_nonce == challenge.nonce and result.next_nonce != challenge.nonce
    assert (lock.opens, lock.state, lock.audit_log[-1].key_id) == (1, "unlocked", grant.key_id)
    again = exchange(lock, request)  # the nonce was used once
    assert isinstance(again, kl.Result) and again.code is kl.ResultCode.STALE_NONCE
    assert lock.opens == 1 and [e.sequence for e in lock.audit_log] == [1, 2]
    lock.on_disconnect()
    assert lock.state == "locked"


def test_a_request_before_hello_is_stale() -> None:
    lock = make_lock()
    lock.on_connect()
    credential, grant = grant_for(lock)
    request = kl.encode_request(credential, grant, command=kl.Command.OPEN, nonce=bytes(16))
    result = exchange(lock, request)
    assert isinstance(result, kl.Result) and result.code is kl.ResultCode.STALE_NONCE
    assert lock.refusals == {kl.ResultCode.STALE_NONCE: 1}


def test_garbage_gets_a_malformed_answer_and_the_lock_carries_on() -> None:
    lock = make_lock()
    hello(lock)
    notes = lock.on_write(kl.WRITE_UUID, bytes([0x40, 1, 2, 3]))
    reassembler = kl.Reassembler()
    answers = [m for _, v in notes if (m := reassembler.feed(v)) is not None]
    assert [kl.decode_lock_message(m) for m in answers] == [kl.Malformed()]
    assert lock.malformed == 1
    assert isinstance(exchange(lock, kl.encode_hello()), kl.Challenge)


def test_clock_drift_is_the_locks_own() -> None:
    lock = make_lock()
    lock.clock_drift_s = -3 * 3600
    challenge = hello(lock)
    credential, grant = grant_for(lock)
    request = kl.encode_request(credential, grant, command=kl.Command.OPEN, nonce=challenge.nonce)
    result = exchange(lock, request)
    assert isinstance(result, kl.Result) and result.code is kl.ResultCode.NOT_YET_VALID
    assert result.lock_time == NOW - timedelta(hours=3)


def test_gatt_refuses_what_the_lock_does_not_offer() -> None:
    lock = make_lock()
    lock.on_connect()
    with pytest.raises(GattRefused):
        lock.on_read(kl.NOTIFY_UUID)
    with pytest.raises(GattRefused):
        lock.on_write(kl.NOTIFY_UUID, b"\xc0\x01\x00\x00")
    with pytest.raises(GattRefused):
        lock.on_subscribe(kl.WRITE_UUID, True)


def test_rekey_pending_shows_in_the_advert() -> None:
    lock = make_lock()
    challenge = hello(lock)
    credential, grant = grant_for(lock)
    request = kl.encode_request(
        credential, grant, command=kl.Command.START_REKEY, nonce=challenge.nonce
    )
    result = exchange(lock, request)
    assert isinstance(result, kl.Result) and result.code is kl.ResultCode.OK
    advert = lock.advertisement()
    assert advert is not None
    found = kl.parse_keyless_advert(
        local_name=advert.local_name, manufacturer_data=advert.manufacturer_data
    )
    assert found is not None and found.rekey_pending
