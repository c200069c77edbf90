"""Traces and metrics leave over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set, as they would
for Jaeger or any collector: here a real OTLP receiver on loopback decodes what arrives."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import clean_environment, started_cleave
from tests.e2e.conftest import free_port


class Collector:
    """A minimal OTLP/HTTP receiver: it keeps the metric names and span names it is sent."""

    def __init__(self) -> None:
        self.metrics: set[str] = set()
        self.spans: set[str] = set()

    async def receive_metrics(self, request: Request) -> Response:
        export = ExportMetricsServiceRequest()
        export.ParseFromString(await request.body())
        for resource in export.resource_metrics:
            for scope in resource.scope_metrics:
                self.metrics.update(metric.name for metric in scope.metrics)
        return Response(b"", media_type="application/x-protobuf")

    async def receive_traces(self, request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                self.spans.update(span.name for span in scope.spans)
        return Response(b"", media_type="application/x-protobuf")


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    received = Collector()
    app = Starlette(
        routes=[
            Route("/v1/metrics", received.receive_metrics, methods=["POST"]),
            Route("/v1/traces", received.receive_traces, methods=["POST"]),
        ]
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield received, port
    server.should_exit = True
    thread.join(timeout=10)


def test_metrics_and_traces_are_exported_over_otlp(
    collector: tuple[Collector, int], tmp_path: Path
) -> None:
    received, collector_port = collector
    port = free_port()
    environment = clean_environment()
    environment.update(
        CLEAVE_VAR=str(tmp_path / "var"),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector_port}",
        OTEL_METRIC_EXPORT_INTERVAL="300",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    deadline = time.monotonic() + 60
    with started_cleave(
        "up",
        "--port",
        str(port),
        base=f"http://127.0.0.1:{port}",
        log=tmp_path / "up.log",
        env=environment,
        ready="/api/catalog/v1/products/MUG-CLASSIC",
    ):
        while not (
            "cleave_http_requests_total" in received.metrics
            and "cleave_http_request_duration_seconds_count" in received.metrics
            and "GET /api/catalog/v1/products/{sku}" in received.spans
        ):
            assert time.monotonic() < deadline, (sorted(received.metrics), sorted(received.spans))
            time.sleep(0.2)
