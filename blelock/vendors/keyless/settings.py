"""The ``[keyless]`` settings section (``BLELOCK_KEYLESS__*``; the flat ``keyless_*`` names
still work)."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from blelock.config import ApiKey, HttpUrl, Section, Settings

__all__ = ["SETTINGS", "KeylessSettings", "keyless_settings"]


class KeylessSettings(Section):
    url: HttpUrl = "https://eu-api.keyless.assaabloy.com/administration/"
    api_key: ApiKey = None
    user_id: UUID | None = Field(
        default=None, description="the Keyless administrator's userId (Administration API login)"
    )
    access_key: ApiKey = None


SETTINGS = KeylessSettings


def keyless_settings(settings: Settings) -> KeylessSettings:
    return settings.section("keyless", KeylessSettings)
