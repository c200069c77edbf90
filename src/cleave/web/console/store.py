"""An embedded, bounded store of recent spans and logs, so the console needs no infrastructure.

Bounded twice: at most `max_spans` spans and `max_logs` log events, and nothing older than
`retention_seconds`; the oldest go first. Spans this process ends wait in a source (a bounded
queue) and become records only when the console reads, so that ending a span costs next to nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    kind: str
    start_ns: int
    end_ns: int
    error: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    # What happened inside the span (a transaction, a read), each as its name and time.
    events: tuple[tuple[str, int], ...] = ()

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True)
class LogRecord:
    trace_id: str
    time: str
    level: str
    service: str
    event: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root: str
    services: list[str]
    spans: int
    start_ns: int
    duration_ms: float
    error: bool


STATUSES = ("error", "ok")  # what a trace's status filter may ask for, errors first


@dataclass(frozen=True)
class TraceQuery:
    """Which traces a person asks for: every field left empty matches every trace."""

    text: str = ""  # found in a span's name, the trace id or any attribute value (an order id)
    service: str = ""
    status: str = ""  # "", or one of STATUSES
    min_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in ("", *STATUSES):
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")
        if not self.min_ms >= 0:  # also refuses NaN
            raise ValueError(f"min_ms must be a number of milliseconds >= 0, not {self.min_ms}")

    def matches(self, summary: TraceSummary, spans: list[SpanRecord]) -> bool:
        if self.service and self.service not in summary.services:
            return False
        if self.status and (summary.error != (self.status == "error")):
            return False
        if summary.duration_ms < self.min_ms:
            return False
        return not self.text or _mentions(summary.trace_id, spans, self.text.casefold())


def _mentions(trace_id: str, spans: list[SpanRecord], needle: str) -> bool:
    if needle in trace_id:
        return True
    return any(
        needle in span.name.casefold()
        or any(needle in str(value).casefold() for value in span.attributes.values())
        for span in spans
    )


class TraceStore:
    def __init__(
        self, *, max_spans: int = 20_000, max_logs: int = 20_000, retention_seconds: float = 3600
    ) -> None:
        self.max_spans = max_spans
        self.retention_ns = int(retention_seconds * 1e9)
        self._traces: OrderedDict[str, list[SpanRecord]] = OrderedDict()
        self._span_count = 0
        self._logs: deque[LogRecord] = deque(maxlen=max_logs)
        # A count of spans added so far, and each trace's at its latest span: what changed since.
        self._sequence = 0
        self._changed: dict[str, int] = {}
        self._sources: list[Callable[[], Iterable[SpanRecord]]] = []

    def add_source(self, source: Callable[[], Iterable[SpanRecord]]) -> None:
        """`source()` gives the spans that ended since it was last called, read before each
        answer the store gives."""
        self._sources.append(source)

    def add_spans(self, spans: Iterable[SpanRecord]) -> None:
        for span in spans:
            self._traces.setdefault(span.trace_id, []).append(span)
            self._traces.move_to_end(span.trace_id)
            self._span_count += 1
            self._sequence += 1
            self._changed.pop(span.trace_id, None)  # to the end: kept in the order of change
            self._changed[span.trace_id] = self._sequence
        self._evict()

    def add_log(self, record: LogRecord) -> None:
        self._logs.append(record)

    def _settle(self) -> None:
        for source in self._sources:
            self.add_spans(source())

    def _evict(self) -> None:
        horizon = time.time_ns() - self.retention_ns
        while self._traces:
            oldest_id, oldest = next(iter(self._traces.items()))
            if self._span_count <= self.max_spans and max(s.end_ns for s in oldest) >= horizon:
                break
            del self._traces[oldest_id]
            del self._changed[oldest_id]
            self._span_count -= len(oldest)

    @property
    def sequence(self) -> int:
        self._settle()
        return self._sequence

    @property
    def span_count(self) -> int:
        self._settle()
        return self._span_count

    def recent(self, limit: int = 50, query: TraceQuery | None = None) -> list[TraceSummary]:
        """The latest traces, newest first, that `query` matches (all of them without one)."""
        self._settle()
        query = query or TraceQuery()
        found = []
        for trace_id, spans in self._traces.items():
            summary = self._summary(trace_id, spans)
            if query.matches(summary, spans):
                found.append(summary)
        found.sort(key=lambda summary: summary.start_ns, reverse=True)
        return found[:limit]

    def changed_since(
        self, sequence: int, query: TraceQuery | None = None, limit: int = 50
    ) -> list[TraceSummary]:
        """The traces `query` matches that gained a span after `sequence`, newest first."""
        self._settle()
        query = query or TraceQuery()
        found = []
        for trace_id in [t for t, at in self._changed.items() if at > sequence][-limit:]:
            spans = self._traces[trace_id]
            summary = self._summary(trace_id, spans)
            if query.matches(summary, spans):
                found.append(summary)
        found.sort(key=lambda summary: summary.start_ns, reverse=True)
        return found

    def trace(self, trace_id: str) -> tuple[list[SpanRecord], list[LogRecord]]:
        self._settle()
        spans = sorted(self._traces.get(trace_id, []), key=lambda span: span.start_ns)
        return spans, [log for log in self._logs if log.trace_id == trace_id]

    @staticmethod
    def _summary(trace_id: str, spans: list[SpanRecord]) -> TraceSummary:
        ids = {span.span_id for span in spans}
        roots = [span for span in spans if span.parent_id not in ids] or spans
        root = min(roots, key=lambda span: span.start_ns)
        start = min(span.start_ns for span in spans)
        return TraceSummary(
            trace_id=trace_id,
            root=root.name,
            services=sorted({span.service for span in spans}),
            spans=len(spans),
            start_ns=start,
            duration_ms=(max(span.end_ns for span in spans) - start) / 1e6,
            error=any(span.error for span in spans),
        )
