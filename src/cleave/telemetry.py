"""Logs, traces and metrics, set up once per process by the chassis.

Logs are structlog events, JSON one per line (or coloured for a person at a terminal), each with
the service, unit, request id and, inside a span, the trace and span ids. Traces are exported
over OTLP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set; sampling follows the standard
`OTEL_TRACES_SAMPLER` variables.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from prometheus_client import Counter, Gauge, Histogram

from cleave.files import OWNER_ONLY_FILE, private_dir

_configured = False

HTTP_REQUESTS = Counter(
    "cleave_http_requests_total",
    "HTTP requests handled, by service, route, method and status code.",
    ["service", "route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "cleave_http_request_duration_seconds",
    "Time to answer an HTTP request, by service and route.",
    ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
EVENTS_PUBLISHED = Counter(
    "cleave_events_published_total", "Outbox rows the relay delivered.", ["service", "type"]
)
EVENTS_CONSUMED = Counter(
    "cleave_events_consumed_total",
    "Messages a consumer handled, by outcome (applied, duplicate, retried, waited, dead_lettered).",
    ["service", "handler", "outcome"],
)
OUTBOX_PENDING = Gauge(
    "cleave_outbox_pending", "Outbox rows not yet delivered, read at each scrape.", ["service"]
)
OUTBOX_OLDEST_AGE = Gauge(
    "cleave_outbox_oldest_pending_age_seconds",
    "Age of the oldest undelivered outbox row (0 when none), read at each scrape.",
    ["service"],
)
DEAD_LETTERS = Gauge(
    "cleave_dead_letters", "Dead letters not yet replayed, read at each scrape.", ["service"]
)
DB_CONNECTIONS_IN_USE = Gauge(
    "cleave_db_connections_in_use",
    "Database connections checked out, read at each scrape.",
    ["service"],
)
SAGAS_FINISHED = Counter(
    "cleave_sagas_finished_total", "Sagas that ended, by outcome.", ["service", "saga", "outcome"]
)
SAGAS_PARKED = Counter(
    "cleave_sagas_parked_total",
    "Sagas parked as needs_attention after their retries ran out, by the step that failed.",
    ["service", "saga", "step"],
)
SAGAS_NEEDING_ATTENTION = Gauge(
    "cleave_sagas_needing_attention",
    "Sagas waiting for a person (`cleave sagas retry`), read at each scrape.",
    ["service"],
)
SAGA_DURATION = Histogram(
    "cleave_saga_duration_seconds",
    "From a saga's start to its end, by outcome.",
    ["service", "saga", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def _add_trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


# Extra destinations for log events (the console keeps those logged inside a trace).
LOG_SINKS: list[Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]] = []


class UnitLogFile:
    """Every log event of this process's unit, one JSON object a line, for `cleave logs`: appended
    with one write each (a reader never sees half a line), owner-only, and moved aside to
    `<unit>.1.jsonl` once it passes `max_bytes`, so that it never fills the disk."""

    def __init__(self, path: Path, max_bytes: int = 8 << 20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        private_dir(path.parent)
        self._descriptor = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, OWNER_ONLY_FILE)

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        record = structlog.processors.format_exc_info(logger, method, dict(event))
        line = json.dumps(record, default=str, ensure_ascii=False) + "\n"
        with contextlib.suppress(OSError):  # a log line is never worth failing the work for
            if os.fstat(self._descriptor).st_size > self.max_bytes:
                os.replace(self.path, rotated_log_path(self.path))
                os.close(self._descriptor)
                self._descriptor = self._open()
            os.write(self._descriptor, line.encode())
        return event

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._descriptor)


def unit_log_path(state_dir: Path, unit: str) -> Path:
    return state_dir / "logs" / f"{unit}.jsonl"


def rotated_log_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".jsonl") + ".1.jsonl")


_unit_log: UnitLogFile | None = None


def log_to_file(path: Path) -> None:
    """Write this process's log events to `path` too (one unit a process: a later call moves
    them to its file)."""
    global _unit_log
    if _unit_log is not None:
        LOG_SINKS.remove(_unit_log)
        _unit_log.close()
    _unit_log = UnitLogFile(path)
    LOG_SINKS.append(_unit_log)


def _forward_to_sinks(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for sink in LOG_SINKS:
        sink(logger, method, event)
    return event


def configure_logging(*, unit: str | None = None, json_logs: bool | None = None) -> None:
    """Idempotent: the first call wins, so tests and the CLI can both call it."""
    global _configured
    if _configured:
        return
    _configured = True
    if json_logs is None:
        fmt = os.environ.get("CLEAVE_LOG_FORMAT", "")
        json_logs = fmt == "json" or (fmt != "console" and not sys.stderr.isatty())
    level = getattr(logging, os.environ.get("CLEAVE_LOG_LEVEL", "INFO").upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            _forward_to_sinks,
            structlog.processors.format_exc_info if json_logs else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    if unit:
        structlog.contextvars.bind_contextvars(unit=unit)


def configure_tracing(service_name: str) -> None:
    """A tracer provider whose exporter and sampler come from the standard OTEL_* variables."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}
        )
    )
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    ):
        _export_metrics_over_otlp(provider.resource)


def _export_metrics_over_otlp(resource: Any) -> None:
    """The same metrics `/metrics` shows, also pushed over OTLP: each Prometheus counter and gauge
    becomes an observable instrument read at every export (histograms as their count and sum)."""
    from opentelemetry import metrics
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from prometheus_client import REGISTRY

    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    meter = metrics.get_meter("cleave")

    def samples(name: str) -> Callable[[CallbackOptions], list[Observation]]:
        def read(_options: CallbackOptions) -> list[Observation]:
            return [
                Observation(sample.value, dict(sample.labels))
                for family in REGISTRY.collect()
                for sample in family.samples
                if sample.name == name
            ]

        return read

    for family in REGISTRY.collect():
        if not family.name.startswith("cleave_"):
            continue
        if family.type == "counter":
            meter.create_observable_counter(
                f"{family.name}_total",
                [samples(f"{family.name}_total")],
                description=family.documentation,
            )
        elif family.type == "gauge":
            meter.create_observable_gauge(
                family.name, [samples(family.name)], description=family.documentation
            )
        elif family.type == "histogram":
            for part in ("count", "sum"):
                meter.create_observable_counter(
                    f"{family.name}_{part}", [samples(f"{family.name}_{part}")]
                )


tracer = trace.get_tracer("cleave")


def trace_context_of(carrier: dict[str, str]) -> Context:
    """The trace context a message or a saga carries, to continue its trace where it left off."""
    return propagate.extract(carrier)


def current_carrier() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
