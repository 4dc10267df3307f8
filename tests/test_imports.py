"""Cold start: `blelock --version` and `import blelock.cli` load none of the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("bleak", "httpx", "pydantic", "rich", "cryptography", "starlette", "uvicorn")


def test_cli_import_loads_no_heavy_library() -> None:
    probe = f"import sys, blelock.cli\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_version_runs_without_heavy_libraries() -> None:
    probe = (
        "import sys\n"
        "from blelock.cli import main\n"
        "code = main(['--version'])\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(code, loaded)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    from blelock import __version__

    assert f"blelock {__version__}" in result.stdout
    assert result.stdout.strip().endswith("0 []")


def _loaded(probe: str, modules: tuple[str, ...]) -> list[str]:
    script = (
        f"import sys\n{probe}\n"
        f"print('LOADED:' + ','.join(m for m in {modules!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("LOADED:")]
    return [name for name in line.removeprefix("LOADED:").split(",") if name]


def test_protobuf_is_loaded_only_where_dfu_runs() -> None:
    """The unlock path (a vendor's jobs, the DFU driver it imports, the package type in hints)
    does not load protobuf; reading an init packet does."""
    protobuf = ("google.protobuf", "blelock.protocol._dfu_cc.dfu_cc_pb2")
    unlock_path = (
        "import blelock.vendors.noke.jobs, blelock.vendors.noke.plugin, blelock.dfu, "
        "blelock.protocol.dfu_package, blelock.cli.render"
    )
    assert _loaded(unlock_path, protobuf) == []
    assert _loaded("from blelock.cli import main; main(['--version'])", protobuf) == []
    reading = (
        "from blelock.protocol.dfu_package import read_package\n"
        "read_package('firmware_images/noke-4i-3.15.zip')"
    )
    assert _loaded(reading, protobuf) == list(protobuf)
