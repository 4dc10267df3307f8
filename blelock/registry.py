"""The vendor registry: which plugins there are, as module strings, and their settings models.

Like pip's command table, it holds module strings: ``blelock --version`` imports no plugin. A
vendor is wired in with one line here; more (a test's, a site's own) are named in
``BLELOCK_PLUGINS`` as ``name=package`` separated by commas.

It sits below the settings: loading them needs each vendor's section name and model, which a
plugin keeps in a small module of its own (``<package>.settings:MODEL``, pydantic only), so
reading the settings imports no plugin. The plugins themselves are loaded a layer up, by
:mod:`blelock.vendors`, which knows what a plugin is.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from blelock.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["PLUGINS_ENV", "REGISTRY", "load", "names", "packages", "settings_models"]

REGISTRY: Mapping[str, str] = {
    "noke": "blelock.vendors.noke",
    "keyless": "blelock.vendors.keyless",
    "nuki": "blelock.vendors.nuki",
    "unloc": "blelock.vendors.unloc",
}
"""Vendor name → its package, which holds ``plugin.PLUGIN`` and ``settings.SETTINGS``."""
PLUGINS_ENV = "BLELOCK_PLUGINS"


def packages(extra: str) -> dict[str, str]:
    """Vendor name → package: the built-in ones, then those that ``extra`` names."""
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


def load(name: str, package: str, module: str, attribute: str) -> Any:
    """``package.module:attribute`` of vendor ``name``; a ConfigError naming it if missing."""
    target = f"{package}.{module}:{attribute}"
    try:
        return getattr(importlib.import_module(f"{package}.{module}"), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"vendor plugin {name!r} ({target}) cannot be loaded: {exc}") from None


def names() -> list[str]:
    """Every vendor's name, in registry order (built-in first); imports nothing."""
    return list(packages(os.environ.get(PLUGINS_ENV, "")))


@cache
def _settings_models(extra: str) -> dict[str, type[BaseModel] | None]:
    return {
        name: load(name, package, "settings", "SETTINGS")
        for name, package in packages(extra).items()
    }


def settings_models() -> dict[str, type[BaseModel] | None]:
    """Each vendor's settings section model (None: it has no settings)."""
    return dict(_settings_models(os.environ.get(PLUGINS_ENV, "")))
