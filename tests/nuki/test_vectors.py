"""Every public test vector of Nuki's Smart Lock API (research notes §B.1), against the
protocol module: keys, shared key, authenticators, CRCs, whole pairing frames, and the
encrypted frames of the "Perform unlock" example (with the forum's one-digit typo fix)."""

from __future__ import annotations

import pytest
from nacl.secret import SecretBox

from blelock.errors import RemoteProtocolError
from blelock.vendors.nuki import protocol as nuki

h = bytes.fromhex
CLIENT_SK = h("8CAA54672307BFFDF5EA183FC607158D2011D008ECA6A1088614FF0853A5AA07")
CLIENT_PK = h("F88127CCF48023B5CBE9101D24BAA8A368DA94E8C2E3CDE2DED29CE96AB50C15")
LOCK_PK = h("2FE57DA347CD62431528DAAC5FBB290730FFF684AFC4CFC2ED90995F58CB3B74")
SHARED = h("217FCB0F18CAF284E9BDEA0B94B83B8D10867ED706BFDEDBD2381F4CB3B8F730")
LOCK_NONCE_1 = h("6CD4163D159050C798553EAA57E278A579AFFCBC56F09FC57FE879E51C42DF17")
LOCK_NONCE_2 = h("E0742CFEA39CB46109385BF91286A3C02F40EE86B0B62FC34033094DE41E2C0D")
CLIENT_NONCE = h("52AFE0A664B4E9B56DC6BD4CB718A6C9FED6BE17A7411072AA0D315378140577")
UNLOCK_CHALLENGE_CHUNKS = [
    h("99C8613A9F6AB6D3FB0399D37AD38C5C003AC139"),
    h("B1567BC102000000380028CDCC668C08DA47BF32"),  # "…CC66" + the missing "8"
    h("3BF9371EBF068F6D480438563660780A4234D9A2"),
    h("3794E305EE37878874EDE106A0BBFCF5B60E0C2E"),
    h("2BA17248A02B"),
]
UNLOCK_CHALLENGE = h("57D95521BEA186B5A9244F025737924C5B7E33592D0614D5F6EF2E2F142C6D4B")


def test_crc_is_ccitt_false() -> None:
    assert nuki.crc16(b"123456789") == 0x29B1


def test_request_public_key_frame() -> None:
    assert nuki.encode_plain(nuki.Command.REQUEST_DATA, b"\x03\x00") == h("0100030027A7")


@pytest.mark.parametrize(
    ("command", "payload", "crc"),
    [
        (nuki.Command.PUBLIC_KEY, LOCK_PK, "9DB9"),
        (nuki.Command.PUBLIC_KEY, CLIENT_PK, "9241"),
        (nuki.Command.CHALLENGE, LOCK_NONCE_1, "C3DF"),
        (nuki.Command.CHALLENGE, LOCK_NONCE_2, "7FE1"),
        (nuki.Command.STATUS, b"\x00", "9DD7"),
    ],
)
def test_frame_crcs(command: nuki.Command, payload: bytes, crc: str) -> None:
    frame = nuki.encode_plain(command, payload)
    assert frame[-2:] == h(crc)
    assert nuki.decode_plain(frame) == nuki.Message(command, payload)


def test_a_bad_crc_is_refused() -> None:
    frame = bytearray(nuki.encode_plain(nuki.Command.CHALLENGE, LOCK_NONCE_1))
    frame[5] ^= 1
    with pytest.raises(RemoteProtocolError, match="CRC"):
        nuki.decode_plain(bytes(frame))


def test_keys_and_shared_key() -> None:
    assert nuki.keypair_from_secret(CLIENT_SK).public == CLIENT_PK
    assert nuki.shared_key(LOCK_PK, CLIENT_SK) == SHARED


def test_authorization_authenticator() -> None:
    mac = nuki.authenticator(SHARED, CLIENT_PK, LOCK_PK, LOCK_NONCE_1)
    assert mac == h("B09A0D3979A029E5FD027B519EAA200BC14AD3E163D3BE4563843E021073BCB1")
    frame = nuki.encode_plain(nuki.Command.AUTHORIZATION_AUTHENTICATOR, mac)
    assert frame[-2:] == h("C357")


def _pairing(name: str, id_type: int, app_id: int, client_nonce: bytes) -> nuki.PairingExchange:
    """A pairing exchange run with the example's keys and nonces, up to AUTHORIZATION_DATA."""
    exchange = nuki.PairingExchange(
        nuki.PAIRING_CHAR,
        nuki.keypair_from_secret(CLIENT_SK),
        app_id=app_id,
        name=name,
        id_type=id_type,
        random=lambda size: client_nonce if size == 32 else bytes(range(size)),
    )
    first = exchange.next_action()
    assert first is not None and first.data == h("0100030027A7")
    exchange.receive(nuki.encode_plain(nuki.Command.PUBLIC_KEY, LOCK_PK))
    sent = exchange.next_action()
    assert sent is not None and sent.data == h(f"0300{CLIENT_PK.hex()}9241")
    exchange.receive(nuki.encode_plain(nuki.Command.CHALLENGE, LOCK_NONCE_1))
    sent = exchange.next_action()
    assert sent is not None
    assert sent.data == h(
        "0500B09A0D3979A029E5FD027B519EAA200BC14AD3E163D3BE4563843E021073BCB1C357"
    )
    exchange.receive(nuki.encode_plain(nuki.Command.CHALLENGE, LOCK_NONCE_2))
    return exchange


def test_authorization_data_app_example() -> None:
    exchange = _pairing("Marc (Test)", 0, 0, CLIENT_NONCE)
    sent = exchange.next_action()
    assert sent is not None
    assert sent.data == h(
        "0600CF1B9E7801E3196E6594E76D57908EE500AAD5C33F4B6E0BBEA0DDEF82967BFC00000000004D61726320"
        "28546573742900000000000000000000000000000000000000000052AFE0A664B4E9B56DC6BD4CB718A6C9"
        "FED6BE17A7411072AA0D31537814057769F2"
    )


def test_authorization_data_fob_example() -> None:
    # The vendor's fob example pads its name with spaces, then one zero byte.
    exchange = _pairing("Open Nuki Fob 5FC6937B" + " " * 9, 2, 0x5FC6937B, h("7b93c65f") * 8)
    sent = exchange.next_action()
    assert sent is not None
    assert sent.data == h(
        "0600c8dd9f1a75de7a09100dcef9745b350d4005f54c682f5edbc08251d8cef04a2e027b93c65f4f70656e"
        "204e756b6920466f62203546433639333742202020202020202020007b93c65f7b93c65f7b93c65f7b93"
        "c65f7b93c65f7b93c65f7b93c65f7b93c65fae5b"
    )


AUTHORIZATION_ID = h(
    "07003A270A2E453443C3790E657CEBE634B03F0102F45681B4067C661D46E6E15EDF0200000083B33643C6D9"
    "7EF77ED51C02A277CBF7EA479915982F13C61D997A56678AD77791BFA7E95229A3DD34F87132BF3E3C97DB9F"
)


def test_authorization_id_and_confirmation() -> None:
    exchange = _pairing("Marc (Test)", 0, 0, CLIENT_NONCE)
    exchange.next_action()
    # Delivered as the example shows it: 20-byte notifications, reassembled before the CRC.
    for chunk in nuki.fragment(AUTHORIZATION_ID):
        exchange.receive(chunk)
    sent = exchange.next_action()
    assert sent is not None
    assert sent.data == h(
        "1E003A41B91A66FBC4D22EFEFBB7272140829695A3917433D5BEB981B76166D13F8A02000000CDF5"
    )
    (event,) = exchange.receive(h("0E00009DD7"))
    assert isinstance(event, nuki.Paired)
    assert event.credentials.auth_id == 2 and event.credentials.key == SHARED
    assert exchange.next_action() is None


def test_a_tampered_authorization_id_is_refused() -> None:
    exchange = _pairing("Marc (Test)", 0, 0, CLIENT_NONCE)
    exchange.next_action()
    body = bytearray(AUTHORIZATION_ID[:-2])
    body[10] ^= 0xFF
    with pytest.raises(RemoteProtocolError, match="authenticate"):
        exchange.receive(nuki.encode_plain(body[0] | body[1] << 8, bytes(body[2:])))


def test_encrypted_request_challenge_example() -> None:
    nonce = h("88FDEFD7F941B63C242B7F84B3D786886340A4A8B1C1EAA0")
    assert nuki.seal(SHARED, 2, nuki.Command.REQUEST_DATA, b"\x04\x00", nonce) == h(
        "88FDEFD7F941B63C242B7F84B3D786886340A4A8B1C1EAA0020000001A00066819A2956E6A79AF6ED66D"
        "257B276715F51F63A8BEB9ED0D47"
    )


def test_encrypted_challenge_example_reassembled() -> None:
    frames = nuki.Reassembler(encrypted=True)
    got: list[bytes] = []
    for chunk in UNLOCK_CHALLENGE_CHUNKS:
        got += frames.feed(chunk)
    (frame,) = got
    assert len(frame) == 30 + 56
    sealed = nuki.open_sealed(SHARED, frame)
    assert sealed.auth_id == 2
    assert sealed.message == nuki.Message(nuki.Command.CHALLENGE, UNLOCK_CHALLENGE)


def test_encrypted_lock_action_example() -> None:
    nonce = h("19467990B69FFBE3D484A5882C995449E3EBC878712152E7")
    request = nuki.lock_action(nuki.LockAction.UNLOCK, app_id=0)
    payload = request.payload(UNLOCK_CHALLENGE)
    assert payload == h(
        "01000000000057D95521BEA186B5A9244F025737924C5B7E33592D0614D5F6EF2E2F142C6D4B"
    )
    assert nuki.seal(SHARED, 2, nuki.Command.LOCK_ACTION, payload, nonce) == h(
        "19467990B69FFBE3D484A5882C995449E3EBC878712152E7020000003E00B30D19E0C0A12F4D8C887864"
        "877B8853437825D587F85BB6C21BF674E204A685AC5E40E8A5FDB85349F520069496F092FAB63736928C"
        "0933DB34CFA21809"
    )


def test_the_challenge_example_decrypts_to_the_published_pdata() -> None:
    """Research §B.1 byte for byte, with PyNaCl alone (not our codec): the header says auth id
    2 and length 56 (PDATA 40 + the 16-byte MAC), and the plaintext is ``02000000 0400`` +
    the challenge + CRC ``ff98`` over auth id, command and payload."""
    frame = b"".join(UNLOCK_CHALLENGE_CHUNKS)
    assert frame[:24] == h("99C8613A9F6AB6D3FB0399D37AD38C5C003AC139B1567BC1")
    assert frame[24:28] == h("02000000") and frame[28:30] == (56).to_bytes(2, "little")
    pdata = SecretBox(SHARED).decrypt(frame[30:], frame[:24])
    assert pdata == h("020000000400") + UNLOCK_CHALLENGE + h("ff98")
    assert len(pdata) + 16 == 56
    assert pdata[-2:] == nuki.crc16(pdata[:-2]).to_bytes(2, "little")


def test_a_frame_under_another_key_does_not_open() -> None:
    frame = b"".join(UNLOCK_CHALLENGE_CHUNKS)
    with pytest.raises(RemoteProtocolError, match="authenticate"):
        nuki.open_sealed(bytes(32), frame)


def test_the_typo_in_the_published_example_is_caught() -> None:
    typo = bytearray(b"".join(UNLOCK_CHALLENGE_CHUNKS))
    typo[20 + 14] ^= 0x80
    with pytest.raises(RemoteProtocolError):
        nuki.open_sealed(SHARED, bytes(typo))
