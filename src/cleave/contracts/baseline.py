"""The checked-in contracts under `contracts/<kind>/`: what each service published last, against
which today's code is compared. A kind's `--write` refreshes them, and refuses a breaking change:
otherwise rewriting the baseline would make any change pass."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleave.config import SystemConfig, load_config
from cleave.errors import CleaveError

Document = dict[str, Any]


@dataclass(frozen=True)
class Findings:
    """`breaking`: changes that break another side; `outdated`: compatible differences (or new
    contracts) that the checked-in files do not have yet, which `--write` records."""

    breaking: list[str] = field(default_factory=list)
    outdated: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [*self.breaking, *self.outdated]


def folder(config: SystemConfig, kind: str) -> Path:
    return config.root / "contracts" / kind


def serialise(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def read_documents(where: Path) -> dict[str, Document]:
    """Each `<name>.json` in `where` by name (an event type keeps its dots: `a.b.c.v1`)."""
    documents: dict[str, Document] = {}
    for path in sorted(where.glob("*.json")):
        try:
            documents[path.name.removesuffix(".json")] = json.loads(path.read_text())
        except ValueError as error:
            raise CleaveError(f"{path}: not JSON: {error}") from None
    return documents


def write_documents(where: Path, documents: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """Make `where` hold exactly `documents`; the files that changed (written or deleted)."""
    where.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for name, document in documents.items():
        path = where / f"{name}.json"
        text = serialise(document)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    for path in sorted(where.glob("*.json")):
        if path.name.removesuffix(".json") not in documents:
            path.unlink()
            changed.append(path)
    return changed


def command(
    argv: list[str],
    kind: str,
    findings: Callable[[SystemConfig], Findings],
    write: Callable[[SystemConfig], list[Path]],
) -> int:
    """`python -m cleave.contracts.<kind> [--write]`: list the problems (exit 1 if any), or
    refresh the checked-in files unless a change would break another side."""
    if argv not in ([], ["--write"]):
        print(f"usage: python -m cleave.contracts.{kind} [--write]", file=sys.stderr)
        return 2
    try:
        config = load_config()
        found = findings(config)
        if not argv:
            for line in found.problems:
                print(line)
            return 1 if found.problems else 0
        if found.breaking:
            for line in found.breaking:
                print(line)
            print(f"{kind}: nothing written: make the change compatible, or version it")
            return 1
        for path in write(config):
            done = "wrote" if path.exists() else "removed"
            print(f"{done} {path.relative_to(config.root)}")
    except CleaveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
