"""The ``[unloc]`` section: its fields from the file or the environment (flat ``unloc_url``
too), the secret a SecretStr, and what is missing named before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from blelock.config import load_settings
from blelock.errors import ConfigError
from blelock.vendors.unloc.cloud import UnlocCloud
from blelock.vendors.unloc.settings import unloc_settings

SECRET = "s3cr3t-client-secret-value"


def test_the_section_from_a_file_and_the_flat_url(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'unloc_url = "http://127.0.0.1:9/"\n[unloc]\nclient_id = "kiosk"\n'
        f'client_secret = "{SECRET}"\nproject_id = "p-1"\n'
    )
    settings = load_settings(config, {})
    section = unloc_settings(settings)
    assert section.url == "http://127.0.0.1:9/" and section.client_id == "kiosk"
    assert section.client_secret is not None
    assert section.client_secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings) + str(section) + repr(section.model_dump())


def test_the_environment_names_and_what_is_missing() -> None:
    settings = load_settings(
        environ={"BLELOCK_UNLOC__CLIENT_ID": "kiosk", "BLELOCK_UNLOC_CLIENT_SECRET": SECRET},
        read_file=False,
    )
    with pytest.raises(ConfigError) as caught:
        UnlocCloud.from_settings(settings)
    assert "needs project_id in [unloc]" in caught.value.one_line()
    assert "BLELOCK_UNLOC__PROJECT_ID" in caught.value.one_line()
    assert SECRET not in caught.value.one_line()


def test_a_secret_with_a_line_break_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"BLELOCK_UNLOC__CLIENT_SECRET": SECRET + "\nx"}, read_file=False)
    assert "unloc.client_secret" in caught.value.one_line()
    assert SECRET not in caught.value.one_line()
