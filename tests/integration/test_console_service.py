"""A service's details in the console of the monolith, as clicking its box in the picture opens
them: its routes, the port it provides and those it calls, the events it publishes and consumes,
and its own spans that ended in error; a service that does not exist is a 404 page."""

from __future__ import annotations

import httpx
from opentelemetry.trace import StatusCode

from cleave.telemetry import tracer


async def test_a_services_page_shows_its_routes_ports_events_and_errors(
    console: httpx.AsyncClient,
) -> None:
    with tracer.start_as_current_span(
        "authorise card", attributes={"cleave.service": "payment"}
    ) as failed:
        failed.set_status(StatusCode.ERROR)
        trace_id = format(failed.get_span_context().trace_id, "032x")
    with tracer.start_as_current_span(
        "elsewhere", attributes={"cleave.service": "catalog"}
    ) as other:
        other.set_status(StatusCode.ERROR)

    overview = (await console.get("/console")).text
    assert 'href="/console/services/payment"' in overview  # the picture's box is the way in

    answer = await console.get("/console/services/payment")
    assert answer.status_code == 200
    details = answer.text.split("<section id=service-details", 1)[1]
    route = "<td class=mono>POST</td><td class=mono>/api/payment/v1/payments/{payment_id}/refund"
    assert route in details
    assert "<td>provides</td><td class=mono>PaymentPort</td>" in details
    assert "authorise, capture, void" in details
    assert "In unit <b>shop</b>" in details
    assert f'href="/console/traces/{trace_id}"' in details
    assert "authorise card" in details
    assert "elsewhere" not in details  # another service's error is not this one's

    ordering = (await console.get("/console/services/ordering")).text
    for called in ("CatalogPort", "CustomerPort", "PaymentPort"):
        assert called in ordering
    assert "in process" in ordering  # one unit: its calls never leave the process
    assert "shop.ordering.order_confirmed.v1" in ordering
    assert 'href="/console/services/customer">customer</a>' in ordering  # who consumes it

    customer = (await console.get("/console/services/customer")).text
    assert "on_order_confirmed" in customer
    assert "on_user_registered" in customer

    missing = await console.get("/console/services/nowhere")
    assert missing.status_code == 404
    assert "No such service" in missing.text
