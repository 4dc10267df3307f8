"""What the Nuki Web API answers, validated at the boundary (pydantic, camelCase on the wire).

Unknown fields are ignored (the API grows); the fields blelock reads are typed. A keypad code
read back is a :class:`~pydantic.SecretStr`: it never shows in a repr or a log line.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr
from pydantic.alias_generators import to_camel

from blelock.vendors.nuki.web.rules import KEYPAD_CODE_TYPE
from blelock.vendors.nuki.web.window import AccessWindow

__all__ = [
    "AccountUser",
    "ApiError",
    "LogEntry",
    "Smartlock",
    "SmartlockAuth",
    "SmartlockConfig",
    "SmartlockState",
]


def _secret_code(value: object) -> object:
    if value is None or isinstance(value, SecretStr):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("a keypad code is a number")
    return SecretStr(str(value))


KeypadCode = Annotated[SecretStr | None, BeforeValidator(_secret_code)]


class _Answer(BaseModel):
    # defer_build: each validator is built when it first validates, not at import.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        defer_build=True,
    )


class SmartlockState(_Answer):
    mode: int | None = None
    state: int | None = None
    """0 uncalibrated, 1 locked, 2 unlocking, 3 unlocked, 4 locking, 5 unlatched, …"""
    trigger: int | None = None
    last_action: int | None = None
    battery_critical: bool = False
    battery_charge: int | None = None
    door_state: int | None = None


class SmartlockConfig(_Answer):
    name: str | None = None
    keypad_paired: bool | None = None
    keypad2_paired: bool | None = None
    timezone_id: int | None = None
    timezone_offset: int | None = None


class Smartlock(_Answer):
    smartlock_id: int
    account_id: int | None = None
    type: int = 0
    name: str = ""
    server_state: int = 0
    """0 ok, 1 unregistered, 2 auth uuid invalid, 3 auth invalid, 4 offline."""
    admin_pin_state: int | None = None
    state: SmartlockState | None = None
    config: SmartlockConfig | None = None
    creation_date: dt.datetime | None = None
    update_date: dt.datetime | None = None

    @property
    def keypad_paired(self) -> bool | None:
        """True or False when the API says (Keypad or Keypad 2.0), None when it does not."""
        if self.config is None:
            return None
        said = (self.config.keypad_paired, self.config.keypad2_paired)
        return True if True in said else False if False in said else None


class SmartlockAuth(_Answer):
    id: str
    """The Web API's own id of the entry (not the lock's ``authId``)."""
    smartlock_id: int
    auth_id: int | None = None
    account_user_id: int | None = None
    type: int = 0
    name: str = ""
    enabled: bool = True
    remote_allowed: bool = False
    smart_actions_enabled: bool = False
    code: KeypadCode = None
    allowed_from_date: dt.datetime | None = None
    allowed_until_date: dt.datetime | None = None
    allowed_week_days: int | None = None
    allowed_from_time: int | None = None
    allowed_until_time: int | None = None
    lock_count: int = 0
    last_active_date: dt.datetime | None = None
    creation_date: dt.datetime | None = None
    update_date: dt.datetime | None = None
    operation_id: str | None = None
    """Set while an operation on this entry is under way: changes to it are refused (423)."""
    error: str | None = None
    app_id: int | None = None

    @property
    def keypad_code(self) -> bool:
        return self.type == KEYPAD_CODE_TYPE

    @property
    def window(self) -> AccessWindow:
        return AccessWindow.from_api(
            from_date=self.allowed_from_date,
            until_date=self.allowed_until_date,
            weekdays=self.allowed_week_days,
            from_minutes=self.allowed_from_time,
            until_minutes=self.allowed_until_time,
        )


class AccountUser(_Answer):
    account_user_id: int
    email: str = ""
    name: str = ""


class LogEntry(_Answer):
    id: str
    smartlock_id: int
    device_type: int | None = None
    account_user_id: int | None = None
    auth_id: str | None = None
    name: str = ""
    action: int
    trigger: int | None = None
    state: int | None = None
    auto_unlock: bool = False
    date: dt.datetime


class ApiError(_Answer):
    """Both error bodies the API is seen to answer: ``{code, description, reasonPhrase}`` and
    ``{detailMessage}`` (vendor forum, ``shared/vendor-docs/nuki-web-api-keypad-pins.txt``)."""

    code: int | None = None
    description: str | None = None
    reason_phrase: str | None = None
    detail_message: str | None = None

    @property
    def said(self) -> str:
        return (self.detail_message or self.description or self.reason_phrase or "").strip()
