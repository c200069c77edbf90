"""`cleave logs UNIT [--follow]`: one unit's structured logs, as each unit process writes them to
`var/<topology>/logs/<unit>.jsonl`, readable for a person or as JSON for a script."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cleave.cli.app import TopologyOption, app, out, system_config
from cleave.config import SystemConfig
from cleave.errors import CleaveError

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
    from cleave.logfiles import LEVELS, LogFilter, LogTail, last_lines, parse_line

    if level is not None and level.lower() not in LEVELS:
        raise CleaveError(f"--level {level!r}: use one of {', '.join(LEVELS)}")
    config = system_config(topology)
    path = _log_file(config, unit)
    wanted = LogFilter(level=(level or "").lower(), text=grep or "", trace=trace or "")

    def show(raw: str) -> None:
        record = parse_line(raw)
        if record is not None and wanted.matches(record, raw):
            if as_json:
                typer.echo(raw)
            else:
                out.print(_readable(record))
            sys.stdout.flush()  # a follower reads each line as it comes, through a pipe too

    tail = LogTail(path)
    try:
        for raw in last_lines(path, tail.read_existing(), lines):
            show(raw)
        while follow:
            written = tail.new_lines()
            for raw in written:
                show(raw)
            if not written:
                time.sleep(0.2)
    except KeyboardInterrupt:
        return
    finally:
        tail.close()


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


def _readable(record: dict[str, Any]) -> str:
    from cleave.logfiles import level_of

    stamp = str(record.get("timestamp", ""))[11:23]
    level = level_of(record)
    where = record.get("service") or record.get("unit") or ""
    fields = " ".join(f"{key}={value}" for key, value in record.items() if key not in SHOWN)
    colour = COLOURS.get(level, "default")
    return (
        f"[dim]{stamp}[/] [{colour}]{level:<7}[/] [bold]{escape(str(where))}[/] "
        f"{escape(str(record.get('event', '')))} [dim]{escape(fields)}[/]"
    )
