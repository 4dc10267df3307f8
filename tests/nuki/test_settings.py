"""The [nuki] section refuses what the lock could not take, before any pairing starts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from blelock.vendors.nuki.settings import NukiSettings


def test_the_app_name_is_at_most_32_bytes_as_the_lock_stores_it() -> None:
    """The lock keeps 32 bytes of name: 32 characters with an accent are 33 bytes, which
    pairing would cut in the middle of a character."""
    assert NukiSettings.model_validate({"app_name": "a" * 32}).app_name == "a" * 32
    with pytest.raises(ValidationError, match="32 bytes"):
        NukiSettings.model_validate({"app_name": "é" + "a" * 31})
