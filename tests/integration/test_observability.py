"""Observability of the monolith: one trace per order across HTTP, the saga's steps, the outbox
relay and the consumer; metrics that move when orders succeed, fail and get dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from cleave.config import RateLimitConfig
from cleave.events import Envelope
from cleave.messaging.relay import outbox_state
from cleave.runtime import Unit
from cleave.web.app import create_app
from shop.customer import store as customer_store
from shop.ordering.contract import OrderConfirmed
from tests.conftest import eventually, scrape
from tests.integration.test_order_saga import order, place, settled

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def spans(client: httpx.AsyncClient) -> Iterator[InMemorySpanExporter]:
    """Every span the process ends from now on, kept in memory by the real SDK."""
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)  # set up by the chassis when the app was made
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_an_order_is_one_trace_across_http_saga_relay_and_consumer(
    client: httpx.AsyncClient, customer_headers: Headers, spans: InMemorySpanExporter
) -> None:
    alice = customer_headers("alice")
    order_id = await place(client, alice, order(("MUG-CLASSIC", 1)))
    assert (await settled(client, alice, order_id))["status"] == "confirmed"

    def trace_of_order() -> list[ReadableSpan]:
        posted = [
            s
            for s in spans.get_finished_spans()
            if s.kind is SpanKind.SERVER
            and s.attributes
            and s.attributes.get("http.request.method", s.attributes.get("http.method")) == "POST"
        ]
        assert posted, "no server span for the POST"
        trace_id = posted[-1].context.trace_id
        return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]

    async def whole() -> list[ReadableSpan] | None:
        names = {s.name for s in trace_of_order()}
        wanted = {
            "saga place_order price_lines",
            "saga place_order reserve_stock",
            "saga place_order authorise_payment",
            "saga place_order capture_payment",
            "saga place_order commit_stock",
            "saga place_order completed",
            "publish shop.ordering.order_confirmed.v1",
            "process shop.ordering.order_confirmed.v1",
        }
        return trace_of_order() if wanted <= names else None

    found = await eventually(whole)
    by_id = {s.context.span_id: s for s in found}
    roots = [s for s in found if s.parent is None or s.parent.span_id not in by_id]
    assert len(roots) == 1, [s.name for s in roots]  # every other span hangs under the request
    assert roots[0].kind is SpanKind.SERVER
    consumer = next(s for s in found if s.name == "process shop.ordering.order_confirmed.v1")
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.parent is not None
    # The saga's end, whose transaction (an event of its span) wrote the outbox row; under the
    # span of its last step.
    ending = by_id[consumer.parent.span_id]
    assert ending.name == "saga place_order completed"
    [committed] = [e for e in ending.events if e.name == "transaction ordering"]
    assert committed.attributes is not None
    assert committed.attributes["cleave.transaction.committed"] is True
    assert committed.attributes["cleave.transaction.events"] == 1
    assert ending.parent is not None
    assert by_id[ending.parent.span_id].name == "saga place_order commit_stock"
    # A read, like a transaction, is an event of the span it ran in, not a span of its own.
    assert not [s.name for s in found if s.name.startswith("read ")]
    reads = [e for s in found for e in s.events if e.name == "read catalog"]
    assert reads, "no read of the catalog in the order's trace"
    assert reads[0].attributes is not None
    assert reads[0].attributes["cleave.read.duration_ms"] >= 0
    producer = next(s for s in found if s.name == "publish shop.ordering.order_confirmed.v1")
    assert producer.kind is SpanKind.PRODUCER
    assert producer.attributes is not None
    assert producer.attributes["messaging.system"] == "memory"


async def test_an_idle_unit_leaves_no_trace_and_the_relays_publishing_is_one(
    unit: Unit, client: httpx.AsyncClient, customer_headers: Headers, spans: InMemorySpanExporter
) -> None:
    async def quiet() -> bool:  # what earlier tests left to publish is work, not idling
        states = [await outbox_state(context) for context in unit.contexts.values()]
        return all(state.pending == 0 for state in states)

    await eventually(quiet)
    await asyncio.sleep(0.2)
    spans.clear()
    await asyncio.sleep(2.5)  # relays and saga runners poll about once a second
    idle = [s.name for s in spans.get_finished_spans()]
    assert idle == [], idle

    alice = customer_headers("alice")
    order_id = await place(client, alice, order(("MUG-CLASSIC", 1)))
    assert (await settled(client, alice, order_id))["status"] == "confirmed"

    async def relay_batches() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.name == "relay publish ordering"]

    [batch, *_] = await eventually(relay_batches)
    assert batch.parent is None  # a trace of its own, named for the work
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] >= 1
    roots = {s.name for s in spans.get_finished_spans() if s.parent is None}
    assert not any(name.startswith("read ") for name in roots), roots
    # Each event's publishing stays in the order's trace, linked to the relay's batch.
    [posted] = [s for s in spans.get_finished_spans() if s.name == "POST /api/ordering/v1/orders"]
    published = [
        s
        for s in spans.get_finished_spans()
        if s.name.startswith("publish shop.ordering.") and s.links
    ]
    assert any(s.context.trace_id == posted.context.trace_id for s in published)


async def test_saga_and_consumer_metrics_move_with_outcomes(
    unit: Unit, client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    labels = {"service": "ordering", "saga": "place_order"}
    completed = metric("cleave_sagas_finished_total", **labels, outcome="completed")
    failed = metric("cleave_sagas_finished_total", **labels, outcome="failed")
    bob = customer_headers("bob")
    await settled(client, bob, await place(client, bob, order(("PEN-BRASS", 1))))
    await settled(
        client, bob, await place(client, bob, order(("PEN-BRASS", 1), card="tok_decline"))
    )
    assert metric("cleave_sagas_finished_total", **labels, outcome="completed") == completed + 1
    assert metric("cleave_sagas_finished_total", **labels, outcome="failed") == failed + 1
    assert metric("cleave_saga_duration_seconds_count", **labels, outcome="completed") >= 1

    # An event the handler keeps failing on: retried, then dead-lettered.
    handler = {"service": "customer", "handler": "on_order_confirmed"}
    parked_before = metric("cleave_events_consumed_total", **handler, outcome="dead_lettered")
    retried_before = metric("cleave_events_consumed_total", **handler, outcome="retried")
    consumer = unit.consumers["customer"]
    consumer.backoff_seconds = 0.001

    async def unavailable(*_args: object) -> bool:
        raise RuntimeError("the customer database is unavailable")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(customer_store, "count_confirmed_order", unavailable)
        data = {"order_id": "x", "customer_id": "bob", "total": {"amount": 1, "currency": "EUR"}}
        await consumer.deliver(Envelope(type=OrderConfirmed.event_type, source="/test", data=data))
    assert (
        metric("cleave_events_consumed_total", **handler, outcome="dead_lettered")
        == parked_before + 1
    )
    retried = metric("cleave_events_consumed_total", **handler, outcome="retried")
    assert retried >= retried_before + 4
    # Data that breaks the event's schema: no retry can help, so it is parked at once.
    poison = Envelope(type=OrderConfirmed.event_type, source="/test", data={"order_id": "x"})
    await consumer.deliver(poison)
    assert (
        metric("cleave_events_consumed_total", **handler, outcome="dead_lettered")
        == parked_before + 2
    )
    assert metric("cleave_events_consumed_total", **handler, outcome="retried") == retried

    scraped = await scrape(unit)
    assert 'cleave_dead_letters{service="customer"} 2.0' in scraped
    assert 'cleave_outbox_pending{service="ordering"}' in scraped
    assert 'cleave_db_connections_in_use{service="catalog"}' in scraped


async def test_requests_are_named_and_counted_by_their_whole_route_template(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    route = "/api/catalog/v1/products/{sku}"
    labels = {"service": "catalog", "route": route, "method": "GET", "status": "200"}
    before = metric("cleave_http_requests_total", **labels)
    assert (await client.get("/api/catalog/v1/products/MUG-CLASSIC")).status_code == 200
    assert metric("cleave_http_requests_total", **labels) == before + 1
    served = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert [span.name for span in served] == [f"GET {route}"]


def series(scraped: str) -> set[str]:
    """The HTTP metric series a scrape shows: one per distinct set of labels."""
    return {
        line.split(" ")[0]
        for line in scraped.splitlines()
        if line.startswith(("cleave_http_requests_total{", "cleave_http_request_duration"))
    }


async def test_made_up_paths_and_methods_create_no_metric_series(unit: Unit) -> None:
    import secrets

    # Two hundred requests in a blink are past the rate limit, whose 429s are another matter.
    unit.config = replace(unit.config, rate_limit=RateLimitConfig("off", "off"))
    app = create_app(unit, start_unit=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.test")
    await client.get("/api/nothing-here/x")  # the one series every unknown service shares
    await client.request("BREW", "/api/catalog/v1/products")
    before = series(await scrape(unit))
    for _ in range(100):
        await client.get(f"/api/{secrets.token_hex(6)}/x")
        await client.request(secrets.token_hex(3).upper(), "/api/catalog/v1/products")
    after = series(await scrape(unit))
    await client.aclose()
    assert after == before
    assert any('service="unknown"' in name for name in after)
    assert any('method="OTHER"' in name for name in after)


async def test_the_api_port_serves_no_metrics(unit: Unit, client: httpx.AsyncClient) -> None:
    answer = await client.get("/metrics")
    assert answer.status_code == 404
    assert "cleave_http_requests_total" not in answer.text
    assert "cleave_http_requests_total" in await scrape(unit)
