"""The kiosk's Unix-socket listener (issue 19, "Also"): 0600 from birth, only in a directory
no other user may write, a dead service's socket replaced, a live one's never taken."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from blelock.errors import ConfigError
from blelock.service.server import _unix_socket


def private_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    return directory


def test_the_socket_is_owner_only(tmp_path: Path) -> None:
    path = private_dir(tmp_path) / "api.sock"
    with _unix_socket(path):
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600


def test_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(ConfigError, match="may be written by other users"):
        _unix_socket(shared / "api.sock")


def test_a_dead_services_socket_is_replaced_a_live_one_is_not(tmp_path: Path) -> None:
    path = private_dir(tmp_path) / "api.sock"
    with _unix_socket(path), pytest.raises(ConfigError, match="another service is listening"):
        _unix_socket(path)
    assert path.exists()  # closed without unlinking: what a killed service leaves
    with _unix_socket(path) as again:
        assert again.family == socket.AF_UNIX


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = private_dir(tmp_path) / "api.sock"
    path.write_text("not mine to delete")
    with pytest.raises(ConfigError, match="not a socket"):
        _unix_socket(path)
    assert path.read_text() == "not mine to delete"
