"""What several commands share: settings from the command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from blelock.config import Settings, load_settings


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {"BLELOCK_DATA_DIR": args.data_dir} if getattr(args, "data_dir", None) else {}
    return load_settings(Path(args.config) if args.config else None, os.environ | overrides)


__all__ = ["settings_from"]
