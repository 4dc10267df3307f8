"""The simulated radio's line protocol, encoded: what :mod:`simulators.radio_server` sends and
bleak's sim backend (:mod:`simulators.bleak_backend`) reads back. The protocol itself is in
:mod:`simulators.radio_server`'s docstring."""

from __future__ import annotations

from typing import Any

from simulators.radio import Advertisement, CharacteristicSpec, ServiceSpec

__all__ = ["decode_advertisement", "decode_services", "encode_advertisement", "encode_services"]


def encode_services(services: tuple[ServiceSpec, ...]) -> list[dict[str, Any]]:
    return [
        {
            "uuid": service.uuid,
            "characteristics": [
                {"uuid": char.uuid, "properties": list(char.properties)}
                for char in service.characteristics
            ],
        }
        for service in services
    ]


def decode_services(data: Any) -> tuple[ServiceSpec, ...]:
    """Inverse of :func:`encode_services`; ``ValueError`` on anything malformed."""
    try:
        return tuple(
            ServiceSpec(
                uuid=_text(service["uuid"]),
                characteristics=tuple(
                    CharacteristicSpec(
                        _text(char["uuid"]), tuple(_text(p) for p in char["properties"])
                    )
                    for char in service["characteristics"]
                ),
            )
            for service in data
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed services: {exc!r}") from None


def encode_advertisement(address: str, advert: Advertisement) -> dict[str, Any]:
    return {
        "event": "advert",
        "address": address,
        "local_name": advert.local_name,
        "manufacturer_data": {str(k): v.hex() for k, v in advert.manufacturer_data.items()},
        "service_uuids": list(advert.service_uuids),
        "service_data": {k: v.hex() for k, v in advert.service_data.items()},
        "rssi": advert.rssi,
        "tx_power": advert.tx_power,
    }


def decode_advertisement(message: dict[str, Any]) -> tuple[str, Advertisement]:
    """Inverse of :func:`encode_advertisement`; ``ValueError`` on anything malformed."""
    try:
        name = message["local_name"]
        tx_power = message["tx_power"]
        advert = Advertisement(
            local_name=None if name is None else _text(name),
            manufacturer_data={
                int(k): bytes.fromhex(_text(v)) for k, v in message["manufacturer_data"].items()
            },
            service_uuids=tuple(_text(u) for u in message["service_uuids"]),
            service_data={
                _text(k): bytes.fromhex(_text(v)) for k, v in message["service_data"].items()
            },
            rssi=int(message["rssi"]),
            tx_power=None if tx_power is None else int(tx_power),
        )
        return _text(message["address"]), advert
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed advert: {exc!r}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value
