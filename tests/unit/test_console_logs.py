"""The console's logs page reads every unit's log file: merged by time, filtered as `cleave logs`
filters, and a stream that resumes sends only what was written after its last line."""

from __future__ import annotations

import json
from pathlib import Path

from cleave.logfiles import LogFilter
from cleave.telemetry import UnitLogFile
from cleave.web.console.logs import recent_lines


def write(sink: UnitLogFile, second: int, event: str, **fields: str) -> None:
    stamp = f"2026-12-04T18:00:{second:02d}.000000Z"
    sink(None, "info", {"event": event, "level": "info", "timestamp": stamp, **fields})


def test_every_units_lines_merged_by_time_filtered_and_resumed_after_a_line(
    tmp_path: Path,
) -> None:
    files = {unit: tmp_path / f"{unit}.jsonl" for unit in ("gateway", "ordering", "missing")}
    ordering, gateway = UnitLogFile(files["ordering"]), UnitLogFile(files["gateway"])
    write(ordering, 1, "order placed", service="ordering")
    write(gateway, 2, "request", service="storefront")
    write(ordering, 3, "saga compensating", service="ordering")
    with files["ordering"].open("a") as torn:
        torn.write("not json, torn by a crash\n")
    write(gateway, 4, "request", service="storefront")
    ordering.close()
    gateway.close()

    def events(wanted: LogFilter, after: str = "") -> list[str]:
        return [record["event"] for record, _raw in recent_lines(files, wanted, after=after)]

    assert events(LogFilter()) == ["order placed", "request", "saga compensating", "request"]
    assert events(LogFilter(service="ordering")) == ["order placed", "saga compensating"]
    assert events(LogFilter(text="saga")) == ["saga compensating"]
    assert events(LogFilter(), after="2026-12-04T18:00:02.000000Z") == [
        "saga compensating",
        "request",
    ]
    [(_record, raw)] = recent_lines(files, LogFilter(text="placed"))
    assert json.loads(raw)["service"] == "ordering"  # the line as written, for the JSON API
