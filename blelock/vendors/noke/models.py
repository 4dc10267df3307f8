"""Pydantic models of the Nokē Core API, as the vendor documents it (noke.md §7, §9).

Answers are read leniently: unknown fields are ignored and fields the documentation's examples
leave vague are optional, so that a harmless addition on the vendor's side does not break an
unlock. Requests are exactly what the documentation shows. Anything secret is a ``SecretStr``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, NotRequired, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
)
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from blelock.errors import UsageError
from blelock.model import MacAddress, parse_mac

__all__ = [
    "ActivityData",
    "ActivityEntry",
    "ActivityRequest",
    "CommandsData",
    "Envelope",
    "KeyScope",
    "KeysData",
    "KeysRequest",
    "LockInfo",
    "LockMacsData",
    "LockQuickClicks",
    "LocksData",
    "LocksRequest",
    "QuickClickDisplay",
    "QuickClickEntry",
    "QuickClickRequest",
    "QuickClickSpec",
    "QuickClickState",
    "TypedEnvelope",
    "UnlockRequest",
    "UploadLog",
    "UploadRequest",
]


_CANONICAL_MAC = re.compile(r"[0-9A-F]{2}(?::[0-9A-F]{2}){5}")


def _canonical_mac(value: object) -> object:
    if not isinstance(value, str):
        return value
    if _CANONICAL_MAC.fullmatch(value):  # as the cloud writes them: a fleet's worth, quickly
        return value
    try:
        return parse_mac(value)
    except UsageError:
        raise ValueError("not a MAC address") from None


AnswerMac = Annotated[MacAddress, BeforeValidator(_canonical_mac)]
"""A MAC in an answer, in whatever case or separator the cloud used, made canonical."""


class _Answer(BaseModel):
    # defer_build: a model's validator is built when it first validates, not at import; an
    # unlock uses three of these models, and building all of them cost ~25 ms per process.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Envelope(_Answer):
    """What every Core API answer is wrapped in. ``data`` is checked per endpoint afterwards."""

    result: str
    """``"success"`` or ``"failure"``."""
    error_code: int
    message: str = ""
    data: Any = None
    request: str | None = None
    token: SecretStr | None = None
    """Sent with unlock-like answers; its meaning is not documented, so it is kept secret."""

    @property
    def ok(self) -> bool:
        return self.result == "success" and self.error_code == 0


DataT = TypeVar("DataT", bound=BaseModel)


class TypedEnvelope(_Answer, Generic[DataT]):
    """An answer read in one pass from its bytes, ``data`` already of its endpoint's model: for
    the bulk answers (a company's locks, a chunk's keys), where a dict tree of the whole answer
    first would cost more than the parse. A body it does not fit is read again the slow way,
    which says precisely what is wrong."""

    result: str
    error_code: int
    data: DataT

    @property
    def ok(self) -> bool:
        return self.result == "success" and self.error_code == 0


class UnlockRequest(_Request):
    """Body of ``/unlock/`` and ``/unshackle/``."""

    mac: MacAddress
    session: str
    tracking_key: str | None = None


class CommandsData(_Answer):
    """``data`` of ``/unlock/``, ``/unshackle/``: ``+``-separated 40-hex packets."""

    commands: str


class LocksRequest(_Request):
    """Body of ``/lock/``: some locks by MAC, or (empty body) every lock of the company."""

    macs: list[MacAddress] | None = None


class LockInfo(_Answer):
    """One entry of ``/lock/``'s ``data.locks``."""

    mac: AnswerMac
    created_by: str | None = None
    created_date: str | None = None
    setup_count: int | None = None
    hw_version: str | None = None
    fw_version: str | None = None
    serial: str | None = None
    internal_battery: int | None = None
    """Millivolts."""
    external_battery: int | None = None
    """Millivolts."""
    status: str | None = None
    """E.g. ``"ready"``, or awaiting setup."""
    flags: tuple[str, ...] = ()
    """Data waiting to be synced to the lock. The doc calls it an array; its example says
    ``"none"``: both are accepted, ``"none"`` meaning no flags."""
    settings: dict[str, Any] | None = None

    @field_validator("flags", mode="before")
    @classmethod
    def _flags(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return ()
        if isinstance(value, str):
            return (value,)
        return value


class LocksData(_Answer):
    """``data`` of ``/lock/``."""

    locks: list[LockInfo] = Field(default_factory=list)


class _LockMac(TypedDict):
    mac: AnswerMac


class LockMacsData(_Answer):
    """``data`` of ``/lock/`` read for the MACs alone (listing a fleet to sync it)."""

    locks: list[_LockMac] = Field(default_factory=list)


class UploadLog(_Request):
    """One session's worth of server-destined (0x50) packets from one lock."""

    session: str
    mac: MacAddress
    received_time: int
    """Unix seconds (an integer since the vendor's 2018 fix, noke.md §7.1)."""
    responses: list[str]


class UploadRequest(_Request):
    """Body of ``/upload/`` (sent with the *mobile* API key)."""

    logs: list[UploadLog]


class KeyScope(_Request):
    macs: list[MacAddress] | None = None
    tracking_keys: list[str] | None = None


class KeysRequest(_Request):
    """Body of ``/keys/``: issue, display or revoke (noke.md §9.3)."""

    issue: list[KeyScope] | None = None
    display: KeyScope | None = None
    revoke: list[KeyScope] | None = None


class OfflineKeyEntry(TypedDict):
    """One key of ``/keys/``. A bulk answer's entries are plain dicts, not models: a fleet's
    500,000 keys read ten times faster so. Key material is decoded from its hex as the answer's
    bytes are read (``val_json_bytes``: the JSON mode only) and is as secret as the SecretStr
    it would otherwise be: with the unlock command it is all it takes to open the lock. These
    dicts live only until the cloud client has made its OfflineGrants (repr-less) of them."""

    __pydantic_config__ = ConfigDict(val_json_bytes="hex")  # type: ignore[misc]

    tracking_key: str
    offline_key: Annotated[bytes, Field(min_length=16, max_length=16)]
    unlock_command: Annotated[bytes, Field(min_length=20, max_length=20)]


class LockKeys(TypedDict):
    mac: AnswerMac
    keys: NotRequired[list[OfflineKeyEntry]]


class KeysData(_Answer):
    """``data`` of ``/keys/``, read from the answer's bytes only (hex-encoded key material)."""

    locks: list[LockKeys] = Field(default_factory=list)


# --- quick clicks, activity (Core API seed doc) ---------------------------------------------


class QuickClickSpec(_Request):
    """One quick click in a ``/qc/`` issue (``uses`` set) or revoke (``uses`` None) entry. The
    code opens the lock, so it is a secret here: sent, never shown."""

    code: SecretStr
    uses: int | None = None

    @field_serializer("code", when_used="json")
    def _reveal(self, code: SecretStr) -> str:
        return code.get_secret_value()


class QuickClickEntry(_Request):
    mac: MacAddress
    quick_clicks: list[QuickClickSpec]


class QuickClickDisplay(_Request):
    macs: list[MacAddress] | None = None


class QuickClickRequest(_Request):
    """Body of ``/qc/``: issue, revoke and display in one request, as the doc shows."""

    issue: list[QuickClickEntry] | None = None
    revoke: list[QuickClickEntry] | None = None
    display: QuickClickDisplay | None = None


class QuickClickState(_Answer):
    code: SecretStr
    uses: int
    """As issued: 1-244, or 255 for unlimited (the cloud does not count uses down)."""
    pending: bool = False
    """It reaches the lock with the lock's next online unlock."""
    revoked: bool = False
    """It leaves the lock with the lock's next online unlock (until then it opens)."""


class LockQuickClicks(_Answer):
    mac: AnswerMac
    quick_clicks: list[QuickClickState] = Field(default_factory=list)


class ActivityRequest(_Request):
    """Body of ``/activity/``: every filter optional (none: the company's latest activity)."""

    lock_macs: list[MacAddress] | None = None
    actions: list[str] | None = None
    tracking_keys: list[str] | None = None
    before: str | None = None
    """``2018-05-23T20:08:34Z``."""
    after: str | None = None


class ActivityEntry(_Answer):
    lock_mac: AnswerMac
    action: str
    recorded_time: AwareDatetime | None = None
    range_date_start: AwareDatetime | None = None
    """The earliest the event may have happened (its exact time is unknown for offline unlocks
    and quick clicks); equal to ``range_date_end`` when it is known."""
    range_date_end: AwareDatetime | None = None
    tracking_key: str = ""


class ActivityData(_Answer):
    activity: list[ActivityEntry] = Field(default_factory=list)
