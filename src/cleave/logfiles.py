"""Reading the units' log files (`var/<topology>/logs/<unit>.jsonl`, written by
`telemetry.UnitLogFile`): the last lines, the lines written since, and which of them a person
asked for. `cleave logs` and the console's logs page both read them through this module."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cleave.telemetry import rotated_log_path

LEVELS = ("debug", "info", "warning", "error", "critical")


def parse_line(raw: str) -> dict[str, Any] | None:
    """One line's event, or None for a line that is not one (torn by a crash)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def level_of(record: dict[str, Any]) -> str:
    return str(record.get("level", "info")).lower()


@dataclass(frozen=True)
class LogFilter:
    """Which lines a person asks for: every field left empty matches every line."""

    level: str = ""  # this level and above, one of LEVELS
    text: str = ""  # found anywhere in the line, as written
    trace: str = ""
    service: str = ""  # the service the event was logged in

    def __post_init__(self) -> None:
        if self.level and self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {self.level!r}")

    def matches(self, record: dict[str, Any], raw: str) -> bool:
        named = level_of(record)
        lowest = LEVELS.index(self.level) if self.level else 0
        return (
            (LEVELS.index(named) if named in LEVELS else 1) >= lowest
            and (not self.text or self.text in raw)
            and (not self.trace or record.get("trace_id") == self.trace)
            and (not self.service or record.get("service") == self.service)
        )


def last_lines(path: Path, text: str, count: int) -> list[str]:
    """The last `count` lines of `text` (the log file's), the moved-aside file's before them."""
    older = rotated_log_path(path)
    found = text.splitlines()
    if len(found) < count and older.exists():
        found = older.read_text(errors="replace").splitlines() + found
    return found[-count:] if count else []


class LogTail:
    """A log file read as it grows, on to the new file when it is moved aside. One handle for
    what was there and what comes: no line falls between the two."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None
        self._pending = ""

    def read_existing(self, last_bytes: int = 0) -> str:
        """What the file holds now ("" while it does not exist), or with `last_bytes` only its
        whole lines among that much of its end; new lines follow on."""
        if self._handle is None and self.path.exists():
            self._handle = self.path.open(errors="replace")
        if self._handle is None:
            return ""
        size = os.fstat(self._handle.fileno()).st_size
        if not last_bytes or size <= last_bytes:
            return self._handle.read()
        self._handle.seek(size - last_bytes)
        return self._handle.read().partition("\n")[2]  # from the first whole line on

    def new_lines(self) -> list[str]:
        """The whole lines written since the last read (none yet: an empty list)."""
        if self._handle is None:
            if not self.path.exists():
                return []
            self._handle = self.path.open(errors="replace")  # a unit that started since
        chunk = self._handle.read()
        if chunk:
            self._pending += chunk
            *complete, self._pending = self._pending.split("\n")
            return complete
        try:
            moved = os.stat(self.path).st_ino != os.fstat(self._handle.fileno()).st_ino
        except FileNotFoundError:
            moved = False  # being moved aside right now: look again in a moment
        if not moved:
            return []
        # What was written to the old file before the move; the new one's lines come next time.
        rest = self._pending + self._handle.read()
        self._handle.close()
        self._handle = self.path.open(errors="replace")
        self._pending = ""
        return [line for line in rest.split("\n") if line]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
