"""The Nuki Web API's settings: where it is and the bearer API token that opens it.

The plugin's ``[nuki]`` section takes these fields (``web_url``, ``api_token``); on their own
they are a :class:`~blelock.config.Section` so the section can inherit them.
"""

from __future__ import annotations

from pydantic import Field

from blelock.config import ApiKey, HttpUrl, Section

__all__ = ["NukiWebSettings"]


class NukiWebSettings(Section):
    web_url: HttpUrl = Field(
        default="https://api.nuki.io/", description="the Nuki Web API's base URL"
    )
    api_token: ApiKey = Field(
        default=None,
        description="a Nuki Web API token (web.nuki.io → API), sent as a bearer token",
    )
