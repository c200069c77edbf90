"""The console's metrics page reads the units' Prometheus text: requests, 5xx errors and duration
quantiles per service and route, the messaging gauges, rates between looks, and a unit whose
text is not Prometheus's is named rather than failing the page."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cleave.web.console.metrics import MetricsHistory, Scraped, metrics_body, snapshot_of

ROUTE = "/api/catalog/v1/products"


def unit_text(requests: int, failures: int, slow: int = 0) -> str:
    registry = CollectorRegistry()
    counted = Counter(
        "cleave_http_requests", "", ["service", "route", "method", "status"], registry=registry
    )
    timed = Histogram(
        "cleave_http_request_duration_seconds",
        "",
        ["service", "route", "method"],
        buckets=(0.01, 0.1, 1.0),
        registry=registry,
    )
    pending = Gauge("cleave_outbox_pending", "", ["service"], registry=registry)
    counted.labels("catalog", ROUTE, "GET", "200").inc(requests - failures)
    counted.labels("catalog", ROUTE, "GET", "503").inc(failures)
    for _ in range(requests - slow):
        timed.labels("catalog", ROUTE, "GET").observe(0.005)
    for _ in range(slow):
        timed.labels("catalog", ROUTE, "GET").observe(3.0)
    pending.labels("catalog").set(4)
    return generate_latest(registry).decode()


def test_requests_errors_quantiles_and_gauges_per_service_and_route() -> None:
    snapshot = snapshot_of([Scraped("shop", unit_text(20, 2, slow=2))], at=100.0)
    figures = snapshot.routes[("catalog", ROUTE)]
    assert (figures.requests, figures.errors) == (20, 2)
    assert figures.quantile(0.5) == 0.01
    assert figures.quantile(0.95) == float("inf")  # past the last bucket
    assert snapshot.gauges[("cleave_outbox_pending", "catalog")] == 4
    assert snapshot.problems == []


def test_rates_come_from_two_looks_and_a_bad_unit_is_named() -> None:
    history = MetricsHistory()
    history.add(snapshot_of([Scraped("shop", unit_text(10, 0))], at=100.0))
    history.add(
        snapshot_of(
            [Scraped("shop", unit_text(30, 0)), Scraped("other", problem="no answer")], at=105.0
        )
    )
    assert history.rates(("catalog", ROUTE)) == [4.0]
    body = metrics_body(history)
    assert f'data-route="{ROUTE}" data-count="30" data-rate="4.000"' in body
    assert "unit other: no answer" in body
    broken = snapshot_of([Scraped("odd", "this is { not prometheus")], at=110.0)
    assert broken.problems
    assert broken.problems[0].startswith("unit odd:")
