"""How spans and logs reach the console's store: straight from this process's tracer provider and
log pipeline, and over OTLP/HTTP (`POST /v1/traces`) from the system's other processes, which
prove they are its units with a secret of the system's own (generated in `var/<topology>/`,
owner-only, and handed to each unit in its environment as an OTLP exporter header)."""

from __future__ import annotations

import hmac
import os
import secrets
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from google.protobuf import json_format
from opentelemetry.context import Context
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from cleave.web.console.store import LogRecord, SpanRecord, TraceStore

SPAN_SECRET_FILE = "span-secret"  # noqa: S105 - the file's name, not its content
_KINDS = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def service_of(attributes: Mapping[str, Any], fallback: str) -> str:
    """Which service a span belongs to, from what the chassis and the instrumentations record."""
    if service := attributes.get("cleave.service"):
        return str(service)
    for key in ("http.route", "url.path", "http.target"):
        path = str(attributes.get(key) or "")
        if path.startswith("/api/"):
            return path.split("/")[2]
    if rpc := attributes.get("rpc.service"):  # <package>.<Service>, as the .proto names it
        parts = str(rpc).split(".")
        return parts[1] if len(parts) > 2 else str(rpc)
    return fallback.removeprefix("cleave-")  # the unit's process, named cleave-<unit>


class StoreSpanProcessor(SpanProcessor):
    """Keeps every span this process ends, without an exporter round trip: ending a span only
    queues it (the oldest dropped past the store's bound); it becomes a record when the console
    reads the store."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self._ended: deque[ReadableSpan] = deque(maxlen=store.max_spans)
        store.add_source(self._records)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self._ended.append(span)

    def _records(self) -> Iterator[SpanRecord]:
        while self._ended:
            if (record := record_of(self._ended.popleft())) is not None:
                yield record

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def record_of(span: ReadableSpan) -> SpanRecord | None:
    context = span.context
    if context is None or span.start_time is None or span.end_time is None:
        return None
    attributes = dict(span.attributes or {})
    fallback = str(span.resource.attributes.get("service.name", "cleave"))
    return SpanRecord(
        trace_id=format(context.trace_id, "032x"),
        span_id=format(context.span_id, "016x"),
        parent_id=format(span.parent.span_id, "016x") if span.parent else None,
        name=span.name,
        service=service_of(attributes, fallback),
        kind=span.kind.name.lower(),
        start_ns=span.start_time,
        end_ns=span.end_time,
        error=span.status.status_code is StatusCode.ERROR,
        attributes=attributes,
        events=tuple((event.name, event.timestamp) for event in span.events),
    )


def decode_otlp(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    if "json" in content_type:
        json_format.Parse(body, request)
    else:
        request.ParseFromString(body)
    return request


def spans_of(request: ExportTraceServiceRequest) -> Iterable[SpanRecord]:
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        fallback = str(resource.get("service.name", "unknown"))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {a.key: _value(a.value) for a in span.attributes}
                yield SpanRecord(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex() or None,
                    name=span.name,
                    service=service_of(attributes, fallback),
                    kind=_KINDS.get(span.kind, "internal"),
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    error=span.status.code == 2,
                    attributes=attributes,
                    events=tuple((event.name, event.time_unix_nano) for event in span.events),
                )


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return (
        getattr(value, kind)
        if kind in ("string_value", "bool_value", "int_value", "double_value")
        else str(value)
    )


def log_record_of(event: Mapping[str, Any], method: str = "info") -> LogRecord | None:
    """A structured log event as the console keeps it: only those logged inside a trace."""
    trace_id = event.get("trace_id")
    if not trace_id:
        return None
    skipped = ("event", "trace_id", "span_id", "timestamp", "level", "service")
    return LogRecord(
        trace_id=str(trace_id),
        time=str(event.get("timestamp", "")),
        level=str(event.get("level", method)),
        service=str(event.get("service", event.get("unit", ""))),
        event=str(event.get("event", "")),
        fields={k: str(v) for k, v in event.items() if k not in skipped},
    )


def log_sink(store: TraceStore) -> Any:
    """A structlog processor that keeps each event logged inside a trace, for that trace's page."""

    def keep(
        _logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if (record := log_record_of(event, method)) is not None:
            store.add_log(record)
        return event

    return keep


def span_secret(state_dir: Path) -> str:
    """This system's span secret, made on first use: owner-only, published by an atomic link so
    that the processes starting together agree on one."""
    path = state_dir / SPAN_SECRET_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        draft = state_dir / f".{SPAN_SECRET_FILE}.{uuid.uuid4().hex}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: use that one
        finally:
            draft.unlink()
    return path.read_text().strip()


def span_export_headers(secret: str) -> str:
    """`OTEL_EXPORTER_OTLP_TRACES_HEADERS` for a unit: its exporter then sends the secret."""
    return "authorization=" + quote(f"Bearer {secret}")


def span_sender_ok(authorization: str, secret: str) -> bool:
    scheme, _, sent = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        sent.strip().encode(), secret.encode()
    )
