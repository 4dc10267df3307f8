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
