"""A unit's log file: whole JSON lines, owner-only, moved aside when full, and followed across
the move."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from cleave.logfiles import LogFilter, LogTail, last_lines
from cleave.telemetry import UnitLogFile, rotated_log_path


def log(sink: UnitLogFile, event: str) -> None:
    sink(None, "info", {"event": event, "level": "info"})


def test_lines_are_whole_json_owner_only_and_moved_aside_when_full(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "shop.jsonl"
    sink = UnitLogFile(path, max_bytes=200)
    for number in range(10):
        log(sink, f"line {number}")
    sink.close()
    assert path.stat().st_mode & 0o777 == 0o600
    older = rotated_log_path(path)
    assert older.name == "shop.1.jsonl"
    newest = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert newest[-1] == "line 9"
    assert len(path.read_text()) < 300  # moved aside, not grown past the limit
    # The last lines asked for come from the older file too when the new one holds fewer.
    assert [json.loads(line)["event"] for line in last_lines(path, path.read_text(), 4)] == [
        f"line {n}" for n in range(6, 10)
    ]


def test_an_exception_is_kept_with_its_traceback(tmp_path: Path) -> None:
    path = tmp_path / "shop.jsonl"
    sink = UnitLogFile(path)
    try:
        raise ValueError("boom")
    except ValueError:
        sink(None, "error", {"event": "failed", "level": "error", "exc_info": True})
    sink.close()
    [record] = [json.loads(line) for line in path.read_text().splitlines()]
    assert "ValueError: boom" in record["exception"]
    assert structlog  # the processor that formats it is structlog's own


def test_a_follower_reads_on_after_the_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "shop.jsonl"
    sink = UnitLogFile(path, max_bytes=150)
    log(sink, "before the follower")
    tail = LogTail(path)
    tail.read_existing()  # where `cleave logs -f` starts: after the lines it has shown
    seen = []
    for number in range(8):  # past max_bytes: the file is moved aside along the way
        log(sink, f"new {number}")
        seen += [json.loads(line)["event"] for line in tail.new_lines() + tail.new_lines()]
    tail.close()
    sink.close()
    assert rotated_log_path(path).exists()
    assert seen == [f"new {n}" for n in range(8)]


def test_a_tail_of_a_file_not_yet_written_reads_it_from_its_start_once_it_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "logs" / "shop.jsonl"
    tail = LogTail(path)
    assert tail.read_existing() == ""
    assert tail.new_lines() == []
    sink = UnitLogFile(path)
    log(sink, "first")
    assert [json.loads(line)["event"] for line in tail.new_lines()] == ["first"]
    tail.close()
    sink.close()


def test_a_filter_keeps_a_level_and_above_a_text_a_trace_and_a_service() -> None:
    line = {"event": "order placed", "level": "warning", "trace_id": "ab", "service": "ordering"}
    raw = json.dumps(line)
    assert LogFilter().matches(line, raw)
    assert LogFilter(level="warning", text="placed", trace="ab", service="ordering").matches(
        line, raw
    )
    assert not LogFilter(level="error").matches(line, raw)
    assert not LogFilter(text="Placed").matches(line, raw)  # as written, like grep
    assert not LogFilter(trace="cd").matches(line, raw)
    assert not LogFilter(service="catalog").matches(line, raw)
    with pytest.raises(ValueError, match="level must be one of"):
        LogFilter(level="loud")


def test_a_tail_may_read_only_the_whole_lines_at_the_end_then_follow_on(tmp_path: Path) -> None:
    path = tmp_path / "shop.jsonl"
    sink = UnitLogFile(path)
    for number in range(100):
        log(sink, f"line {number}")
    tail = LogTail(path)
    lines = tail.read_existing(last_bytes=200).splitlines()
    assert 1 < len(lines) < 10
    assert [json.loads(line)["event"] for line in lines][-1] == "line 99"  # each one whole
    log(sink, "after")
    assert [json.loads(line)["event"] for line in tail.new_lines()] == ["after"]
    tail.close()
    sink.close()
