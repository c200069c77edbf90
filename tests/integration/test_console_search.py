"""Finding a trace again in the console of the monolith: by an order's id (or any attribute
value), by service, by status and by duration, on the overview's form and on its JSON API; a
filter that makes no sense is a 400 problem that names it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry.trace import StatusCode

from cleave.telemetry import tracer
from tests.integration.test_order_saga import order, place, settled

Headers = Callable[[str], dict[str, str]]


async def traces(console: httpx.AsyncClient, **filters: str) -> list[dict[str, Any]]:
    answer = await console.get("/console/api/traces", params=filters)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def test_an_orders_trace_is_found_by_its_id_service_status_and_duration(
    console: httpx.AsyncClient, customer_headers: Headers
) -> None:
    alice = customer_headers("alice")
    order_id = await place(console, alice, order(("MUG-CLASSIC", 1)))
    await settled(console, alice, order_id)
    other = await place(console, alice, order(("PEN-BRASS", 1)))
    await settled(console, alice, other)
    with tracer.start_as_current_span("broken", attributes={"cleave.service": "payment"}) as span:
        span.set_status(StatusCode.ERROR)

    by_id = await traces(console, q=order_id)
    roots = {t["root"] for t in by_id}
    assert "POST /api/ordering/v1/orders" in roots  # the saga's spans carry the order's id
    assert all(other not in str(t) for t in by_id)
    # What happened inside its spans is in the trace too: the transactions and reads.
    [placed] = [t for t in by_id if t["root"] == "POST /api/ordering/v1/orders"]
    detail = (await console.get(f"/console/api/traces/{placed['trace_id']}")).json()
    events = {event["name"] for span in detail["spans"] for event in span["events"]}
    assert {"transaction ordering", "read catalog"} <= events, events
    assert all(event["at_ms"] >= 0 for span in detail["spans"] for event in span["events"])
    everything = await traces(console)
    assert len(everything) > len(by_id)

    assert {t["root"] for t in await traces(console, status="error")} == {"broken"}
    assert all(not t["error"] for t in await traces(console, status="ok"))
    assert all("payment" in t["services"] for t in await traces(console, service="payment"))
    assert not await traces(console, service="storefront", q=order_id)
    slowest = max(t["duration_ms"] for t in everything)
    long_ones = [t["duration_ms"] for t in await traces(console, min_ms=str(slowest))]
    assert slowest in long_ones
    assert all(duration >= slowest for duration in long_ones)

    # The overview's form: the same filters, kept in the form, and a way back to all.
    page = await console.get("/console", params={"q": order_id, "status": "ok"})
    assert page.status_code == 200
    assert "<form id=trace-search" in page.text
    assert f'value="{order_id}"' in page.text
    assert "<option selected>ok</option>" in page.text
    assert "POST /api/ordering/v1/orders" in page.text
    assert "href=/console>clear</a>" in page.text
    nothing = await console.get("/console", params={"q": "no-such-order-anywhere"})
    assert "none matches" in nothing.text


async def test_a_filter_that_makes_no_sense_is_a_problem_naming_it(
    console: httpx.AsyncClient,
) -> None:
    for path in ("/console/api/traces", "/console"):
        for params, named in (({"status": "maybe"}, "status"), ({"min_ms": "soon"}, "min_ms")):
            answer = await console.get(path, params=params)
            assert answer.status_code == 400
            assert answer.headers["content-type"] == "application/problem+json"
            assert named in answer.json()["detail"]


async def test_a_log_or_stream_filter_that_makes_no_sense_is_a_problem_naming_it(
    console: httpx.AsyncClient,
) -> None:
    for path in ("/console/logs", "/console/api/logs", "/console/logs/stream"):
        for params, named in (({"level": "loud"}, "level"), ({"trace": "not-a-trace"}, "trace")):
            answer = await console.get(path, params=params)
            assert answer.status_code == 400, path
            assert answer.headers["content-type"] == "application/problem+json"
            assert named in answer.json()["detail"]
    answer = await console.get("/console/traces/stream", params={"since": "yesterday"})
    assert answer.status_code == 400
    assert "since" in answer.json()["detail"]
