"""The console's metrics page: RED figures (rate, errors, duration) per service and route, and the
outbox, dead-letter and saga gauges, as small inline SVG charts.

The figures are the units' own Prometheus metrics (`cleave.telemetry`), read as their `/metrics`
serves them: in this process for a monolith, from each unit's metrics port behind the gateway.
Each look at the page keeps a snapshot, so rates and charts grow as long as the page is open."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from html import escape

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scraped:
    """One unit's metrics, as Prometheus text, or why there are none."""

    unit: str
    text: str = ""
    problem: str = ""


Scrape = Callable[[], Awaitable[list[Scraped]]]

# The gauges shown per service, each with what it counts.
GAUGES = {
    "cleave_outbox_pending": "outbox pending",
    "cleave_outbox_oldest_pending_age_seconds": "oldest pending (s)",
    "cleave_dead_letters": "dead letters",
    "cleave_sagas_needing_attention": "sagas needing attention",
}
KEPT_SNAPSHOTS = 60
REFRESH_SECONDS = 5
RouteKey = tuple[str, str]  # service, route


@dataclass
class RouteFigures:
    requests: float = 0.0
    errors: float = 0.0  # answers of 5xx: the service failed, not the client
    # Cumulative counts by upper bound (seconds), as the histogram keeps them.
    buckets: dict[float, float] = field(default_factory=dict)

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket the q-quantile falls in (None: no requests)."""
        total = self.buckets.get(float("inf"), 0.0)
        if not total:
            return None
        return next(bound for bound, count in sorted(self.buckets.items()) if count >= q * total)


@dataclass(frozen=True)
class Snapshot:
    at: float
    routes: dict[RouteKey, RouteFigures]
    gauges: dict[tuple[str, str], float]  # (metric, service): value
    problems: list[str]


def snapshot_of(scraped: Sequence[Scraped], at: float) -> Snapshot:
    """The figures of every unit together (each service lives in one unit, so none overlap)."""
    routes: dict[RouteKey, RouteFigures] = {}
    gauges: dict[tuple[str, str], float] = {}
    problems = [f"unit {s.unit}: {s.problem}" for s in scraped if s.problem]
    for unit in scraped:
        try:
            families = list(text_string_to_metric_families(unit.text))
        except ValueError as unreadable:
            problems.append(f"unit {unit.unit}: its metrics are not Prometheus text ({unreadable})")
            continue
        for family in families:
            for sample in family.samples:
                labels = sample.labels
                key = (labels.get("service", ""), labels.get("route", ""))
                if sample.name == "cleave_http_requests_total":
                    figures = routes.setdefault(key, RouteFigures())
                    figures.requests += sample.value
                    if labels.get("status", "").startswith("5"):
                        figures.errors += sample.value
                elif sample.name == "cleave_http_request_duration_seconds_bucket":
                    buckets = routes.setdefault(key, RouteFigures()).buckets
                    bound = float(labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
                elif sample.name in GAUGES:
                    gauges[(sample.name, key[0])] = sample.value
    return Snapshot(at, routes, gauges, problems)


class MetricsHistory:
    """The last snapshots taken, at most one a second, for rates and charts over time."""

    def __init__(self) -> None:
        self.snapshots: deque[Snapshot] = deque(maxlen=KEPT_SNAPSHOTS)

    def add(self, snapshot: Snapshot) -> None:
        if self.snapshots and snapshot.at - self.snapshots[-1].at < 1.0:
            self.snapshots.pop()
        self.snapshots.append(snapshot)

    def rates(self, key: RouteKey) -> list[float]:
        """Requests a second between each snapshot and the one before it."""
        found = []
        for before, after in zip(self.snapshots, list(self.snapshots)[1:], strict=False):
            then = before.routes.get(key, RouteFigures()).requests
            now = after.routes.get(key, RouteFigures()).requests
            found.append(max(now - then, 0.0) / (after.at - before.at))
        return found

    def gauge(self, name: str, service: str) -> list[float]:
        return [s.gauges.get((name, service), 0.0) for s in self.snapshots]


def sparkline(values: Sequence[float], label: str) -> str:
    """A line of `values` over time, 160 by 32, or a dash while there are fewer than two."""
    if len(values) < 2:
        return "<span class=pending title='shown from the next refresh on'>—</span>"
    top = max(max(values), 1e-9)
    step = 160 / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{30 - v / top * 28:.1f}" for i, v in enumerate(values))
    return (
        f'<svg class="chart sparkline" viewBox="0 0 160 32" width=160 height=32 role=img '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'<polyline points="{points}"/></svg>'
    )


def duration_bars(figures: RouteFigures, label: str) -> str:
    """How many requests took how long: one bar per histogram bucket, 160 by 32."""
    bounds = sorted(figures.buckets)
    counts = [
        figures.buckets[b] - (figures.buckets[a] if a is not None else 0.0)
        for a, b in zip([None, *bounds], bounds, strict=False)
    ]
    top = max(max(counts, default=0.0), 1e-9)
    width = 160 / max(len(counts), 1)
    bars = "".join(
        f'<rect x="{i * width:.1f}" y="{32 - c / top * 30:.1f}" width="{width - 1:.1f}" '
        f'height="{c / top * 30:.1f}"><title>≤ {_seconds(b)}: {c:.0f}</title></rect>'
        for i, (b, c) in enumerate(zip(bounds, counts, strict=True))
    )
    return (
        f'<svg class="chart durations" viewBox="0 0 160 32" width=160 height=32 role=img '
        f'aria-label="{escape(label)}">{bars}</svg>'
    )


def _seconds(bound: float | None) -> str:
    if bound is None:
        return "—"
    if bound == float("inf"):
        return "past the last bucket"
    return f"{bound * 1000:g} ms"


def metrics_body(history: MetricsHistory) -> str:
    """The page's tables, from the latest snapshot and the ones before it."""
    latest = history.snapshots[-1]
    rows = []
    for (service, route), figures in sorted(latest.routes.items()):
        rates = history.rates((service, route))
        share = figures.errors / figures.requests if figures.requests else 0.0
        rows.append(
            f'<tr class=red data-service="{escape(service)}" data-route="{escape(route)}" '
            f'data-count="{figures.requests:.0f}" data-rate="{rates[-1] if rates else 0:.3f}">'
            f"<td>{escape(service)}</td>"
            f"<td class=mono>{escape(route)}</td><td>{figures.requests:.0f}</td>"
            f"<td>{f'{rates[-1]:.2f}/s' if rates else '—'}</td>"
            f"<td>{sparkline(rates, f'requests a second to {route}')}</td>"
            f"<td class={'bad' if figures.errors else 'ok'}>{figures.errors:.0f} "
            f"({share:.0%})</td><td>{_seconds(figures.quantile(0.5))}</td>"
            f"<td>{_seconds(figures.quantile(0.95))}</td>"
            f"<td>{duration_bars(figures, f'durations of {route}')}</td></tr>"
        )
    services = sorted({service for _name, service in latest.gauges})
    gauge_rows = "".join(
        f'<tr data-service="{escape(service)}"><td>{escape(service)}</td>'
        + "".join(
            f'<td data-gauge="{name}">{latest.gauges.get((name, service), 0.0):g} '
            f"{sparkline(history.gauge(name, service), f'{label} of {service}')}</td>"
            for name, label in GAUGES.items()
        )
        + "</tr>"
        for service in services
    )
    problems = "".join(f"<p class=notice>{escape(problem)}</p>" for problem in latest.problems)
    return (
        f"{problems}<h2>Requests per service and route</h2><table id=red><thead><tr>"
        "<th>service</th><th>route</th><th>requests</th><th>rate</th><th>over time</th>"
        "<th>errors (5xx)</th><th>p50</th><th>p95</th><th>durations</th></tr></thead><tbody>"
        + ("".join(rows) or "<tr><td colspan=9>no requests yet</td></tr>")
        + "</tbody></table><h2>Messaging and sagas</h2><table id=gauges><thead><tr>"
        "<th>service</th>"
        + "".join(f"<th>{escape(label)}</th>" for label in GAUGES.values())
        + "</tr></thead><tbody>"
        + (gauge_rows or "<tr><td colspan=5>no figures yet</td></tr>")
        + "</tbody></table>"
    )


async def take_snapshot(scrape: Scrape, history: MetricsHistory) -> Snapshot:
    snapshot = snapshot_of(await scrape(), time.time())
    history.add(snapshot)
    return snapshot
