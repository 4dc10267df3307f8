"""The ``[nuki]`` settings section (``BLELOCK_NUKI__*``; the flat ``nuki_*`` names work too)."""

from __future__ import annotations

from pydantic import Field

from blelock.config import ApiKey, HttpUrl, Section, Settings

__all__ = ["SETTINGS", "NukiSettings", "nuki_settings"]


class NukiSettings(Section):
    app_name: str = Field(
        default="blelock",
        max_length=32,
        description="the name a lock shows for this companion's authorization (at most 32 bytes)",
    )
    app_id: int = Field(
        default=0x626C6B31, ge=0, le=0xFFFFFFFF, description="this companion's app id (u32)"
    )
    web_url: HttpUrl = Field(
        default="https://api.nuki.io/", description="the Nuki Web API's base URL"
    )
    api_token: ApiKey = Field(
        default=None,
        description="a Nuki Web API token (web.nuki.io → API), sent as a bearer token",
    )


SETTINGS = NukiSettings


def nuki_settings(settings: Settings) -> NukiSettings:
    return settings.section("nuki", NukiSettings)
