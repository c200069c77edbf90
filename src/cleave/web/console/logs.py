"""The console's logs page: every unit's log file (`var/<topology>/logs/<unit>.jsonl`) merged by
time, filtered as `cleave logs` filters, and followed live over server-sent events.

Each line sent carries its timestamp as the event's id: a stream that ends (each does after a
while, so that no open page holds a server's shutdown) resumes after the last line shown."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from starlette.requests import Request

from cleave.config import SystemConfig
from cleave.logfiles import LEVELS, LogFilter, LogTail, last_lines, level_of, parse_line
from cleave.telemetry import unit_log_path
from cleave.web.console.markup import select_options

SHOWN_LINES = 300
SCANNED_LINES = 5000  # of each file, for the page and for a stream that resumes
SCANNED_BYTES = 4 << 20  # of each file's end: a stream resumes often, it never reads it all
# Shown in their own columns rather than among the fields.
COLUMNS = ("timestamp", "level", "event", "unit", "service", "trace_id", "span_id")
STREAM_SECONDS = 10.0
POLL_SECONDS = 0.3

Line = tuple[dict[str, Any], str]  # the event, and its line as written


def log_files(config: SystemConfig) -> dict[str, Path]:
    """Each unit's log file, where `serve_unit` has it written (the monolith's one unit too)."""
    return {unit: unit_log_path(config.var_dir, unit) for unit in config.topology.units}


def log_filter(request: Request) -> LogFilter:
    """The filters of a query string (`level`, `q`, `trace`, `service`); ValueError says which
    one is wrong."""
    params = request.query_params
    trace = params.get("trace", "").strip().lower()
    if trace and not (len(trace) == 32 and all(c in "0123456789abcdef" for c in trace)):
        raise ValueError(f"trace must be a trace id (32 hex digits), not {trace[:40]!r}")
    return LogFilter(
        level=params.get("level", "").strip().lower(),
        text=params.get("q", "").strip()[:200],
        trace=trace,
        service=params.get("service", "").strip(),
    )


def _stamp(line: Line) -> str:
    return str(line[0].get("timestamp", ""))


def _wanted(raws: Sequence[str], wanted: LogFilter, after: str) -> list[Line]:
    """The lines of one file (oldest first) that `wanted` keeps, of those written after `after`."""
    found = []
    for raw in reversed(raws):  # newest first: a file's lines are in the order they were logged
        if wanted.text and wanted.text not in raw:
            continue  # cheaper than parsing it first
        record = parse_line(raw)
        if record is None:
            continue
        if after and str(record.get("timestamp", "")) <= after:
            break
        if wanted.matches(record, raw):
            found.append((record, raw))
            if len(found) == SHOWN_LINES:  # no more of this file can be shown
                break
    return found[::-1]


def recent_lines(files: Mapping[str, Path], wanted: LogFilter, *, after: str = "") -> list[Line]:
    """The latest lines of every file that `wanted` keeps (written after `after`), oldest first."""
    tails = [LogTail(path) for path in files.values()]
    try:
        return _existing(tails, wanted, after)
    finally:
        for tail in tails:
            tail.close()


def _existing(tails: Sequence[LogTail], wanted: LogFilter, after: str) -> list[Line]:
    """What the files hold now that `wanted` keeps, oldest first; each tail follows on after."""
    found: list[Line] = []
    for tail in tails:
        text = tail.read_existing(last_bytes=SCANNED_BYTES)
        found += _wanted(last_lines(tail.path, text, SCANNED_LINES), wanted, after)
    found.sort(key=_stamp)
    return found[-SHOWN_LINES:]


def log_row(record: dict[str, Any]) -> str:
    level = level_of(record)
    trace_id = str(record.get("trace_id", ""))
    trace = (
        f'<a class=mono href="/console/traces/{escape(trace_id)}">{escape(trace_id[:12])}…</a>'
        if trace_id
        else ""
    )
    fields = " ".join(f"{key}={value}" for key, value in record.items() if key not in COLUMNS)
    return (
        f'<tr class="log level-{escape(level)}"><td class=mono>'
        f"{escape(str(record.get('timestamp', ''))[11:23])}</td><td>{escape(level)}</td>"
        f"<td>{escape(str(record.get('unit', '')))}</td>"
        f"<td>{escape(str(record.get('service', '')))}</td>"
        f"<td>{escape(str(record.get('event', '')))}</td><td>{trace}</td>"
        f"<td class=mono>{escape(fields)}</td></tr>"
    )


def logs_form(wanted: LogFilter, services: Sequence[str]) -> str:
    return (
        "<form id=log-search method=get action=/console/logs>"
        f'<input type=search name=q placeholder="text in the line" aria-label="search logs" '
        f'value="{escape(wanted.text)}"> '
        "<select name=level aria-label=level>"
        f"{select_options(wanted.level, LEVELS, 'any level')}</select> "
        "<select name=service aria-label=service>"
        f"{select_options(wanted.service, services, 'any service')}</select> "
        f'<input name=trace aria-label="trace id" placeholder="trace id" class=mono '
        f'value="{escape(wanted.trace)}"> <button>filter</button>'
        + (" <a href=/console/logs>clear</a>" if wanted != LogFilter() else "")
        + "</form>"
    )


async def follow_lines(
    request: Request, files: Mapping[str, Path], wanted: LogFilter, after: str
) -> AsyncIterator[str]:
    """Server-sent events: each new line `wanted` keeps, as a table row, for a while."""
    yield "retry: 1000\n\n"
    tails = [LogTail(path) for path in files.values()]
    try:
        # What the page has not shown yet (written since its last line), then what comes.
        unseen = _existing(tails, wanted, after)
        deadline = time.monotonic() + STREAM_SECONDS
        while True:
            for line in unseen:
                data = json.dumps({"html": log_row(line[0])})
                yield f"id: {_stamp(line)}\nevent: row\ndata: {data}\n\n"
            if time.monotonic() > deadline or await request.is_disconnected():
                return
            await asyncio.sleep(POLL_SECONDS)
            written = [raw for tail in tails for raw in tail.new_lines()]
            unseen = sorted(_wanted(written, wanted, after=""), key=_stamp)
    finally:
        for tail in tails:
            tail.close()
