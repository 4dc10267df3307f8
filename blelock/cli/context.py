"""What several commands share: settings from the command line, the vendors it names."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from blelock import registry
from blelock.config import Settings, load_settings
from blelock.vendors.base import VendorPlugin

__all__ = ["plugins_from", "settings_from"]


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {"BLELOCK_DATA_DIR": args.data_dir} if getattr(args, "data_dir", None) else {}
    return load_settings(Path(args.config) if args.config else None, os.environ | overrides)


def plugins_from(args: argparse.Namespace) -> list[VendorPlugin]:
    """The vendor ``--vendor`` names, or every vendor."""
    vendor = getattr(args, "vendor", None)
    if vendor is not None:
        return [registry.plugin(vendor)]
    return list(registry.plugins().values())
