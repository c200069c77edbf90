"""The console's pages and its OTLP/HTTP receiver, as routes any unit app or the gateway mounts.

Server-rendered HTML with a little CSS and no script: it works without a build step or a CDN.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from cleave.config import SystemConfig
from cleave.service import Service
from cleave.web.console.collect import decode_otlp, spans_of
from cleave.web.console.picture import topology_svg
from cleave.web.console.store import SpanRecord, TraceStore

if TYPE_CHECKING:
    from cleave.runtime import Unit

Health = Callable[[], Awaitable[Mapping[str, str]]]

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#f6f7fa}
h1{font-size:20px} h2{font-size:16px;margin-top:28px} a{color:#2a5bd7}
table{border-collapse:collapse;background:white;min-width:50%}
td,th{padding:4px 10px;border-bottom:1px solid #e3e6ee;text-align:left;vertical-align:top}
.ok{color:#1a7f37}.bad{color:#c62828} .mono{font-family:ui-monospace,monospace;font-size:12px}
svg.topology{background:white;border:1px solid #e3e6ee;border-radius:8px}
.unit{fill:#eef2fb;stroke:#9aa9cf}.unit-name{font-size:12px;fill:#44507a}
.service{fill:white;stroke:#2a5bd7}.service-name{text-anchor:middle;font-size:13px}
.call{stroke:#2a5bd7;fill:none;stroke-width:1.5}
.event{stroke:#b06d00;fill:none;stroke-dasharray:5 4}
.edge-label{font-size:11px;fill:#555;text-anchor:middle} marker path{fill:#555}
.waterfall{background:white;border:1px solid #e3e6ee;border-radius:8px;padding:8px}
.row{display:flex;align-items:center;height:24px;font-size:12px}
.label{width:380px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.lane{position:relative;flex:1;height:16px;background:#f3f5f9}
.bar{position:absolute;height:16px;border-radius:3px;min-width:2px}
.dur{width:80px;text-align:right;color:#555}
"""
PALETTE = ("#2a5bd7", "#1a7f37", "#b06d00", "#8e44ad", "#c62828", "#00838f", "#6d4c41")


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def console_routes(
    store: TraceStore,
    config: SystemConfig,
    services: Mapping[str, Service],
    health: Health,
    unit: Unit | None = None,
) -> list[BaseRoute]:
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(config.services)}

    async def overview(_request: Request) -> HTMLResponse:
        states = await health()
        health_rows = "".join(
            f"<tr><td>{escape(name)}</td><td class={'ok' if state == 'ok' else 'bad'}>"
            f"{escape(state)}</td></tr>"
            for name, state in states.items()
        )
        trace_rows = "".join(
            f'<tr><td><a class=mono href="/console/traces/{t.trace_id}">{t.trace_id[:16]}…</a></td>'
            f"<td>{escape(t.root)}</td><td>{escape(', '.join(t.services))}</td><td>{t.spans}</td>"
            f"<td>{t.duration_ms:.1f} ms</td><td>{_when(t.start_ns)}</td>"
            f"<td class={'bad' if t.error else 'ok'}>{'error' if t.error else 'ok'}</td></tr>"
            for t in store.recent(50)
        )
        messaging = await _messaging(unit) if unit is not None else ""
        return _page(
            "Cleave console",
            f"<h1>Cleave · {escape(config.name)} · topology {escape(config.topology.name)}</h1>"
            f"<h2>Topology</h2>{topology_svg(config, services)}"
            "<p>Solid arrows: calls through a port (gRPC across units); dashed: events.</p>"
            f"<h2>Health</h2><table id=health><tr><th>unit or service</th><th>state</th></tr>"
            f"{health_rows}</table>"
            f"<h2>Recent traces</h2><table id=traces><tr><th>trace</th><th>root</th>"
            f"<th>services</th><th>spans</th><th>duration</th><th>started</th><th></th></tr>"
            f"{trace_rows or '<tr><td colspan=7>none yet</td></tr>'}</table>{messaging}",
        )

    async def one_trace(request: Request) -> HTMLResponse:
        trace_id = request.path_params["trace_id"]
        spans, logs = store.trace(trace_id)
        if not spans:
            return _page("No such trace", "<h1>No such trace</h1><a href=/console>back</a>")
        start = min(s.start_ns for s in spans)
        total = max(max(s.end_ns for s in spans) - start, 1)
        rows = "".join(
            f'<div class=row data-service="{escape(s.service)}"><div class=label '
            f'style="padding-left:{depth * 14}px" title="{escape(s.name)}">'
            f'<b style="color:{colours.get(s.service, "#555")}">{escape(s.service)}</b> '
            f'{escape(s.name)}</div><div class=lane><div class=bar style="left:'
            f"{(s.start_ns - start) / total * 100:.2f}%;width:"
            f"{max((s.end_ns - s.start_ns) / total * 100, 0.2):.2f}%;background:"
            f'{colours.get(s.service, "#888")}"></div></div>'
            f"<div class=dur>{s.duration_ms:.2f} ms</div></div>"
            for s, depth in _ordered(spans)
        )
        log_rows = "".join(
            f"<tr><td class=mono>{escape(log.time)}</td><td>{escape(log.level)}</td>"
            f"<td>{escape(log.service)}</td><td>{escape(log.event)}</td>"
            f"<td class=mono>{escape(_pairs(log.fields))}</td></tr>"
            for log in logs
        )
        return _page(
            f"Trace {trace_id}",
            f"<a href=/console>← console</a><h1>Trace <span class=mono>{trace_id}</span></h1>"
            f"<p>{len(spans)} spans across {escape(', '.join(sorted({s.service for s in spans})))}"
            f" · {total / 1e6:.1f} ms</p><div class=waterfall id=waterfall>{rows}</div>"
            f"<h2>Logs</h2><table id=logs><tr><th>time</th><th>level</th><th>service</th>"
            f"<th>event</th><th>fields</th></tr>{log_rows or '<tr><td colspan=5>none</td></tr>'}"
            "</table>",
        )

    async def replay(request: Request) -> Response:
        if unit is None:
            return Response(status_code=404)
        service, letter = request.path_params["service"], int(request.path_params["letter"])
        await unit.consumers[service].replay(letter)
        return RedirectResponse("/console#messaging", status_code=303)

    async def one_saga(request: Request) -> HTMLResponse:
        from cleave.saga import saga_history_of

        service, saga_id = request.path_params["service"], request.path_params["saga"]
        if unit is None or service not in unit.contexts:
            return _page("No such saga", "<h1>No such saga</h1><a href=/console>back</a>")
        found = await saga_history_of(unit.contexts[service], saga_id)
        if found is None:
            return _page("No such saga", "<h1>No such saga</h1><a href=/console>back</a>")
        saga, history = found
        rows = "".join(
            f"<tr><td class=mono>{event.at.isoformat(timespec='milliseconds')}</td>"
            f"<td>{escape(event.step or '')}</td><td>{escape(event.event)}</td>"
            f"<td class=mono>{escape(event.detail or '')}</td></tr>"
            for event in history
        )
        retry = (
            f'<form method=post action="/console/sagas/{escape(service)}/{escape(saga.id)}/retry">'
            "<button>retry</button></form>"
            if saga.status == "needs_attention"
            else ""
        )
        return _page(
            f"Saga {saga.id}",
            f"<a href=/console>← console</a><h1>Saga {escape(saga.name)} "
            f"<span class=mono>{escape(saga.id)}</span></h1><p id=saga-status>{escape(service)} · "
            f"{escape(saga.status)}"
            + (f" at {escape(saga.stopped_at)}" if saga.stopped_at else "")
            + f" · {saga.attempts} attempts · last error: {escape(saga.last_error or '—')}</p>"
            f"{retry}<h2>History</h2><table id=history><tr><th>at</th><th>step</th>"
            f"<th>event</th><th>detail</th></tr>{rows or '<tr><td colspan=4>none</td></tr>'}"
            "</table>",
        )

    async def retry_saga(request: Request) -> Response:
        from cleave.saga import retry_saga as resume

        service, saga_id = request.path_params["service"], request.path_params["saga"]
        if unit is None or service not in unit.contexts:
            return Response(status_code=404)
        await resume(unit.contexts[service], saga_id, by="the console")
        return RedirectResponse(f"/console/sagas/{service}/{saga_id}", status_code=303)

    async def receive(request: Request) -> Response:
        """OTLP/HTTP: other processes export their spans here (protobuf or JSON)."""
        try:
            decoded = decode_otlp(await request.body(), request.headers.get("content-type", ""))
        except Exception:
            return Response("not an OTLP trace export", status_code=400)
        for span in spans_of(decoded):
            store.add_span(span)
        return Response(b"", media_type="application/x-protobuf")

    async def trace_json(request: Request) -> JSONResponse:
        spans, logs = store.trace(request.path_params["trace_id"])
        return JSONResponse(
            {
                "spans": [
                    {
                        "span_id": s.span_id,
                        "parent_id": s.parent_id,
                        "name": s.name,
                        "service": s.service,
                        "kind": s.kind,
                        "duration_ms": s.duration_ms,
                    }
                    for s in spans
                ],
                "logs": [{"service": log.service, "event": log.event} for log in logs],
            }
        )

    async def traces_json(_request: Request) -> JSONResponse:
        return JSONResponse(
            [
                {"trace_id": t.trace_id, "root": t.root, "services": t.services, "spans": t.spans}
                for t in store.recent(200)
            ]
        )

    return [
        Route("/console", overview),
        Route("/console/api/traces", traces_json),
        Route("/console/api/traces/{trace_id}", trace_json),
        Route("/console/traces/{trace_id}", one_trace),
        Route("/console/dead-letters/{service}/{letter:int}/replay", replay, methods=["POST"]),
        Route("/console/sagas/{service}/{saga}", one_saga),
        Route("/console/sagas/{service}/{saga}/retry", retry_saga, methods=["POST"]),
        Route("/v1/traces", receive, methods=["POST"]),
    ]


def _pairs(fields: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in fields.items())


def _when(nanoseconds: int) -> str:
    return datetime.fromtimestamp(nanoseconds / 1e9, UTC).strftime("%H:%M:%S")


def _ordered(spans: list[SpanRecord]) -> list[tuple[SpanRecord, int]]:
    """Spans depth-first under their parents, each with its depth, children by start time."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else None, []).append(span)
    ordered: list[tuple[SpanRecord, int]] = []

    def visit(parent: str | None, depth: int) -> None:
        for child in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            ordered.append((child, depth))
            visit(child.span_id, depth + 1)

    visit(None, 0)
    return ordered


async def _messaging(unit: Unit) -> str:
    from cleave.data.tables import inbox
    from cleave.messaging.consumer import list_dead_letters
    from cleave.messaging.relay import outbox_state
    from cleave.service import ServiceContext

    async def inbox_size(context: ServiceContext) -> int:
        from sqlalchemy import func, select

        async with context.read() as connection:
            return int(
                (await connection.execute(select(func.count()).select_from(inbox))).scalar_one()
            )

    from cleave.saga import NEEDS_ATTENTION, list_sagas

    rows, letters, stuck = [], [], []
    for name, context in unit.contexts.items():
        for saga in await list_sagas(context, status=NEEDS_ATTENTION):
            stuck.append(
                f'<tr><td><a class=mono href="/console/sagas/{escape(name)}/{escape(saga.id)}">'
                f"{escape(saga.id)}</a></td><td>{escape(name)}</td><td>{escape(saga.name)}</td>"
                f"<td>{escape(saga.stopped_at or '')}</td><td>{saga.attempts}</td>"
                f"<td class=mono>{escape(saga.last_error or '')}</td></tr>"
            )
        outbox = await outbox_state(context)
        age = (
            f"{outbox.oldest_pending_age_seconds:.1f} s"
            if outbox.oldest_pending_age_seconds
            else "—"
        )
        rows.append(
            f"<tr><td>{escape(name)}</td><td>{outbox.pending}</td><td>{age}</td>"
            f"<td>{outbox.delivered}</td><td>{await inbox_size(context)}</td></tr>"
        )
        for letter in await list_dead_letters(context):
            letters.append(
                f"<tr><td>{escape(name)}:{letter.id}</td><td>{escape(letter.type)}</td>"
                f"<td>{escape(letter.handler)}</td><td>{letter.attempts}</td>"
                f"<td class=mono>{escape(letter.error)}</td><td><form method=post "
                f'action="/console/dead-letters/{escape(name)}/{letter.id}/replay">'
                "<button>replay</button></form></td></tr>"
            )
    return (
        "<h2 id=messaging>Outbox, inbox and dead letters</h2><table><tr><th>service</th>"
        "<th>outbox pending</th><th>oldest pending</th><th>delivered</th><th>inbox</th></tr>"
        + "".join(rows)
        + "</table><h3>Dead letters</h3><table id=dead-letters><tr><th>id</th><th>type</th>"
        "<th>handler</th><th>attempts</th><th>error</th><th></th></tr>"
        + ("".join(letters) or "<tr><td colspan=6>none</td></tr>")
        + "</table><h3>Sagas needing attention</h3><table id=sagas><tr><th>saga</th>"
        "<th>service</th><th>name</th><th>stopped at</th><th>attempts</th><th>last error</th></tr>"
        + ("".join(stuck) or "<tr><td colspan=6>none</td></tr>")
        + "</table>"
    )
