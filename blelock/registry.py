"""The vendor registry: which plugins there are, imported only when asked for.

Like pip's command table, it holds module strings: ``blelock --version`` imports no plugin, and
a command imports the plugins it loops over when it first asks. A vendor is wired in with one
line here; more (a test's, a site's own) are named in ``BLELOCK_PLUGINS`` as
``name=package`` separated by commas.

It sits below the settings: loading them needs each vendor's section name and model, which a
plugin keeps in a small module of its own (``<package>.settings:MODEL``, pydantic only), so
reading the settings imports no plugin.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from blelock.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from blelock.vendors.base import VendorPlugin

__all__ = ["PLUGINS_ENV", "REGISTRY", "names", "plugin", "plugins", "settings_models"]

REGISTRY: Mapping[str, str] = {
    "noke": "blelock.vendors.noke",
    "keyless": "blelock.vendors.keyless",
    "nuki": "blelock.vendors.nuki",
    "unloc": "blelock.vendors.unloc",
}
"""Vendor name → its package, which holds ``plugin.PLUGIN`` and ``settings.SETTINGS``."""
PLUGINS_ENV = "BLELOCK_PLUGINS"


def _table(extra: str) -> dict[str, str]:
    table = dict(REGISTRY)
    for item in filter(None, (part.strip() for part in extra.split(","))):
        name, _, package = (text.strip() for text in item.partition("="))
        if not name.isidentifier() or not package:
            raise ConfigError(
                f"{PLUGINS_ENV}: {item!r} is not name=package",
                hint=f"write e.g. {PLUGINS_ENV}=acme=acme_blelock",
            )
        table[name] = package
    return table


def _attribute(name: str, package: str, module: str, attribute: str) -> Any:
    target = f"{package}.{module}:{attribute}"
    try:
        return getattr(importlib.import_module(f"{package}.{module}"), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"vendor plugin {name!r} ({target}) cannot be loaded: {exc}") from None


def names() -> list[str]:
    """Every vendor's name, in registry order (built-in first); imports nothing."""
    return list(_table(os.environ.get(PLUGINS_ENV, "")))


@cache
def _settings_models(extra: str) -> dict[str, type[BaseModel] | None]:
    return {
        name: _attribute(name, package, "settings", "SETTINGS")
        for name, package in _table(extra).items()
    }


def settings_models() -> dict[str, type[BaseModel] | None]:
    """Each vendor's settings section model (None: it has no settings)."""
    return dict(_settings_models(os.environ.get(PLUGINS_ENV, "")))


@cache
def _load(extra: str) -> dict[str, VendorPlugin]:
    loaded: dict[str, VendorPlugin] = {}
    for name, package in _table(extra).items():
        found: VendorPlugin = _attribute(name, package, "plugin", "PLUGIN")
        if found.name != name:
            raise ConfigError(f"vendor plugin {package} calls itself {found.name!r}, not {name!r}")
        loaded[name] = found
    return loaded


def plugins() -> dict[str, VendorPlugin]:
    """Every plugin, by name, in registry order (built-in first)."""
    return dict(_load(os.environ.get(PLUGINS_ENV, "")))


def plugin(name: str) -> VendorPlugin:
    """One plugin by name; a UsageError naming the known ones for any other."""
    table = plugins()
    try:
        return table[name]
    except KeyError:
        raise UsageError(f"no vendor {name!r}", hint=f"blelock knows: {', '.join(table)}") from None
