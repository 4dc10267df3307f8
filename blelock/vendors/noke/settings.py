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
    default_tracking_key: str | None = Field(
        default=None,
        min_length=1,
        description="`blelock sync` without --tracking-key has the cloud issue offline keys for "
        "this tracking key (e.g. the technician's id) on the company's locks",
    )
    default_key_locks: int = Field(
        default=1000,
        ge=1,
        description="the most locks `blelock sync` issues default-tracking-key keys for (the "
        "company's first, as /lock/ lists them); name others with --locks",
    )


SETTINGS = NokeSettings


def noke_settings(settings: Settings) -> NokeSettings:
    return settings.section("noke", NokeSettings)
