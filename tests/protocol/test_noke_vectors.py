"""The Nokē protocol against the public test vectors (tests/protocol/vectors/noke/*.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from blelock.model import LockState
from blelock.vendors.noke import protocol as noke
from blelock.vendors.noke.advert import noke_sighting

VECTORS = Path(__file__).parent / "vectors" / "noke"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


OFFLINE = load("offline_unlock.json")["vectors"]
PARSING = load("parsing.json")


@pytest.mark.parametrize("vector", OFFLINE, ids=lambda v: v["id"])
def test_offline_unlock_vectors(vector: dict[str, Any]) -> None:
    key, session = bytes.fromhex(vector["offline_key"]), bytes.fromhex(vector["session"])
    if "combined_key" in vector:
        assert noke.combined_key(key, session).hex() == vector["combined_key"]
    if "packet" in vector:
        packet = noke.build_offline_unlock(
            key, bytes.fromhex(vector["unlock_command"]), session, vector["unix_time"]
        )
        assert packet.hex().upper() == vector["packet"]
    if "lock_side_plaintext" in vector:
        opened = noke.open_block(noke.combined_key(key, session), packet[4:])
        assert opened.hex() == vector["lock_side_plaintext"]
        assert int.from_bytes(opened[2:6], "little") == vector["unix_time"]
        assert opened[15] == sum(opened[:15]) & 0xFF


@pytest.mark.parametrize("row", PARSING["sessions"], ids=lambda r: r["session"][:8])
def test_session_battery(row: dict[str, Any]) -> None:
    assert noke.Session.parse(bytes.fromhex(row["session"])).battery_mv == row["battery_mv"]


@pytest.mark.parametrize("row", PARSING["adverts"], ids=lambda r: r["name"])
def test_advert_name_and_manufacturer_data(row: dict[str, Any]) -> None:
    sighting = noke_sighting(
        address="AA:AA:AA:AA:AA:AA",  # a rotating random address: the name's MAC must win
        local_name=row["name"],
        manufacturer_data={noke.COMPANY_ID: bytes.fromhex(row["manufacturer_data"])},
        service_uuids=[],
        rssi=-70,
    )
    assert sighting is not None
    assert (sighting.lock_id, sighting.hardware, sighting.firmware) == (
        row["mac"],
        row["hardware"],
        row["firmware"],
    )


@pytest.mark.parametrize("row", PARSING["hd_states"], ids=lambda r: r["flags"])
def test_hd_lock_state_from_flags(row: dict[str, Any]) -> None:
    sighting = noke_sighting(
        address="C7:E6:B0:C6:75:38",
        local_name="NOKE4I_C7E6B0C67538",
        manufacturer_data={noke.COMPANY_ID: bytes.fromhex(row["flags"] + "030e0001")},
        service_uuids=[noke.SERVICE_UUID],
        rssi=None,
    )
    assert sighting is not None
    assert sighting.state is LockState(row["state"])


def test_command_string_splits_into_20_byte_packets() -> None:
    vector = PARSING["command_split"]
    packets = noke.split_commands(vector["commands"])
    assert [p[:4].hex() for p in packets] == vector["headers"]
    assert all(len(p) == noke.PACKET_SIZE for p in packets)


def test_aes_direction_matches_fips_197() -> None:
    v = PARSING["aes_direction"]
    key, block = bytes.fromhex(v["key"]), bytes.fromhex(v["block"])
    assert noke.open_block(key, block).hex() == v["forward"]
    assert noke.seal_block(key, block).hex() == v["inverse"]


def test_result_codes_by_name_and_library_number() -> None:
    assert noke.ResultCode(0x61) is noke.ResultCode.INVALID_KEY
    assert noke.ResultCode.INVALID_KEY.library_code == 261
    assert noke.ResultCode.INVALID_DATA.library_code == 265
    assert noke.ResultCode.FAILED_TO_LOCK.library_code == 268
    assert noke.ResultCode.INVALID.library_code == 267
    unknown = noke.ResultCode(0x77)
    assert unknown.name == "UNKNOWN_0x77" and "0x77" in unknown.explanation
