"""The ``[noke]`` settings section (``BLELOCK_NOKE__*``; the flat ``noke_*`` names still work)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field

from blelock.config import ApiKey, HttpUrl, Section, Settings

__all__ = ["SETTINGS", "NokeSettings", "noke_settings"]


class NokeSettings(Section):
    legacy_names: ClassVar[Mapping[str, str]] = {
        "offline_key_lifetime_days": "offline_key_lifetime_days"
    }

    url: HttpUrl = "https://coreapi-sandbox.appspot.com/"
    api_key: ApiKey = Field(default=None, description="the Core API key (unlock, sync keys)")
    mobile_key: ApiKey = Field(default=None, description="the mobile key (log uploads)")
    offline_key_lifetime_days: float = Field(
        default=30, gt=0, description="how long a synced offline key is trusted without a sync"
    )


SETTINGS = NokeSettings


def noke_settings(settings: Settings) -> NokeSettings:
    return settings.section("noke", NokeSettings)
