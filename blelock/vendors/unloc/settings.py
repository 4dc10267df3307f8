"""The ``[unloc]`` settings section (``BLELOCK_UNLOC__*``; the flat ``unloc_*`` names, such as
``unloc_url``, still work)."""

from __future__ import annotations

from pydantic import Field

from blelock.config import ApiKey, HttpUrl, Section, Settings

__all__ = ["SETTINGS", "UnlocSettings", "unloc_settings"]


class UnlocSettings(Section):
    url: HttpUrl = "https://api.unloc.app/"
    client_id: str | None = Field(default=None, description="the API client's client_id")
    client_secret: ApiKey = None
    project_id: str | None = Field(default=None, description="the Unloc project's id")
    scope: str = Field(default="project.admin", description="the token's scope")


SETTINGS = UnlocSettings


def unloc_settings(settings: Settings) -> UnlocSettings:
    return settings.section("unloc", UnlocSettings)
