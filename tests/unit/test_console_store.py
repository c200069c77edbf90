"""The console's span store: spans this process ends reach it through its processor, with what
happened inside them, and it stays within its bound however many end before anyone reads."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from cleave.web.console.collect import StoreSpanProcessor
from cleave.web.console.store import TraceStore


def tracer_into(store: TraceStore) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(StoreSpanProcessor(store))
    return provider


def test_an_ended_span_is_in_the_store_with_its_events_and_attributes() -> None:
    store = TraceStore()
    tracer = tracer_into(store).get_tracer("test")
    root = "POST /api/ordering/v1/orders"
    with tracer.start_as_current_span(root) as request:
        request.add_event("read catalog")
        with tracer.start_as_current_span("saga place_order price_lines", attributes={"a": 1}):
            pass
    trace_id = format(request.get_span_context().trace_id, "032x")

    [summary] = store.recent()
    assert (summary.trace_id, summary.root, summary.spans) == (trace_id, root, 2)
    spans, _logs = store.trace(trace_id)
    assert [span.name for span in spans] == [root, "saga place_order price_lines"]
    assert [name for name, _at in spans[0].events] == ["read catalog"]
    assert spans[0].start_ns <= spans[0].events[0][1] <= spans[0].end_ns
    assert spans[1].attributes == {"a": 1}
    assert spans[1].parent_id == spans[0].span_id


def test_spans_ended_before_a_read_stay_within_the_bound_newest_kept() -> None:
    store = TraceStore(max_spans=5)
    tracer = tracer_into(store).get_tracer("test")
    for number in range(12):
        with tracer.start_as_current_span(f"work {number}"):
            pass
    assert store.span_count == 5
    assert [summary.root for summary in store.recent()] == [f"work {n}" for n in range(11, 6, -1)]
    assert store.sequence == 5  # the five that reached it; the seven older ones were dropped
    with tracer.start_as_current_span("work 12"):
        pass
    assert [summary.root for summary in store.changed_since(5)] == ["work 12"]
    assert store.span_count == 5
