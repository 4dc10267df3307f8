"""What several commands share: settings from the command line, the vendors it names, an
option's date-time."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

from blelock import vendors
from blelock.config import Settings, load_settings
from blelock.errors import UsageError
from blelock.vendors.base import VendorPlugin

__all__ = ["moment_option", "plugins_from", "settings_from"]


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {"BLELOCK_DATA_DIR": args.data_dir} if getattr(args, "data_dir", None) else {}
    return load_settings(Path(args.config) if args.config else None, os.environ | overrides)


def plugins_from(args: argparse.Namespace) -> list[VendorPlugin]:
    """The vendor ``--vendor`` names, or every vendor."""
    vendor = getattr(args, "vendor", None)
    if vendor is not None:
        return [vendors.plugin(vendor)]
    return list(vendors.plugins().values())


def moment_option(text: str | None, option: str) -> dt.datetime | None:
    """``option``'s ISO 8601 date-time, which must name its zone (None when not given); a bad
    one is a usage error naming the option."""
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise UsageError(f"{option} {text!r} needs a time zone (e.g. 2026-11-24T09:00+01:00)")
    return moment
