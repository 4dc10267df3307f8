"""Vendor plugins, one package each, and the loader that everything above them loops over.

:mod:`blelock.registry` (below the settings) says which vendors there are, as module strings;
here they become plugins (:class:`blelock.vendors.base.VendorPlugin`), each imported when a
command first asks for the plugins. This module imports no plugin and nothing of the seam, so a
simulator that takes one vendor's protocol module pulls in no more than the registry.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING

from blelock import registry
from blelock.errors import ConfigError, UsageError
from blelock.registry import names

if TYPE_CHECKING:
    from blelock.vendors.base import VendorPlugin

__all__ = ["names", "plugin", "plugins"]


@cache
def _load(extra: str) -> dict[str, VendorPlugin]:
    loaded: dict[str, VendorPlugin] = {}
    for name, package in registry.packages(extra).items():
        found: VendorPlugin = registry.load(name, package, "plugin", "PLUGIN")
        if found.name != name:
            raise ConfigError(f"vendor plugin {package} calls itself {found.name!r}, not {name!r}")
        loaded[name] = found
    return loaded


def plugins() -> dict[str, VendorPlugin]:
    """Every plugin, by name, in registry order (built-in first)."""
    return dict(_load(os.environ.get(registry.PLUGINS_ENV, "")))


def plugin(name: str) -> VendorPlugin:
    """One plugin by name; a UsageError naming the known ones for any other."""
    table = plugins()
    try:
        return table[name]
    except KeyError:
        raise UsageError(f"no vendor {name!r}", hint=f"blelock knows: {', '.join(table)}") from None
