"""Pydantic models of the Nokē Core API, as the vendor documents it (noke.md §7, §9).

Answers are read leniently: unknown fields are ignored and fields the documentation's examples
leave vague are optional, so that a harmless addition on the vendor's side does not break an
unlock. Requests are exactly what the documentation shows. Anything secret is a ``SecretStr``.
"""

from __future__ import annotations

import string
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)

from blelock.errors import UsageError
from blelock.model import MacAddress, parse_mac

__all__ = [
    "CommandsData",
    "Envelope",
    "KeyScope",
    "KeysData",
    "KeysRequest",
    "LockInfo",
    "LocksData",
    "LocksRequest",
    "UnlockRequest",
    "UploadLog",
    "UploadRequest",
]


def _canonical_mac(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return parse_mac(value)
    except UsageError:
        raise ValueError("not a MAC address") from None


AnswerMac = Annotated[MacAddress, BeforeValidator(_canonical_mac)]
"""A MAC in an answer, in whatever case or separator the cloud used, made canonical."""


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


def _hex_digits(count: int) -> AfterValidator:
    def check(value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if len(text) != count or text.strip(string.hexdigits):
            raise ValueError(f"must be {count} hex digits")
        return value

    return AfterValidator(check)


class OfflineKeyEntry(_Answer):
    tracking_key: str
    offline_key: Annotated[SecretStr, _hex_digits(32)]
    unlock_command: Annotated[SecretStr, _hex_digits(40)]
    """Secret too: with the offline key it is everything needed to open the lock."""


class LockKeys(_Answer):
    mac: AnswerMac
    keys: list[OfflineKeyEntry] = Field(default_factory=list)


class KeysData(_Answer):
    locks: list[LockKeys] = Field(default_factory=list)
