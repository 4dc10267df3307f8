"""The one seam through which a non-platform bleak backend (simulated, proxy) enters.

Settings name a class as ``"package.module:ClassName"``; ``None`` means bleak's own choice for
this platform. Nothing in blelock knows which backend is in use.
"""

from __future__ import annotations

import importlib

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from blelock.errors import ConfigError

__all__ = ["resolve_client_backend", "resolve_scanner_backend"]


def _resolve(spec: str, base: type) -> type:
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"bleak backend {module_name!r} cannot be imported: {exc}") from None
    found = getattr(module, class_name, None)
    if not isinstance(found, type) or not issubclass(found, base):
        raise ConfigError(f"bleak backend {spec!r} is not a {base.__name__} subclass")
    return found


def resolve_client_backend(spec: str | None) -> type[BaseBleakClient] | None:
    return None if spec is None else _resolve(spec, BaseBleakClient)


def resolve_scanner_backend(spec: str | None) -> type[BaseBleakScanner] | None:
    return None if spec is None else _resolve(spec, BaseBleakScanner)
