"""The ``[acme]`` section."""

from __future__ import annotations

from blelock.config import Section

__all__ = ["SETTINGS", "AcmeSettings"]


class AcmeSettings(Section):
    site: str = "test"


SETTINGS = AcmeSettings
