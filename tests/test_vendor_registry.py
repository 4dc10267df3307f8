"""The vendor registry: lazy, checked, and every plugin's copies of its protocol's constants
agree with the protocol."""

from __future__ import annotations

import subprocess
import sys

import pytest

from blelock import registry, vendors
from blelock.errors import ConfigError


def test_naming_the_vendors_imports_no_plugin() -> None:
    probe = (
        "import sys\nfrom blelock import registry\nnames = registry.names()\n"
        "print(names, [m for m in sys.modules if m.startswith('blelock.vendors')])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['noke', 'keyless', 'nuki', 'unloc'] []"


def test_scanning_constants_agree_with_the_protocols() -> None:
    from blelock.vendors.keyless import protocol as keyless
    from blelock.vendors.noke import protocol as noke

    plugins = vendors.plugins()
    assert tuple(plugins["noke"].service_uuids) == (noke.SERVICE_UUID,)
    assert tuple(plugins["keyless"].service_uuids) == (keyless.SERVICE_UUID,)


@pytest.mark.parametrize("value", ["acme", "=tests.acme", "9x=tests.acme"])
def test_a_malformed_plugin_list_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.PLUGINS_ENV, value)
    with pytest.raises(ConfigError, match="BLELOCK_PLUGINS"):
        vendors.plugins()


def test_a_plugin_that_cannot_be_loaded_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.PLUGINS_ENV, "ghost=tests.no_such_package")
    with pytest.raises(ConfigError, match="'ghost'"):
        vendors.plugins()


def test_an_unknown_vendor_is_refused_naming_the_known_ones() -> None:
    from blelock.errors import UsageError

    with pytest.raises(UsageError) as caught:
        vendors.plugin("acme")
    assert "noke" in caught.value.one_line() and "keyless" in caught.value.one_line()
