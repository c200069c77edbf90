"""Edits of cleave.toml line by line: a service added to `[services]`, a topology's one
`units = ...` line written anew. Every other line, comment and blank stays as it was, and the
file is replaced only once the loader accepts what it would become."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleave.config import SystemConfig, load_config
from cleave.errors import ConfigError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class UnitsLine:
    """A topology's `units = ...` line: where it is, what it says, and any comment after it."""

    index: int
    value: Any
    comment: str


def _header(line: str) -> str | None:
    """The table a `[header]` line opens (quotes and spaces removed), else None."""
    stripped = line.split("#", 1)[0].strip()
    if not stripped.startswith("["):
        return None
    return stripped.strip("[]").replace(" ", "").replace('"', "").replace("'", "")


def _table(lines: Sequence[str], name: str) -> range:
    """The lines of table `[name]` after its header, up to the next header."""
    start = next((i for i, line in enumerate(lines) if _header(line) == name), None)
    if start is None:
        raise ConfigError(f"cleave.toml has no [{name}] table")
    end = next((i for i in range(start + 1, len(lines)) if _header(lines[i]) is not None), None)
    return range(start + 1, len(lines) if end is None else end)


def _key(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or "=" not in stripped:
        return None
    return stripped.partition("=")[0].strip().strip("\"'")


def units_line(text: str, topology: str) -> UnitsLine | None:
    """Topology's `units` line, or None when it has none (one unit of every service). A value
    spread over several lines, or a `[topology.<name>.units]` table, is left to a person."""
    lines = text.splitlines()
    for index in _table(lines, f"topology.{topology}"):
        if _key(lines[index]) != "units":
            continue
        line = lines[index]
        for end in [*(m.start() for m in re.finditer("#", line)), len(line)]:
            with contextlib.suppress(tomllib.TOMLDecodeError):
                value = tomllib.loads(line[:end])["units"]
                # The comment keeps the blanks before it, so it stays in its column.
                return UnitsLine(index, value, line[len(line[:end].rstrip()) :])
        break
    if any(_header(line) == f"topology.{topology}.units" for line in lines) or any(
        _key(lines[index]) == "units" for index in _table(lines, f"topology.{topology}")
    ):
        raise ConfigError(
            f"the units of topology {topology!r} are not on one line of cleave.toml: "
            "edit them by hand"
        )
    return None


def render_units(units: Mapping[str, Sequence[str]]) -> str:
    """`{ core = ["a", "b"], other = ["c"] }`, as cleave.toml spells units."""
    entries = ", ".join(
        f"{name if _BARE_KEY.fullmatch(name) else json.dumps(name)} = "
        f"[{', '.join(json.dumps(service) for service in members)}]"
        for name, members in units.items()
    )
    return "{ " + entries + " }"


def with_units(text: str, topology: str, units: Mapping[str, Sequence[str]]) -> str:
    """The file with topology's `units` line saying `units` (added after its header if absent)."""
    lines = text.splitlines(keepends=True)
    found = units_line(text, topology)
    if found is None:
        index = _table(text.splitlines(), f"topology.{topology}").start
        lines.insert(index, f"units = {render_units(units)}\n")
    else:
        indent = lines[found.index][: len(lines[found.index]) - len(lines[found.index].lstrip())]
        ending = "\n" if lines[found.index].endswith("\n") else ""
        comment = found.comment.rstrip("\r\n")
        lines[found.index] = f"{indent}units = {render_units(units)}{comment}{ending}"
    return "".join(lines)


def with_service(text: str, name: str, target: str) -> str:
    """The file with `name = "target"` after the last service of `[services]`."""
    lines = text.splitlines(keepends=True)
    table = _table(text.splitlines(), "services")
    keyed = [index for index in table if _key(lines[index]) is not None]
    index = (keyed[-1] if keyed else table.start - 1) + 1
    if index == len(lines) or not lines[index - 1].endswith("\n"):
        lines[index - 1] = lines[index - 1].rstrip("\r\n") + "\n"
    lines.insert(index, f"{name} = {json.dumps(target)}\n")
    return "".join(lines)


def diff(before: str, after: str, path: Path) -> str:
    """What changed, as a unified diff of the file's lines."""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{path.name} (before)",
            tofile=f"{path.name} (after)",
            n=0,
        )
    )


def checked(path: Path, text: str, topology: str | None = None) -> SystemConfig:
    """The configuration `text` would be as `path`, checked by the loader itself (from a file
    beside it, so that its root is the same); its errors name `path`."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=".cleave-", suffix=".toml")
    written = Path(name)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        return load_config(written, topology)
    except ConfigError as error:
        raise ConfigError(str(error).replace(str(written), str(path))) from None
    finally:
        written.unlink(missing_ok=True)


def write(path: Path, text: str) -> None:
    """Replace the file at once: a reader sees the old text or the new, never half of one."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=".cleave-", suffix=".toml")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    Path(name).chmod(path.stat().st_mode & 0o777)
    Path(name).replace(path)
