"""Regenerate ``blelock/protocol/_dfu_cc/dfu_cc_pb2.py`` (and its ``.pyi`` stub) from
``dfu_cc.proto`` beside it, with the protobuf compiler that ``grpcio-tools`` ships and the
stub generator of ``mypy-protobuf`` (protoc's own ``--pyi_out`` stub names a field ``bytes``
where mypy then reads the builtin as that field, and leaves generics bare: not ``--strict``).

    .venv/bin/pip install -e '.[protogen]'            # protoc 35.1 -> Python gencode 7.35.1
    .venv/bin/python scripts/gen_dfu_cc.py            # rewrite the generated files
    .venv/bin/python scripts/gen_dfu_cc.py --check    # exit 1 if they are stale

The generated module checks at import that the ``protobuf`` runtime is at least the gencode's
version (7.35.1), which is why ``pyproject.toml`` asks for ``protobuf>=7.35.1,<8``: moving to
another compiler means moving that floor with it. Nothing else in blelock runs protoc.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "blelock" / "protocol" / "_dfu_cc"
PROTO = HERE / "dfu_cc.proto"
OUTPUTS = ("dfu_cc_pb2.py", "dfu_cc_pb2.pyi")


def generate(out: Path) -> None:
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError:
        sys.exit("grpcio-tools is not installed: pip install -e '.[protogen]'")
    plugin = shutil.which("protoc-gen-mypy", path=str(Path(sys.executable).parent))
    if plugin is None:
        sys.exit("mypy-protobuf is not installed: pip install -e '.[protogen]'")
    args = [
        "protoc",
        f"-I{HERE}",
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        str(PROTO),
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only verify the files are current")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        stale = []
        for name in OUTPUTS:
            fresh = (Path(scratch) / name).read_bytes()
            target = HERE / name
            if args.check:
                if not target.is_file() or target.read_bytes() != fresh:
                    stale.append(name)
            else:
                target.write_bytes(fresh)
                print(f"wrote {target}")
    if stale:
        print(f"stale: {', '.join(stale)}; rerun without --check", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
