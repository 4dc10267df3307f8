"""Canary: the sim backend still fits bleak's backend API.

A bleak upgrade that adds an abstract member, renames a constructor argument or changes
``AdvertisementData`` fails here, by name, instead of somewhere deep in a visit.
"""

from __future__ import annotations

import inspect

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakGATTProtocolError

from simulators.bleak_backend import (
    ATT_MTU,
    CCCD_UUID,
    SimBleakClient,
    SimBleakScanner,
    _service_collection,  # the exact calls the client makes to build its services
)
from simulators.radio import CharacteristicSpec, ServiceSpec

CLIENT_ABSTRACT = {
    "mtu_size",
    "is_connected",
    "connect",
    "disconnect",
    "pair",
    "unpair",
    "read_gatt_char",
    "read_gatt_descriptor",
    "write_gatt_char",
    "write_gatt_descriptor",
    "start_notify",
    "stop_notify",
}
SCANNER_ABSTRACT = {"start", "stop"}


def test_client_implements_exactly_the_abstract_members_bleak_declares() -> None:
    assert set(BaseBleakClient.__abstractmethods__) == CLIENT_ABSTRACT
    assert SimBleakClient.__abstractmethods__ == frozenset()
    # Defined on the sim class itself, plus ``name``: not abstract, but the base raises.
    assert CLIENT_ABSTRACT | {"name"} <= set(vars(SimBleakClient))


def test_scanner_implements_exactly_the_abstract_members_bleak_declares() -> None:
    assert set(BaseBleakScanner.__abstractmethods__) == SCANNER_ABSTRACT
    assert SimBleakScanner.__abstractmethods__ == frozenset()
    assert SCANNER_ABSTRACT | {"__init__"} <= set(vars(SimBleakScanner))


def test_bleak_front_ends_still_take_a_backend_class() -> None:
    assert "backend" in inspect.signature(BleakClient).parameters
    assert "backend" in inspect.signature(BleakScanner).parameters


def test_advertisement_data_fields_are_the_ones_the_scanner_fills() -> None:
    assert AdvertisementData._fields == (
        "local_name",
        "manufacturer_data",
        "service_data",
        "service_uuids",
        "tx_power",
        "rssi",
        "platform_data",
    )


def test_gatt_constructors_accept_the_simulators_arguments() -> None:
    spec = ServiceSpec(
        "FE59",
        (
            CharacteristicSpec("8EC90001-F315-4F60-9FB8-838830DAEA50", ("write", "notify")),
            CharacteristicSpec("8EC90002-F315-4F60-9FB8-838830DAEA50", ("read",)),
        ),
    )
    services = _service_collection([spec])

    service = services.get_service("fe59")
    assert service is not None
    assert service.uuid == "0000fe59-0000-1000-8000-00805f9b34fb"
    control = services.get_characteristic("8ec90001-f315-4f60-9fb8-838830daea50")
    assert control is not None
    assert control.properties == ["write", "notify"]
    assert control.max_write_without_response_size == ATT_MTU - 3
    assert [d.uuid for d in control.descriptors] == [CCCD_UUID]
    plain = services.get_characteristic("8ec90002-f315-4f60-9fb8-838830daea50")
    assert plain is not None
    assert plain.descriptors == []
    handles = [*services.services, *services.characteristics, *services.descriptors]
    assert len(handles) == len(set(handles)) == 4  # bleak silently drops duplicate handles


def test_gatt_protocol_error_takes_an_att_code() -> None:
    error = BleakGATTProtocolError(0x03)
    assert error.code == 0x03
    assert "Write Not Permitted" in str(error)
