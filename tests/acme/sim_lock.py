"""The simulated Acme lock: a peripheral on the simulated radio."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulators.radio import Advertisement, CharacteristicSpec, GattRefused, ServiceSpec

SERVICE_UUID = "ac3e0001-0000-4000-8000-00000000ac3e"
WRITE_UUID = "ac3e0002-0000-4000-8000-00000000ac3e"
NOTIFY_UUID = "ac3e0003-0000-4000-8000-00000000ac3e"
COMPANY_ID = 0xAC3E


@dataclass
class AcmeLock:
    lock_id: str
    mac: str
    opens: int = 0
    subscribed: bool = field(default=False)

    @property
    def address(self) -> str:
        return self.mac

    def advertisement(self) -> Advertisement | None:
        return Advertisement(
            local_name=f"ACME-{self.lock_id}",
            manufacturer_data={COMPANY_ID: self.lock_id.encode()},
            service_uuids=(SERVICE_UUID,),
            service_data={},
            rssi=-50,
        )

    def services(self) -> tuple[ServiceSpec, ...]:
        return (
            ServiceSpec(
                SERVICE_UUID,
                (
                    CharacteristicSpec(WRITE_UUID, ("write", "write-without-response")),
                    CharacteristicSpec(NOTIFY_UUID, ("notify",)),
                ),
            ),
        )

    def on_connect(self) -> None:
        pass

    def on_disconnect(self) -> None:
        self.subscribed = False

    def on_read(self, char_uuid: str) -> bytes:
        raise GattRefused(0x02, "not readable")

    def on_write(self, char_uuid: str, data: bytes) -> list[tuple[str, bytes]]:
        if char_uuid != WRITE_UUID or bytes(data) != b"OPEN":
            raise GattRefused(0x0E, "the lock understands only OPEN")
        if not self.subscribed:
            return []  # nobody listens: the lock does nothing it could not report
        self.opens += 1
        return [(NOTIFY_UUID, f"OPENED {self.opens}".encode())]

    def on_subscribe(self, char_uuid: str, enabled: bool) -> None:
        self.subscribed = enabled and char_uuid == NOTIFY_UUID
