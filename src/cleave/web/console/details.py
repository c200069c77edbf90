"""One service as the console shows it when its box in the picture is clicked: its unit, its
routes, the port it provides and the ports it calls, the events it publishes and consumes (with
whom, as the picture draws them), and its recent errors from the console's span store."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from cleave.config import SystemConfig
from cleave.service import Service
from cleave.web.console.markup import clock_time
from cleave.web.console.picture import SERVICE_PAGE, Edge, topology_edges
from cleave.web.console.store import TraceQuery, TraceStore

RECENT_ERRORS = 10
# The page of one service: its picture and its details side by side where the window allows.
DETAILS_STYLE = """
.service-view{display:flex;flex-wrap:wrap;gap:0 32px;align-items:flex-start}
.service-view>div{max-width:100%} #service-details{flex:1 1 480px}
#service-details h2{margin-top:0}
"""


def service_details(
    config: SystemConfig, services: Mapping[str, Service], store: TraceStore, name: str
) -> str:
    """The details panel of service `name` (one of `services`), as HTML."""
    service = services[name]
    edges = topology_edges(config, services)
    unit = config.topology.unit_of(name)
    routes = "".join(
        f"<tr><td class=mono>{escape(methods)}</td><td class=mono>{escape(path.strip())}</td></tr>"
        for methods, _, path in (line.partition(" ") for line in service.routes())
    )
    provided = ""
    if service.port is not None:
        protocol = service.port.protocol
        operations = ", ".join(sorted(n for n, v in vars(protocol).items() if _operation(n, v)))
        rpc = service.port.rpc
        grpc = (
            ", ".join(s.full_name for s in rpc.DESCRIPTOR.services_by_name.values()) if rpc else ""
        )
        provided = (
            f"<tr><td>provides</td><td class=mono>{escape(protocol.__name__)}</td>"
            f"<td class=mono>{escape(operations)}</td><td>gRPC service "
            f"<span class=mono>{escape(grpc)}</span></td></tr>"
        )
    called = "".join(
        f"<tr><td>calls</td><td class=mono>{escape(edge.name)}</td><td>{_link(edge.target)}</td>"
        f"<td>{'gRPC' if edge.remote else 'in process'}</td></tr>"
        for edge in edges
        if edge.kind == "call" and edge.source == name
    )
    published = "".join(
        f"<tr><td>publishes</td><td class=mono>{escape(event.event_type)}</td>"
        f"<td>{_consumers(edges, name, event.event_type)}</td></tr>"
        for event in service.publishes
    )
    consumed = "".join(
        f"<tr><td>consumes</td><td class=mono>{escape(sub.event.event_type)}</td>"
        f"<td>{_publishers(edges, name, sub.event.event_type)} → "
        f"<span class=mono>{escape(sub.name)}</span></td></tr>"
        for sub in service.subscriptions
    )
    return (
        f"<section id=service-details data-service='{escape(name)}'>"
        f"<h2>Service {escape(name)}</h2><p>{escape(service.description)}</p>"
        f"<p>In unit <b>{escape(unit)}</b> of topology {escape(config.topology.name)}.</p>"
        "<h3>Routes</h3><table id=service-routes><tr><th>methods</th><th>path</th></tr>"
        f"{routes or '<tr><td colspan=2>none</td></tr>'}</table>"
        "<h3>Ports</h3><table id=service-ports><tr><th>role</th><th>port</th>"
        "<th>operations or provider</th><th>over</th></tr>"
        f"{provided + called or '<tr><td colspan=4>none</td></tr>'}</table>"
        "<h3>Events</h3><table id=service-events><tr><th>role</th><th>event</th><th>with</th></tr>"
        f"{published + consumed or '<tr><td colspan=3>none</td></tr>'}</table>"
        f"<h3>Recent errors</h3>{_recent_errors(store, name)}</section>"
    )


def _operation(name: str, value: object) -> bool:
    return not name.startswith("_") and callable(value)


def _link(service: str) -> str:
    return f'<a href="{SERVICE_PAGE.format(escape(service))}">{escape(service)}</a>'


def _consumers(edges: list[Edge], publisher: str, event_type: str) -> str:
    found = [
        e.target for e in edges if (e.kind, e.source, e.name) == ("event", publisher, event_type)
    ]
    return ", ".join(map(_link, found)) or "no subscriber in this system"


def _publishers(edges: list[Edge], subscriber: str, event_type: str) -> str:
    found = [
        e.source for e in edges if (e.kind, e.target, e.name) == ("event", subscriber, event_type)
    ]
    return ", ".join(map(_link, found)) or "no publisher in this system"


def _recent_errors(store: TraceStore, name: str) -> str:
    """The latest spans of this service that ended in error, each linked to its trace."""
    rows = []
    for summary in store.recent(RECENT_ERRORS, TraceQuery(service=name, status="error")):
        spans, _logs = store.trace(summary.trace_id)
        for span in spans:
            if span.service == name and span.error:
                rows.append(
                    f"<tr><td>{clock_time(span.start_ns)}</td><td>{escape(span.name)}</td>"
                    f'<td><a class=mono href="/console/traces/{escape(span.trace_id)}">'
                    f"{escape(span.trace_id[:16])}…</a></td></tr>"
                )
    if not rows:
        return "<p id=service-errors>none in the console's recent traces</p>"
    return (
        "<table id=service-errors><tr><th>at</th><th>span</th><th>trace</th></tr>"
        + "".join(rows[:RECENT_ERRORS])
        + "</table>"
    )
