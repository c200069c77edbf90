"""The console at /console: the topology as a picture, unit health, recent traces (followed
live) with their waterfall and logs, every unit's logs, RED metrics and messaging gauges, and
each service's outbox, inbox and dead letters (with replay); for an
administrator only, except on a monolith that listens on loopback alone (see `access`)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from cleave.telemetry import LOG_SINKS
from cleave.web.console.access import ConsoleAccess, sign_in_required
from cleave.web.console.collect import StoreSpanProcessor, log_sink, span_secret
from cleave.web.console.metrics import Scraped
from cleave.web.console.store import TraceStore
from cleave.web.console.web import Health, console_routes


def collect_here(store: TraceStore) -> None:
    """Keep this process's own spans and trace logs in `store`, with no exporter round trip."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(StoreSpanProcessor(store))
    LOG_SINKS.append(log_sink(store))


__all__ = [
    "ConsoleAccess",
    "Health",
    "Scraped",
    "TraceStore",
    "collect_here",
    "console_routes",
    "sign_in_required",
    "span_secret",
]
