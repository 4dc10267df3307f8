"""The ``[nuki]`` settings section (``BLELOCK_NUKI__*``; the flat ``nuki_*`` names work too)."""

from __future__ import annotations

from pydantic import Field, field_validator

from blelock.config import Settings
from blelock.vendors.nuki.web.settings import NukiWebSettings

__all__ = ["SETTINGS", "NukiSettings", "nuki_settings"]


class NukiSettings(NukiWebSettings):
    """Bluetooth's fields here; the Web API's (``web_url``, ``api_token``) from its module."""

    app_name: str = Field(
        default="blelock",
        max_length=32,
        description="the name a lock shows for this companion's authorization (at most 32 bytes)",
    )
    app_id: int = Field(
        default=0x626C6B31, ge=0, le=0xFFFFFFFF, description="this companion's app id (u32)"
    )

    @field_validator("app_name")
    @classmethod
    def _fits_the_lock(cls, name: str) -> str:
        if len(name.encode()) > 32:
            raise ValueError("the lock stores at most 32 bytes of name (UTF-8)")
        return name


SETTINGS = NukiSettings


def nuki_settings(settings: Settings) -> NukiSettings:
    return settings.section("nuki", NukiSettings)
