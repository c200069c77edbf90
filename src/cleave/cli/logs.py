"""`cleave logs UNIT [--follow]`: one unit's structured logs, as each unit process writes them to
`var/<topology>/logs/<unit>.jsonl`, readable for a person or as JSON for a script."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.markup import escape

from cleave.cli.app import TopologyOption, app, out, system_config
from cleave.config import SystemConfig
from cleave.errors import CleaveError

LEVELS = ("debug", "info", "warning", "error", "critical")
COLOURS = {"debug": "dim", "info": "green", "warning": "yellow", "error": "red", "critical": "red"}
# Fields every line has, shown in its own columns rather than as key=value.
SHOWN = ("timestamp", "level", "event", "unit", "service")


@app.command()
def logs(
    unit: Annotated[str, typer.Argument(help="A unit of the topology, or a service (its unit).")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing lines as they are written.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="How many of the last lines to show.")
    ] = 50,
    level: Annotated[
        str | None, typer.Option(help="Only this level and above (debug ... critical).")
    ] = None,
    grep: Annotated[str | None, typer.Option(help="Only lines containing this text.")] = None,
    trace: Annotated[str | None, typer.Option(help="Only the lines of this trace id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print each line's JSON as is.")] = False,
    topology: TopologyOption = None,
) -> None:
    """Show one unit's logs (the running system's, else the last run's); -f follows them."""
    if level is not None and level.lower() not in LEVELS:
        raise CleaveError(f"--level {level!r}: use one of {', '.join(LEVELS)}")
    config = system_config(topology)
    path = _log_file(config, unit)
    lowest = LEVELS.index(level.lower()) if level else 0

    def wanted(record: dict[str, Any], raw: str) -> bool:
        named = str(record.get("level", "info")).lower()
        return (
            (LEVELS.index(named) if named in LEVELS else 1) >= lowest
            and (grep is None or grep in raw)
            and (trace is None or record.get("trace_id") == trace)
        )

    def show(raw: str) -> None:
        try:
            record = json.loads(raw)
        except ValueError:
            return  # not one of the unit's events (a torn line from a crash)
        if isinstance(record, dict) and wanted(record, raw):
            if as_json:
                typer.echo(raw)
            else:
                out.print(_readable(record))
            sys.stdout.flush()  # a follower reads each line as it comes, through a pipe too

    # One handle for both: no line falls between the last lines shown and the first followed.
    with path.open(errors="replace") as handle:
        for raw in _last_lines(path, handle.read(), lines):
            show(raw)
        if follow:
            try:
                for raw in _follow(path, handle):
                    show(raw)
            except KeyboardInterrupt:
                return


def _log_file(config: SystemConfig, name: str) -> Path:
    from cleave.telemetry import unit_log_path

    units = config.topology.units
    unit = name if name in units else next((u for u, s in units.items() if name in s), None)
    if unit is None:
        raise CleaveError(
            f"no unit or service {name!r} in topology {config.topology.name} "
            f"(its units: {', '.join(units)})"
        )
    path = unit_log_path(config.var_dir, unit)
    if not path.exists():
        raise CleaveError(f"unit {unit} has written no logs yet ({path}): start it, `cleave up`")
    return path


def _last_lines(path: Path, text: str, count: int) -> list[str]:
    """The last `count` lines of `text` (the log file's), the moved-aside file's before them."""
    from cleave.telemetry import rotated_log_path

    older = rotated_log_path(path)
    found = text.splitlines()
    if len(found) < count and older.exists():
        found = older.read_text(errors="replace").splitlines() + found
    return found[-count:] if count else []


def _follow(path: Path, handle: TextIO) -> Generator[str]:
    """Lines appended to `handle` from where it is; on to the new file when it is moved aside
    (closing the old one)."""
    pending = ""
    try:
        while True:
            chunk = handle.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split("\n")
                yield from complete
                continue
            try:
                moved = os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                moved = False  # being moved aside right now: look again in a moment
            if moved:
                # What was written to the old file before the move, then the new one's top.
                pending += handle.read()
                yield from (line for line in pending.split("\n") if line)
                handle.close()
                handle = path.open(errors="replace")
                pending = ""
                continue
            time.sleep(0.2)
    finally:
        handle.close()


def _readable(record: dict[str, Any]) -> str:
    stamp = str(record.get("timestamp", ""))[11:23]
    level = str(record.get("level", "info")).lower()
    where = record.get("service") or record.get("unit") or ""
    fields = " ".join(f"{key}={value}" for key, value in record.items() if key not in SHOWN)
    colour = COLOURS.get(level, "default")
    return (
        f"[dim]{stamp}[/] [{colour}]{level:<7}[/] [bold]{escape(str(where))}[/] "
        f"{escape(str(record.get('event', '')))} [dim]{escape(fields)}[/]"
    )
