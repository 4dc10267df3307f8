"""Decoders raise only blelock's protocol errors, certificates and CSRs included.

A Keyless lock certificate with an invalid X.509 version (``a0 03 02 01 02`` edited to
``a0 03 02 01 1e``) used to raise ``cryptography.x509.InvalidVersion`` out of
``verify_lock_certificate`` and ``KeylessConversation.receive``.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blelock.errors import ProtocolError, RemoteProtocolError
from blelock.protocol import dfu_package
from blelock.vendors.keyless import protocol as kl
from blelock.vendors.noke import protocol as noke
from simulators.keyless_lock import ca_signer
from tests.protocol.test_keyless import (
    CA_CERT,
    CA_KEY,
    LOCK_ID,
    NOW,
    conversation,
    credential,
    make_lock,
)

LOCK = make_lock()
VERSION_V3 = bytes.fromhex("a003020102")
CSR = kl.make_csr(kl.generate_key(), LOCK_ID)


def _bad_version(der: bytes) -> bytes:
    assert VERSION_V3 in der
    return der.replace(VERSION_V3, bytes.fromhex("a00302011e"), 1)


def test_an_invalid_certificate_version_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="lock certificate"):
        kl.verify_lock_certificate(_bad_version(LOCK.certificate), CA_CERT, at=NOW)


def test_a_certificate_whose_serial_is_not_positive_is_a_protocol_error() -> None:
    # RFC 5280 forbids it; cryptography warns today and will raise later: refused either way.
    der = bytearray(LOCK.certificate)
    serial = der.index(VERSION_V3) + len(VERSION_V3)
    assert der[serial] == 0x02  # the serialNumber INTEGER follows the version
    der[serial + 2] |= 0x80  # its sign bit: negative, same length
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RemoteProtocolError, match="RFC 5280"):
            kl.verify_lock_certificate(bytes(der), CA_CERT, at=NOW)


def test_a_conversation_refuses_a_certificate_with_an_invalid_version() -> None:
    conv = conversation([credential(LOCK.lock_key_id)], [kl.Open()])
    LOCK.on_connect()
    LOCK.on_subscribe(kl.NOTIFY_UUID, True)
    reassembler, edited, inbox = kl.Reassembler(), False, list[bytes]()

    def exchange() -> None:
        nonlocal edited
        while (action := conv.next_action()) is not None:
            if not isinstance(action, kl.Write):
                conv.receive(inbox.pop(0))
                continue
            for _, fragment in LOCK.on_write(kl.WRITE_UUID, action.data):
                if (message := reassembler.feed(fragment)) is not None:
                    if LOCK.certificate in message:
                        bad = _bad_version(LOCK.certificate)
                        message, edited = message.replace(LOCK.certificate, bad), True
                    inbox.extend(kl.fragment(message))

    try:
        with pytest.raises(RemoteProtocolError, match="lock certificate"):
            exchange()
    finally:
        LOCK.on_disconnect()
    assert edited and LOCK.opens == 0


def _mutations() -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.integers(min_value=0, max_value=10_000), st.integers(0, 255))


def _mutate(der: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(der)
    for at, value in edits:
        data[at % len(data)] = value
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(_mutations(), min_size=1, max_size=4), st.integers(0, 40))
def test_edited_certificates_and_csrs_raise_only_protocol_errors(
    edits: list[tuple[int, int]], cut: int
) -> None:
    for der in (LOCK.certificate, _bad_version(LOCK.certificate)):
        for candidate in (_mutate(der, edits), der[: len(der) - cut]):
            with contextlib.suppress(ProtocolError):
                kl.verify_lock_certificate(candidate, CA_CERT, at=NOW)
    signer = ca_signer(CA_KEY, CA_CERT, clock=lambda: NOW)
    for candidate in (_mutate(CSR, edits), CSR[: len(CSR) - cut], _bad_version_csr()):
        with contextlib.suppress(ProtocolError):
            signer(candidate)


def _bad_version_csr() -> bytes:
    # A PKCS#10 version is INTEGER 0 right after the info SEQUENCE header: make it 30.
    at = CSR.index(bytes.fromhex("020100"))
    return CSR[:at] + bytes.fromhex("02011e") + CSR[at + 3 :]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_every_other_parser_raises_only_protocol_errors(data: bytes) -> None:
    parsers = [
        noke.decode_notification,
        noke.Session.parse,
        lambda b: noke.split_commands(b.decode("latin-1")),
        lambda b: noke.session_from_hex(b.decode("latin-1")),
        lambda b: noke.open_server_packet(bytes(16), bytes(20), b),
        lambda b: kl.verify_lock_certificate(b, CA_CERT, at=NOW),
        lambda b: kl.verify_audit_entry(b, LOCK.cert),
        kl.decode_request,
        kl.decode_lock_message,
        lambda b: dfu_package.parse_init_packet(b),
    ]
    for parse in parsers:
        with contextlib.suppress(ProtocolError):
            parse(data)
