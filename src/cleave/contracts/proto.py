"""The gRPC contracts, guarded: a copy of each port's `.proto` as last released is checked in
under `contracts/proto/` (by its import path), and `buf breaking` compares today's against it
with the WIRE_JSON rules, those that matter between two units running different versions: no
field renumbered or retyped, none removed without `reserved`, no rpc or message removed.

buf comes from the npm package `@bufbuild/buf`, installed in `tools/contracts` by `make test`.
`python -m cleave.contracts.proto` lists the problems; `--write` refreshes the copies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cleave.config import SystemConfig
from cleave.contracts import baseline
from cleave.contracts.baseline import Findings
from cleave.errors import CleaveError
from cleave.runtime import load_services
from cleave.service import Service

KIND = "proto"
WRITE_COMMAND = "python -m cleave.contracts.proto --write"
BUF = Path("tools/contracts/node_modules/.bin/buf")
INSTALL_BUF = "npm ci --prefix tools/contracts"
BUF_CONFIG = json.dumps({"version": "v2", "breaking": {"use": ["WIRE_JSON"]}})


def offered(services: Mapping[str, Service]) -> dict[str, tuple[str, Path]]:
    """Each `.proto` a service offers its port over, by import path: (service, source file)."""
    protos: dict[str, tuple[str, Path]] = {}
    for name, service in services.items():
        if service.port is None or service.port.rpc is None:
            continue
        module = service.port.rpc
        import_path = module.DESCRIPTOR.name
        source = Path(str(module.__file__)).with_name(Path(import_path).name)
        protos[import_path] = (name, source)
    return dict(sorted(protos.items()))


def callers(services: Mapping[str, Service]) -> dict[str, list[str]]:
    """The services that call each service's port."""
    return {
        name: [other for other, caller in services.items() if service.port.protocol in caller.calls]
        for name, service in services.items()
        if service.port is not None
    }


def compare(
    current: Mapping[str, tuple[str, str]],
    checked_in: Mapping[str, str],
    called_by: Mapping[str, list[str]],
    buf: Path | None,
    service: str | None = None,
) -> Findings:
    """Today's `.proto` texts (import path → (service, text)) against the checked-in ones."""
    found = Findings()
    owners = {path: owner for path, (owner, _) in current.items()}
    mine = [path for path in current if service in (None, owners[path])]
    for path in checked_in:
        if path not in current and (service is None or service in Path(path).parts):
            found.breaking.append(
                f"proto: {path} is no longer offered: a unit still calling it would break"
            )
    changed = [path for path in mine if path in checked_in and current[path][1] != checked_in[path]]
    if changed and buf is None:
        found.breaking.append(f"proto: buf is not installed: run {INSTALL_BUF}")
        return found
    broken: set[str] = set()
    if changed and buf is not None:
        for path, line, message in _buf_breaking(
            buf, {p: current[p][1] for p in changed}, {p: checked_in[p] for p in changed}
        ):
            broken.add(path)
            owner = owners[path]
            who = (
                f"{owner} (called by {', '.join(called_by[owner])})"
                if called_by.get(owner)
                else owner
            )
            found.breaking.append(f"proto: {who}: {path}:{line}: {message}")
    for path in mine:
        if path not in checked_in:
            found.outdated.append(f"proto: {path} has no checked-in copy yet: run {WRITE_COMMAND}")
        elif path in changed and path not in broken:
            found.outdated.append(f"proto: {path} changed compatibly: run {WRITE_COMMAND}")
    return found


def findings(config: SystemConfig, service: str | None = None) -> Findings:
    if service is not None:
        config.require_service(service)
    services = load_services(config)
    current = {path: (owner, src.read_text()) for path, (owner, src) in offered(services).items()}
    return compare(current, read_copies(config), callers(services), find_buf(config), service)


def verify(config: SystemConfig, service: str | None = None) -> list[str]:
    """The problems of the `.proto` contracts of `service` (or of every service), one line each."""
    return findings(config, service).problems


def read_copies(config: SystemConfig) -> dict[str, str]:
    where = baseline.folder(config, KIND)
    return {
        path.relative_to(where).as_posix(): path.read_text()
        for path in sorted(where.rglob("*.proto"))
    }


def write(config: SystemConfig) -> list[Path]:
    """Copy each offered `.proto` under `contracts/proto/`, and delete copies no longer offered."""
    where = baseline.folder(config, KIND)
    current = offered(load_services(config))
    changed: list[Path] = []
    for import_path, (_, source) in current.items():
        target = where / import_path
        if not target.is_file() or target.read_text() != source.read_text():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            changed.append(target)
    for kept in sorted(where.rglob("*.proto")):
        if kept.relative_to(where).as_posix() not in current:
            kept.unlink()
            changed.append(kept)
    return changed


def find_buf(config: SystemConfig) -> Path | None:
    """The system's own buf (`tools/contracts`), else one on the PATH."""
    if (config.root / BUF).is_file():
        return config.root / BUF
    found = shutil.which("buf")
    return Path(found) if found else None


def _buf_breaking(
    buf: Path, current: Mapping[str, str], against: Mapping[str, str]
) -> list[tuple[str, int, str]]:
    """`buf breaking` of `current` against `against` (texts by import path): (path, line,
    message) for each rule broken."""
    with tempfile.TemporaryDirectory(prefix="cleave-buf-") as scratch:
        for side, files in (("current", current), ("against", against)):
            for import_path, text in files.items():
                target = Path(scratch, side, import_path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        arguments = ["breaking", ".", "--against", "../against", "--config", BUF_CONFIG]
        try:
            run = subprocess.run(  # noqa: S603 (buf is the system's own tool, the arguments ours)
                [str(buf), *arguments, "--error-format", "json"],
                cwd=Path(scratch, "current"),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise CleaveError(f"{buf} could not run: {error}") from None
    if run.returncode not in (0, 100):  # 100: breaking changes found, reported on stdout
        raise CleaveError(f"buf breaking failed: {(run.stderr or run.stdout).strip()}")
    results = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    return [(item["path"], item.get("start_line", 0), item["message"]) for item in results]


if __name__ == "__main__":
    sys.exit(baseline.command(sys.argv[1:], KIND, findings, write))
