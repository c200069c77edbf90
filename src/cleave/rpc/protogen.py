"""Generate the Python code of every contract's `.proto`, next to it:
`python -m cleave.rpc.protogen`.

The generated `_pb2.py` and `_pb2.pyi` files are checked in, and a test regenerates them into a
temporary folder and fails on any difference, so they never drift from their source. Needs the
dev dependency grpcio-tools.
"""

from __future__ import annotations

import sys
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # src/


def proto_files(root: Path = SOURCE_ROOT) -> list[Path]:
    """Every contract's `.proto`, relative to the source root (its import path)."""
    return sorted(path.relative_to(root) for path in root.glob("*/*/contract/*.proto"))


def generate(out: Path, root: Path = SOURCE_ROOT, protos: list[Path] | None = None) -> list[Path]:
    """Write `_pb2.py` and `_pb2.pyi` for `protos` (paths under `root`; by default every
    contract's) into `out`; return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    protos = proto_files(root) if protos is None else protos
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    arguments = [
        "protoc",
        f"--proto_path={root}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        *map(str, protos),
    ]
    if protoc.main(arguments) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(map(str, protos))}")
    return [out / proto.with_name(proto.stem + suffix) for proto in protos for suffix in _GENERATED]


_GENERATED = ("_pb2.py", "_pb2.pyi")


if __name__ == "__main__":
    for path in generate(SOURCE_ROOT):
        print(path.relative_to(SOURCE_ROOT))
    sys.exit(0)
