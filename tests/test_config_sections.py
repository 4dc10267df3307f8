"""Settings per vendor section: the current names, the flat names of earlier releases, and
unknown variables refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from blelock.config import load_settings
from blelock.errors import ConfigError
from blelock.vendors.keyless.settings import keyless_settings
from blelock.vendors.noke.settings import noke_settings


def test_a_vendor_section_in_the_file_and_nested_variables(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('scan_timeout = 3\n[noke]\nurl = "http://127.0.0.1:9"\napi_key = "k1"\n')
    settings = load_settings(config, {"BLELOCK_NOKE__MOBILE_KEY": "m1"})
    noke = noke_settings(settings)
    assert noke.url == "http://127.0.0.1:9/" and settings.scan_timeout == 3
    assert noke.api_key is not None and noke.api_key.get_secret_value() == "k1"
    assert noke.mobile_key is not None and noke.mobile_key.get_secret_value() == "m1"


def test_flat_names_of_earlier_releases_still_work(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('noke_url = "http://127.0.0.1:8"\noffline_key_lifetime_days = 2\n')
    settings = load_settings(config, {"BLELOCK_KEYLESS_URL": "http://127.0.0.1:7"})
    assert noke_settings(settings).url == "http://127.0.0.1:8/"
    assert noke_settings(settings).offline_key_lifetime_days == 2
    assert keyless_settings(settings).url == "http://127.0.0.1:7/"


def test_the_environment_wins_over_the_file_and_the_section_over_the_flat_name(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('noke_url = "http://127.0.0.1:1"\n[noke]\nurl = "http://127.0.0.1:2"\n')
    assert noke_settings(load_settings(config, {})).url == "http://127.0.0.1:2/"
    environ = {"BLELOCK_NOKE__URL": "http://127.0.0.1:3"}
    assert noke_settings(load_settings(config, environ)).url == "http://127.0.0.1:3/"


@pytest.mark.parametrize(
    ("name", "said"),
    [("BLELOCK_NOKE_APIKEY", "BLELOCK_NOKE_APIKEY"), ("BLELOCK_SCANTIMEOUT", "SCANTIMEOUT")],
)
def test_an_unknown_variable_is_refused_by_name(name: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        load_settings(environ={name: "1"}, read_file=False)


def test_an_unknown_field_in_a_section_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[noke]\nurll = 'x'\n")
    with pytest.raises(ConfigError, match=r"noke\.urll"):
        load_settings(config, {})


def test_a_secret_never_appears_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"BLELOCK_NOKE__API_KEY": "se cret"}, read_file=False)
    assert "se cret" not in str(caught.value) and "noke.api_key" in str(caught.value)
