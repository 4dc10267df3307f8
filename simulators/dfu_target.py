"""A simulated Nordic secure DFU bootloader, as a Nokē lock shows it after the cloud's fwupdate
command (noke.md §8.2): a :class:`~simulators.radio.Peripheral` that really validates what it
receives, with the codes nRF5 SDK 15.3 answers (see :mod:`blelock.protocol.dfu`).

Honest in the ways the SDK bootloader is:

* control-point writes are refused with ATT error 0xFD until its notifications are enabled;
* a data object needs a valid init packet first; objects are at most one flash page, page-aligned
  except the last, and may not run past the image size the init packet declared;
* Execute of the init packet checks what SDK 15.3 checks in its order, with its codes
  (:func:`blelock.protocol.dfu_init.validate_init_packet`: decodes, signature, type, hash type,
  hw_version, sd_req against its SoftDevice id, fw_version unless is_debug, sizes, boot
  validation); a refusal forgets the init packet;
* the bootloader does **not** check CRCs on Execute: it computes the running CRC32 and reports it
  (CalcChecksum, receipts every PRN packets); checking is the client's job. What it enforces is
  the SHA-256 of the whole image on the last Execute, and an ECDSA boot validation, if the init
  packet asks for one (VERIFICATION_FAILED otherwise);
* flash takes time: Create of a data object erases its pages, Execute writes the object
  (:attr:`SimDfuTarget.flash`); the control-point notification follows that work, which the
  radio charges through :meth:`SimDfuTarget.take_busy_s`;
* it negotiates ATT MTU up to 247 (``NRF_SDH_BLE_GATT_MAX_MTU_SIZE``), ``max_att_mtu``;
* a refused update keeps the old firmware version; a good one "boots": ``firmware_version``
  changes, ``updates`` counts it, ``on_boot`` is told, and the bootloader stops advertising;
* state survives a dropped link (the bootloader keeps running): the init packet, executed objects
  and even the partly written object, so a client can resume from Select's offset.
  :meth:`SimDfuTarget.power_cycle` models a reset instead: only what was executed survives
  (``NRF_DFU_SAVE_PROGRESS_IN_FLASH``).

Choices of this simulator (not the SDK's behaviour, stated so nobody relies on them):

* It installs **applications only** (``types``): a SoftDevice or bootloader init packet is
  refused with INIT_COMMAND_INVALID, as the SDK refuses a type it was built without; blelock
  never sends one anyway.

* **Address**: the lock's address with the last byte + 1 (what nrfutil expects of an unbonded
  bootloader, :func:`blelock.protocol.dfu.bootloader_address`), so the lock and its bootloader
  can both be on one simulated radio. Real Nokē apps find the bootloader by name (``NOKE_FW`` /
  ``N3P_FW``, noke.md §1.2), which it also advertises.
* After a refused final hash it stays in DFU mode (a real one resets into the old application).
* The DFU-mode window (noke.md §8.2: "stays in the mode for 60 s or until updated") is modelled
  as the SDK's inactivity timer with Nokē's 60 s: ``dfu_window_s`` without a connection or a
  write and the bootloader resets into the old firmware (``on_boot`` with the old version),
  keeping what was executed, so the next update resumes after a new fwupdate command. It is
  checked when the radio next asks for an advert or a connection: no timers here.
* PRN is set per connection (0 after connecting), as every client sends SetPRN first anyway.

Fault switches: :class:`DfuFaults` (corrupt one packet) here; drop the link after N writes and a
slow link are the radio's (``simulators.faults.LinkFaults``, ``drop_link_after_writes`` /
``slow_factor``).
"""

from __future__ import annotations

import collections
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from blelock.errors import ProtocolError
from blelock.protocol import dfu, dfu_init
from simulators.radio import Advertisement, CharacteristicSpec, GattRefused, ServiceSpec

__all__ = [
    "DEFAULT_BANK_SIZE",
    "NO_FLASH_TIME",
    "PAGE_SIZE",
    "DfuFaults",
    "FlashTiming",
    "SimButtonlessApp",
    "SimDfuTarget",
]

PAGE_SIZE = 4096
"""nRF52 flash page (``CODE_PAGE_SIZE``): data objects must be page-aligned but for the last."""
DEFAULT_BANK_SIZE = 512 * 1024
"""Room for a new image (invented: enough for the 256 KiB benchmark image)."""

ATT_WRITE_NOT_PERMITTED = 0x03
ATT_READ_NOT_PERMITTED = 0x02
ATT_REQUEST_NOT_SUPPORTED = 0x06
ATT_INVALID_ATTRIBUTE_LENGTH = 0x0D
ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD
"""Core spec common profile error: what the SDK answers a control-point write before notify."""

_Outcome = bytes | dfu_init.Refusal


@dataclass(frozen=True)
class FlashTiming:
    """nRF52840 Product Specification v1.7, NVMC electrical specification: page erase
    t_ERASEPAGE 85 ms and word write t_WRITE 41 µs (the maxima; the datasheet gives no
    typical values). With the SoftDevice the bootloader's flash work also waits for radio
    timeslots; that is not modelled (the charge here is the flash's own)."""

    erase_page_s: float = 0.085
    write_word_s: float = 41e-6

    def erase(self, size: int) -> float:
        return -(-size // PAGE_SIZE) * self.erase_page_s

    def write(self, size: int) -> float:
        return -(-size // 4) * self.write_word_s


NO_FLASH_TIME = FlashTiming(0.0, 0.0)


@dataclass
class DfuFaults:
    """Switches for what goes wrong inside the bootloader; the radio's LinkFaults do the rest."""

    corrupt_packet: int | None = None
    """Flip every bit of the first byte of the N-th write to the data packet characteristic
    (1-based, counted over this bootloader's life; the init packet's writes count too), once."""
    packets_corrupted: int = 0
    """Counter: packets this fault corrupted."""


@dataclass
class SimDfuTarget:
    lock_address: str
    trusted_key: ec.EllipticCurvePublicKey
    """The key whose signatures this bootloader accepts (firmware_images/test_signing_key.pub.pem
    for the simulated fleet)."""
    hardware: str | int = "4I"
    """A Nokē hardware code (its ``hw_version`` is the code's ASCII, ``dfu.hardware_version``)
    or a plain ``hw_version`` number (52: nrfutil's nRF52 convention)."""
    firmware_version: int = dfu.version_number(3, 14)
    bank_size: int = DEFAULT_BANK_SIZE
    softdevice_id: int = 0x0100
    """The installed SoftDevice's id (invented for the simulated locks; an init packet's
    ``sd_req`` must list it)."""
    bootloader_version: int = 1
    types: tuple[dfu_init.FirmwareType, ...] = (dfu_init.FirmwareType.APPLICATION,)
    flash: FlashTiming = field(default_factory=FlashTiming)
    max_att_mtu: int = dfu.BOOTLOADER_MAX_ATT_MTU
    in_dfu_mode: bool = True
    """Advertising as a bootloader. False once it booted an image; :meth:`enter_dfu_mode`."""
    rssi: int = -60
    faults: DfuFaults = field(default_factory=DfuFaults)
    on_boot: Callable[[int], None] | None = None
    """Told the new ``firmware_version`` when an update boots (the world updates its lock), or
    the old one when the DFU-mode window runs out."""
    dfu_window_s: float | None = 60.0
    """Idle time after which it leaves DFU mode; None: never."""
    clock: Callable[[], float] = time.monotonic

    connections: int = 0
    updates: int = 0
    """Transfers that ended in a verified, booted image."""
    init_packets_accepted: int = 0
    objects_executed: int = 0
    packets_received: int = 0
    windows_expired: int = 0
    refusals: collections.Counter[tuple[dfu.ResultCode, dfu.ExtendedError | None]] = field(
        default_factory=collections.Counter
    )
    last_refusal: dfu_init.Refusal | None = None

    # The bootloader's progress (SDK dfu_progress_t): survives a dropped link.
    _current: int = dfu.ObjectType.COMMAND  # the object type Create/Select last named
    _init: bytearray = field(default_factory=bytearray)
    _init_size: int = 0
    _valid_init: dfu_init.InitPacket | None = None
    _image: bytearray = field(default_factory=bytearray)
    _crc: int = 0
    _offset_last: int = 0
    _crc_last: int = 0
    _object_size: int = 0
    # The connection's state.
    _notifying: bool = False
    _connected: bool = False
    _last_activity: float = field(default=0.0, init=False)
    _prn: int = 0
    _prn_count: int = 0
    _busy_s: float = 0.0

    def __post_init__(self) -> None:
        # Fail at construction, not at the first Execute, on a bad address or hardware code.
        dfu.bootloader_address(self.lock_address)
        self._hw_version = (
            self.hardware if isinstance(self.hardware, int) else dfu.hardware_version(self.hardware)
        )
        self._last_activity = self.clock()

    # --- Peripheral ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return dfu.bootloader_address(self.lock_address)

    @property
    def local_name(self) -> str:
        return "N3P_FW" if str(self.hardware).upper() == "3P" else "NOKE_FW"

    @property
    def verified_bytes(self) -> int:
        """Image bytes in executed (CRC-checked) objects: where a resumed transfer goes on."""
        return self._offset_last

    @property
    def firmware(self) -> tuple[int, int]:
        """``(major, minor)``, as the lock advertises it."""
        return self.firmware_version >> 16, self.firmware_version & 0xFFFF

    def advertisement(self) -> Advertisement | None:
        self._leave_dfu_mode_if_idle()
        if not self.in_dfu_mode:
            return None
        return Advertisement(
            local_name=self.local_name,
            manufacturer_data={},
            service_uuids=(dfu.SECURE_DFU_SERVICE_UUID,),
            service_data={},
            rssi=self.rssi,
        )

    def services(self) -> tuple[ServiceSpec, ...]:
        return (
            ServiceSpec(
                uuid=dfu.SECURE_DFU_SERVICE_UUID,
                characteristics=(
                    CharacteristicSpec(dfu.CONTROL_POINT_UUID, ("write", "notify")),
                    CharacteristicSpec(dfu.DATA_PACKET_UUID, ("write-without-response", "notify")),
                ),
            ),
        )

    def on_connect(self) -> None:
        self._leave_dfu_mode_if_idle()
        self.connections += 1
        self._connected = True
        self._notifying = False
        self._prn = self._prn_count = 0

    def on_disconnect(self) -> None:
        self._notifying = False
        self._connected = False
        self._last_activity = self.clock()

    def on_subscribe(self, char_uuid: str, enabled: bool) -> None:
        if char_uuid == dfu.CONTROL_POINT_UUID:
            self._notifying = enabled
        elif char_uuid != dfu.DATA_PACKET_UUID:  # it declares notify, and never sends one
            raise GattRefused(ATT_REQUEST_NOT_SUPPORTED, f"{char_uuid} does not notify")

    def on_read(self, char_uuid: str) -> bytes:
        raise GattRefused(ATT_READ_NOT_PERMITTED, f"{char_uuid} is not readable")

    def on_write(self, char_uuid: str, data: bytes) -> list[tuple[str, bytes]]:
        if not self.in_dfu_mode:
            raise GattRefused(ATT_WRITE_NOT_PERMITTED, "the bootloader has left DFU mode")
        self._last_activity = self.clock()
        if char_uuid == dfu.CONTROL_POINT_UUID:
            return [(dfu.CONTROL_POINT_UUID, self._control(bytes(data)))]
        if char_uuid == dfu.DATA_PACKET_UUID:
            note = self._packet(bytes(data))
            return [] if note is None else [(dfu.CONTROL_POINT_UUID, note)]
        raise GattRefused(ATT_WRITE_NOT_PERMITTED, f"{char_uuid} is not writable")

    # --- outside the protocol -----------------------------------------------------------------

    def enter_dfu_mode(self) -> None:
        """What the lock's fwupdate command does: reboot into this bootloader."""
        self.in_dfu_mode = True
        self._last_activity = self.clock()

    def _leave_dfu_mode_if_idle(self) -> None:
        window = self.dfu_window_s
        if not self.in_dfu_mode or self._connected or window is None:
            return
        if self.clock() - self._last_activity < window:
            return
        self.windows_expired += 1
        self.in_dfu_mode = False
        self.power_cycle()  # back to the old application; executed objects stay saved
        if self.on_boot is not None:
            self.on_boot(self.firmware_version)

    def power_cycle(self) -> None:
        """A reset: RAM is lost, what was saved at each Execute survives (the executed objects
        and an accepted init packet)."""
        if self._valid_init is None:
            self._reset_progress()
        else:
            del self._image[self._offset_last :]
            self._crc, self._object_size = self._crc_last, 0
        self._notifying = False
        self._prn = self._prn_count = 0

    def take_busy_s(self) -> float:
        """Seconds of flash work the last write started (the radio delays the answering
        notification by it), and forget them."""
        busy, self._busy_s = self._busy_s, 0.0
        return busy

    @property
    def received(self) -> bytes:
        """The image bytes held so far (executed or not)."""
        return bytes(self._image)

    # --- the control point --------------------------------------------------------------------

    def _control(self, data: bytes) -> bytes:
        if not self._notifying:
            raise GattRefused(
                ATT_CCCD_IMPROPERLY_CONFIGURED, "enable control-point notifications first"
            )
        if not data:
            raise GattRefused(ATT_INVALID_ATTRIBUTE_LENGTH, "empty control-point write")
        try:
            request = dfu.decode_request(data)
        except ProtocolError as exc:
            return self._answer(
                dfu.Opcode(data[0]),
                dfu_init.Refusal(dfu.ResultCode.INVALID_PARAMETER, None, str(exc)),
            )
        if isinstance(request, dfu.UnknownRequest):
            # Protocol version, ping, abort…: optional in the SDK ("reduced protocol"), not here.
            self._count(_refuse(dfu.ResultCode.NOT_SUPPORTED, f"opcode 0x{request.opcode:02X}"))
            return bytes([dfu.Opcode.RESPONSE, request.opcode, dfu.ResultCode.NOT_SUPPORTED])
        if isinstance(request, dfu.SetPrnRequest):
            self._prn, self._prn_count = request.prn, 0
            return self._answer(dfu.Opcode.SET_PRN, b"")
        if isinstance(request, dfu.CreateRequest):
            self._prn_count = 0  # the transport restarts the receipt count on Create
            return self._answer(dfu.Opcode.CREATE, self._create(request))
        if isinstance(request, dfu.SelectRequest):
            self._current = request.object_type
            return self._answer(dfu.Opcode.SELECT, self._select())
        if isinstance(request, dfu.CalcChecksumRequest):
            return self._answer(dfu.Opcode.CALCULATE_CHECKSUM, self._checksum())
        return self._answer(dfu.Opcode.EXECUTE, self._execute())

    def _answer(self, request: dfu.Opcode, outcome: _Outcome) -> bytes:
        if isinstance(outcome, dfu_init.Refusal):
            self._count(outcome)
            return outcome.response(request)
        return bytes([dfu.Opcode.RESPONSE, request, dfu.ResultCode.SUCCESS]) + outcome

    def _count(self, refusal: dfu_init.Refusal) -> None:
        self.refusals[refusal.result, refusal.extended] += 1
        self.last_refusal = refusal

    def _create(self, request: dfu.CreateRequest) -> _Outcome:
        self._current = request.object_type
        size = request.size
        if request.object_type == dfu.ObjectType.COMMAND:
            if size == 0:
                return _refuse(dfu.ResultCode.INVALID_PARAMETER, "init packet of size 0")
            if size > dfu.INIT_COMMAND_MAX_SIZE:
                return _refuse(dfu.ResultCode.INSUFFICIENT_RESOURCES, f"init packet of {size}")
            self._reset_progress()  # a new init packet starts the update over
            self._init_size = size
            return b""
        if request.object_type != dfu.ObjectType.DATA:
            return _refuse(dfu.ResultCode.INVALID_OBJECT, f"object type {request.object_type}")
        if self._valid_init is None:
            return _refuse(dfu.ResultCode.OPERATION_NOT_PERMITTED, "no valid init packet yet")
        image_size = self._valid_init.command.image_size
        if size == 0:
            return _refuse(dfu.ResultCode.INVALID_PARAMETER, "data object of size 0")
        if size % PAGE_SIZE and self._offset_last + size != image_size:
            return _refuse(dfu.ResultCode.INVALID_PARAMETER, "object not page-aligned")
        if size > dfu.DATA_OBJECT_MAX_SIZE:
            return _refuse(dfu.ResultCode.INSUFFICIENT_RESOURCES, f"data object of {size}")
        if self._offset_last + size > image_size:
            return _refuse(dfu.ResultCode.OPERATION_NOT_PERMITTED, "object past the image end")
        # Creating an object discards whatever was written since the last Execute, and erases
        # the flash it will be written to.
        del self._image[self._offset_last :]
        self._crc, self._object_size = self._crc_last, size
        self._busy_s += self.flash.erase(size)
        return b""

    def _select(self) -> _Outcome:
        if self._current == dfu.ObjectType.COMMAND:
            held = bytes(self._init)
            return _select(dfu.INIT_COMMAND_MAX_SIZE, len(held), zlib.crc32(held))
        if self._current == dfu.ObjectType.DATA:
            return _select(dfu.DATA_OBJECT_MAX_SIZE, len(self._image), self._crc)
        return _refuse(dfu.ResultCode.INVALID_OBJECT, f"object type {self._current}")

    def _checksum(self) -> _Outcome:
        if self._current == dfu.ObjectType.COMMAND:
            held = bytes(self._init)
            return dfu.ChecksumResponse(len(held), zlib.crc32(held)).encode()[3:]
        if self._current == dfu.ObjectType.DATA:
            return dfu.ChecksumResponse(len(self._image), self._crc).encode()[3:]
        return _refuse(dfu.ResultCode.INVALID_OBJECT, f"object type {self._current}")

    def _execute(self) -> _Outcome:
        if self._current == dfu.ObjectType.COMMAND:
            return self._execute_init()
        if self._current == dfu.ObjectType.DATA:
            return self._execute_data()
        return _refuse(dfu.ResultCode.INVALID_OBJECT, f"object type {self._current}")

    def _execute_init(self) -> _Outcome:
        if self._init_size == 0 or len(self._init) != self._init_size:
            return _refuse(dfu.ResultCode.OPERATION_NOT_PERMITTED, "init packet incomplete")
        if self._valid_init is not None:
            return b""  # executed before the link fell: still valid
        verdict = dfu_init.validate_init_packet(
            bytes(self._init),
            dfu_init.BootloaderState(
                public_key=self.trusted_key,
                hw_version=self._hw_version,
                app_version=self.firmware_version,
                bootloader_version=self.bootloader_version,
                softdevice_id=self.softdevice_id,
                bank_size=self.bank_size,
                types=self.types,
            ),
        )
        if isinstance(verdict, dfu_init.Refusal):
            self._reset_progress()
            return verdict
        self._valid_init = verdict
        self.init_packets_accepted += 1
        return b""

    def _execute_data(self) -> _Outcome:
        if len(self._image) - self._offset_last != self._object_size:
            return _refuse(dfu.ResultCode.OPERATION_NOT_PERMITTED, "data object incomplete")
        if self._valid_init is None:
            return _refuse(dfu.ResultCode.OPERATION_NOT_PERMITTED, "no valid init packet yet")
        if self._object_size:
            self.objects_executed += 1
            self._busy_s += self.flash.write(self._object_size)
        self._offset_last, self._crc_last, self._object_size = len(self._image), self._crc, 0
        if len(self._image) < self._valid_init.command.image_size:
            return b""
        init = self._valid_init
        if refusal := dfu_init.validate_image(init, bytes(self._image), self.trusted_key):
            self._reset_progress()  # the old firmware stays
            return refusal
        version = init.command.fw_version
        self._boot(self.firmware_version if version is None else version)
        return b""

    def _boot(self, version: int) -> None:
        self.firmware_version = version
        self.updates += 1
        self.in_dfu_mode = False
        self._reset_progress()
        if self.on_boot is not None:
            self.on_boot(version)

    def _reset_progress(self) -> None:
        """SDK ``dfu_progress_reset``: forget the init packet and every image byte."""
        self._init.clear()
        self._init_size = 0
        self._valid_init = None
        self._image.clear()
        self._crc = self._offset_last = self._crc_last = self._object_size = 0

    # --- the data packet characteristic -------------------------------------------------------

    def _packet(self, data: bytes) -> bytes | None:
        if len(data) > dfu.MAX_PACKET_SIZE:
            raise GattRefused(ATT_INVALID_ATTRIBUTE_LENGTH, f"{len(data)}-byte packet")
        self.packets_received += 1
        if self.faults.corrupt_packet == self.packets_received and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.faults.packets_corrupted += 1
        refusal = self._append(data)
        if refusal is not None:
            self._count(refusal)  # a write command has no reply: only a receipt may tell
        self._prn_count += 1
        if not self._prn or self._prn_count < self._prn:
            return None
        self._prn_count = 0
        # The receipt is a CalcChecksum response, or the write's error (nrf_dfu_ble.c).
        if refusal is not None:
            return refusal.response(dfu.Opcode.CALCULATE_CHECKSUM)
        return self._answer(dfu.Opcode.CALCULATE_CHECKSUM, self._checksum())

    def _append(self, data: bytes) -> dfu_init.Refusal | None:
        if self._current == dfu.ObjectType.COMMAND:
            if len(self._init) + len(data) > self._init_size:
                return _refuse(dfu.ResultCode.INVALID_PARAMETER, "init packet overflows")
            self._init += data
            return None
        if self._current != dfu.ObjectType.DATA:
            return _refuse(dfu.ResultCode.INVALID_OBJECT, f"object type {self._current}")
        if self._valid_init is None:
            return _refuse(dfu.ResultCode.OPERATION_NOT_PERMITTED, "no valid init packet yet")
        if len(self._image) - self._offset_last + len(data) > self._object_size:
            return _refuse(dfu.ResultCode.INVALID_PARAMETER, "data object overflows")
        self._image += data
        self._crc = zlib.crc32(data, self._crc)
        return None


def _refuse(result: dfu.ResultCode, reason: str) -> dfu_init.Refusal:
    return dfu_init.Refusal(result, None, reason)


def _select(max_size: int, offset: int, crc: int) -> bytes:
    return dfu.SelectResponse(max_size, offset, crc).encode()[3:]


@dataclass
class SimButtonlessApp:
    """A generic Nordic application with the unbonded buttonless DFU characteristic
    (``8EC90003-…``, write + indicate, in service 0xFE59): Enter bootloader (0x01) is answered
    ``20 01 01`` and puts ``bootloader`` (at this address + 1) into DFU mode, after which the
    application stops advertising. Not a Nokē lock: those go into their bootloader by the
    cloud's fwupdate command. (The bonded variant, 8EC90004, keeps the address; one simulated
    radio cannot hold the application and its bootloader at one address, so it is not here.)"""

    bootloader: SimDfuTarget
    local_name: str = "Nordic_App"
    rssi: int = -55
    _indicating: bool = False
    rebooted: bool = False

    @property
    def address(self) -> str:
        return self.bootloader.lock_address

    def advertisement(self) -> Advertisement | None:
        if self.rebooted:
            return None
        return Advertisement(self.local_name, {}, (dfu.SECURE_DFU_SERVICE_UUID,), {}, self.rssi)

    def services(self) -> tuple[ServiceSpec, ...]:
        char = CharacteristicSpec(dfu.BUTTONLESS_UNBONDED_UUID, ("write", "indicate"))
        return (ServiceSpec(dfu.SECURE_DFU_SERVICE_UUID, (char,)),)

    def on_connect(self) -> None:
        self._indicating = False

    def on_disconnect(self) -> None:
        self._indicating = False

    def on_subscribe(self, char_uuid: str, enabled: bool) -> None:
        self._indicating = enabled

    def on_read(self, char_uuid: str) -> bytes:
        raise GattRefused(ATT_READ_NOT_PERMITTED, f"{char_uuid} is not readable")

    def on_write(self, char_uuid: str, data: bytes) -> list[tuple[str, bytes]]:
        if not self._indicating:  # the SDK refuses before the CCCD is set
            raise GattRefused(ATT_CCCD_IMPROPERLY_CONFIGURED, "enable indications first")
        if bytes(data) != dfu.encode_enter_bootloader():
            answer = dfu.ButtonlessResult.OP_CODE_NOT_SUPPORTED
            return [
                (char_uuid, bytes([dfu.BUTTONLESS_RESPONSE, data[:1][0] if data else 0, answer]))
            ]
        self.rebooted = True
        self.bootloader.enter_dfu_mode()
        response = [
            dfu.BUTTONLESS_RESPONSE,
            dfu.BUTTONLESS_ENTER_BOOTLOADER,
            dfu.ButtonlessResult.SUCCESS,
        ]
        return [(char_uuid, bytes(response))]
