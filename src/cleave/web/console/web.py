"""The console's pages and its OTLP/HTTP receiver, as routes any unit app or the gateway mounts.

Server-rendered HTML with a stylesheet and one small script of its own: it works without a build
step or a CDN, under a CSP that allows neither inline script nor inline style. The script only
follows the trace list and the logs live (server-sent events); every page works without it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from cleave.config import SystemConfig
from cleave.errors import CleaveError, NotFound
from cleave.logfiles import LogFilter
from cleave.service import Service
from cleave.web.app import problem_response
from cleave.web.console.access import (
    SCRIPT_PATH,
    STYLE_PATH,
    ConsoleAccess,
    Session,
    page,
    secured,
)
from cleave.web.console.collect import decode_otlp, span_sender_ok, spans_of
from cleave.web.console.details import DETAILS_STYLE, service_details
from cleave.web.console.logs import (
    follow_lines,
    log_files,
    log_filter,
    log_row,
    logs_form,
    recent_lines,
)
from cleave.web.console.markup import clock_time, select_options
from cleave.web.console.metrics import (
    REFRESH_SECONDS,
    MetricsHistory,
    Scrape,
    metrics_body,
    take_snapshot,
)
from cleave.web.console.picture import TOPOLOGY_STYLE, topology_picture
from cleave.web.console.store import (
    STATUSES,
    SpanRecord,
    TraceQuery,
    TraceStore,
    TraceSummary,
)

if TYPE_CHECKING:
    from cleave.runtime import Unit

Health = Callable[[], Awaitable[Mapping[str, str]]]

PALETTE = ("#2a5bd7", "#1a7f37", "#b06d00", "#8e44ad", "#c62828", "#00838f", "#6d4c41")
MAX_DEPTH = 16
# One stylesheet of the console's own, so that its pages need no inline style (see its CSP).
STYLE = (
    """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#f6f7fa}
h1{font-size:20px} h2{font-size:16px;margin-top:28px} a{color:#2a5bd7}
table{border-collapse:collapse;background:white;min-width:50%}
td,th{padding:4px 10px;border-bottom:1px solid #e3e6ee;text-align:left;vertical-align:top}
.ok{color:#1a7f37}.bad{color:#c62828} .mono{font-family:ui-monospace,monospace;font-size:12px}
.waterfall{background:white;border:1px solid #e3e6ee;border-radius:8px;padding:8px}
.row{display:flex;align-items:center;height:24px;font-size:12px}
.label{width:380px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.lane{position:relative;flex:1;height:16px;background:#f3f5f9}
.bar{position:absolute;height:16px;border-radius:3px;min-width:2px}
.dur{width:80px;text-align:right;color:#555}
.lane svg{display:block;width:100%;height:16px} .lane rect.event{fill:#1d2330;opacity:.7}
.notice{background:#fff4d6;padding:6px 10px}
form.inline{display:inline} #trace-search,#log-search{margin:8px 0} nav a{margin-right:14px}
tr.level-warning td:nth-child(2){color:#b06d00} tr.level-error td:nth-child(2),
tr.level-critical td:nth-child(2){color:#c62828;font-weight:600}
#log-lines td:nth-child(5){white-space:nowrap}
svg.chart{background:#f3f5f9;border-radius:3px;vertical-align:middle}
.sparkline polyline{fill:none;stroke:#2a5bd7;stroke-width:1.5} .durations rect{fill:#1a7f37}
"""
    + TOPOLOGY_STYLE
    + DETAILS_STYLE
    + "".join(f".depth{d}{{padding-left:{d * 14}px}}" for d in range(MAX_DEPTH + 1))
    + "".join(f".colour{i}{{color:{c};fill:{c}}}" for i, c in enumerate(PALETTE))
)


def console_routes(
    store: TraceStore,
    config: SystemConfig,
    services: Mapping[str, Service],
    health: Health,
    metrics: Scrape,
    unit: Unit | None = None,
    *,
    access: ConsoleAccess,
    span_secret: str,
) -> list[BaseRoute]:
    """The console's routes: each page and API answer only for whom `access` lets in, and the
    OTLP receiver only for the system's own units, which send `span_secret`. `metrics` reads
    every unit's Prometheus metrics, as `health` reads their readiness."""
    colours = {name: f"colour{i % len(PALETTE)}" for i, name in enumerate(config.services)}
    files = log_files(config)
    history = MetricsHistory()

    async def overview(request: Request, session: Session) -> Response:
        try:
            query = _trace_query(request)
        except ValueError as bad:
            return problem_response(400, str(bad), code="bad-trace-filter")
        states = await health()
        health_rows = "".join(
            f"<tr><td>{escape(name)}</td><td class={'ok' if state == 'ok' else 'bad'}>"
            f"{escape(state)}</td></tr>"
            for name, state in states.items()
        )
        trace_rows = "".join(_trace_row(t) for t in store.recent(50, query))
        stream = f"/console/traces/stream?{_query_string(request, since=store.sequence)}"
        messaging = await _messaging(unit, session.csrf) if unit is not None else ""
        nothing = "none matches" if query != TraceQuery() else "none yet"
        return page(
            "Cleave console",
            f"<h1>Cleave · {escape(config.name)} · topology {escape(config.topology.name)}</h1>"
            f"{access.banner(session)}{NAV}"
            f"<h2>Topology</h2>{await topology_picture(config, services)}"
            "<p>Solid arrows: calls through a port (gRPC across units); dashed: events. "
            "Click a service for its routes, ports, events and recent errors.</p>"
            f"<h2>Health</h2><table id=health><tr><th>unit or service</th><th>state</th></tr>"
            f"{health_rows}</table>"
            f"<h2>Recent traces</h2>{_search_form(query, list(config.services))}"
            f'<table id=traces data-stream="{escape(stream)}"><thead><tr><th>trace</th>'
            "<th>root</th><th>services</th><th>spans</th><th>duration</th><th>started</th>"
            "<th></th></tr></thead><tbody>"
            f"{trace_rows or f'<tr class=empty><td colspan=7>{nothing}</td></tr>'}</tbody>"
            f"</table>{messaging}",
            head=SCRIPT,
        )

    async def traces_stream(request: Request, _session: Session) -> Response:
        """Server-sent events: each trace that gains spans, as its row of the overview's list."""
        try:
            query = _trace_query(request)
        except ValueError as bad:
            return problem_response(400, str(bad), code="bad-trace-filter")
        cursor = request.headers.get("last-event-id") or request.query_params.get("since") or "0"
        if not cursor.isdigit():
            return problem_response(
                400, f"since must be a stream position, not {cursor[:40]!r}", code="bad-cursor"
            )
        since = int(cursor)

        async def events() -> AsyncIterator[str]:
            yield "retry: 1000\n\n"
            seen = min(since, store.sequence)  # a store that restarted counts from 0 again
            deadline = time.monotonic() + STREAM_SECONDS
            while time.monotonic() < deadline and not await request.is_disconnected():
                changed, seen = store.changed_since(seen, query), store.sequence
                for summary in reversed(changed):  # oldest first: each goes on top
                    data = json.dumps({"key": summary.trace_id, "html": _trace_row(summary)})
                    yield f"id: {seen}\nevent: row\ndata: {data}\n\n"
                await asyncio.sleep(0.5)

        return StreamingResponse(events(), media_type="text/event-stream", headers=STREAM_HEADERS)

    async def logs_page(request: Request, session: Session) -> Response:
        try:
            wanted = log_filter(request)
        except ValueError as bad:
            return problem_response(400, str(bad), code="bad-log-filter")
        lines = recent_lines(files, wanted)
        newest = str(lines[-1][0].get("timestamp", "")) if lines else ""
        stream = f"/console/logs/stream?{_query_string(request, since=newest)}"
        rows = "".join(log_row(record) for record, _raw in reversed(lines))
        nothing = "none matches" if wanted != LogFilter() else "none yet"
        return page(
            "Cleave console · logs",
            f"<h1>Logs · {escape(config.name)} · topology {escape(config.topology.name)}</h1>"
            f"{access.banner(session)}{NAV}"
            f"<p>Every unit's log file ({escape(', '.join(files))}), newest first, followed "
            f"live.</p>{logs_form(wanted, list(config.services))}"
            f'<table id=log-lines data-stream="{escape(stream)}" data-keep=500><thead><tr>'
            "<th>time</th><th>level</th><th>unit</th><th>service</th><th>event</th>"
            "<th>trace</th><th>fields</th></tr></thead><tbody>"
            f"{rows or f'<tr class=empty><td colspan=7>{nothing}</td></tr>'}</tbody></table>",
            head=SCRIPT,
        )

    async def metrics_page(_request: Request, session: Session) -> Response:
        await take_snapshot(metrics, history)
        return page(
            "Cleave console · metrics",
            f"<h1>Metrics · {escape(config.name)} · topology {escape(config.topology.name)}</h1>"
            f"{access.banner(session)}{NAV}<p>Every unit's own metrics (what its /metrics "
            f"serves), read at each look; this page looks again every {REFRESH_SECONDS} s, and "
            f"rates and lines grow from its looks.</p>{metrics_body(history)}",
            head=f"<meta http-equiv=refresh content={REFRESH_SECONDS}>",
        )

    async def metrics_json(_request: Request, _session: Session) -> Response:
        snapshot = await take_snapshot(metrics, history)
        return JSONResponse(
            {
                "routes": [
                    {
                        "service": service,
                        "route": route,
                        "requests": figures.requests,
                        "errors": figures.errors,
                        "p95_seconds": _finite(figures.quantile(0.95)),
                    }
                    for (service, route), figures in sorted(snapshot.routes.items())
                ],
                "gauges": [
                    {"metric": name, "service": service, "value": value}
                    for (name, service), value in sorted(snapshot.gauges.items())
                ],
                "problems": snapshot.problems,
            }
        )

    async def logs_json(request: Request, _session: Session) -> Response:
        try:
            wanted = log_filter(request)
        except ValueError as bad:
            return problem_response(400, str(bad), code="bad-log-filter")
        return JSONResponse([record for record, _raw in recent_lines(files, wanted)])

    async def logs_stream(request: Request, _session: Session) -> Response:
        try:
            wanted = log_filter(request)
        except ValueError as bad:
            return problem_response(400, str(bad), code="bad-log-filter")
        after = request.headers.get("last-event-id") or request.query_params.get("since", "")
        return StreamingResponse(
            follow_lines(request, files, wanted, after[:64]),
            media_type="text/event-stream",
            headers=STREAM_HEADERS,
        )

    async def one_trace(request: Request, _session: Session) -> Response:
        trace_id = request.path_params["trace_id"]
        spans, logs = store.trace(trace_id)
        if not spans:
            return page("No such trace", NO_SUCH_TRACE, status=404)
        start = min(s.start_ns for s in spans)
        total = max(max(s.end_ns for s in spans) - start, 1)
        rows = "".join(
            f'<div class=row data-service="{escape(s.service)}"><div class="label '
            f'depth{min(depth, MAX_DEPTH)}" title="{escape(s.name)}">'
            f'<b class="{colours.get(s.service, "")}">{escape(s.service)}</b> '
            f"{escape(s.name)}</div><div class=lane>"
            # An SVG bar: its geometry is markup, not an inline style the CSP would refuse.
            '<svg viewBox="0 0 1000 16" preserveAspectRatio="none" aria-hidden=true>'
            f'<rect class="{colours.get(s.service, "")}" height=16 rx=3 '
            f'x="{(s.start_ns - start) / total * 1000:.1f}" '
            f'width="{max((s.end_ns - s.start_ns) / total * 1000, 2.0):.1f}"/>'
            f"{_event_marks(s, start, total)}</svg></div>"
            f"<div class=dur>{s.duration_ms:.2f} ms</div></div>"
            for s, depth in _ordered(spans)
        )
        log_rows = "".join(
            f"<tr><td class=mono>{escape(log.time)}</td><td>{escape(log.level)}</td>"
            f"<td>{escape(log.service)}</td><td>{escape(log.event)}</td>"
            f"<td class=mono>{escape(_pairs(log.fields))}</td></tr>"
            for log in logs
        )
        return page(
            f"Trace {trace_id}",
            f"<a href=/console>← console</a><h1>Trace <span class=mono>{escape(trace_id)}</span>"
            f'</h1><p><a id=trace-logs href="/console/logs?trace={escape(trace_id)}">'
            "logs of this trace</a> (every unit's, from their log files)</p>"
            f"<p>{len(spans)} spans across "
            f"{escape(', '.join(sorted({s.service for s in spans})))}"
            f" · {total / 1e6:.1f} ms</p><div class=waterfall id=waterfall>{rows}</div>"
            f"<h2>Logs</h2><table id=logs><tr><th>time</th><th>level</th><th>service</th>"
            f"<th>event</th><th>fields</th></tr>{log_rows or '<tr><td colspan=5>none</td></tr>'}"
            "</table>",
        )

    async def one_service(request: Request, _session: Session) -> Response:
        name = request.path_params["service"]
        if name not in services:
            return page("No such service", NO_SUCH_SERVICE, status=404)
        return page(
            f"Service {name}",
            f"<a href=/console>← console</a><h1>Cleave · {escape(config.name)} · topology "
            f"{escape(config.topology.name)}</h1><div class=service-view><div>"
            f"{await topology_picture(config, services, name)}</div>"
            f"{service_details(config, services, store, name)}</div>",
        )

    async def replay(request: Request, _session: Session) -> Response:
        service, letter = request.path_params["service"], int(request.path_params["letter"])
        consumer = unit.consumers.get(service) if unit is not None else None
        if consumer is None:
            return problem_response(
                404, f"no service {service!r} with dead letters here", code="unknown-service"
            )
        try:
            await consumer.replay(letter)
        except NotFound as missing:
            return problem_response(404, missing.detail, code="unknown-dead-letter")
        except CleaveError as refused:  # replayed already, or no longer handled
            return problem_response(409, str(refused), code="not-replayable")
        return RedirectResponse("/console#messaging", status_code=303)

    async def one_saga(request: Request, session: Session) -> Response:
        from cleave.saga import saga_history_of

        service, saga_id = request.path_params["service"], request.path_params["saga"]
        if unit is None or service not in unit.contexts:
            return page("No such saga", NO_SUCH_SAGA, status=404)
        found = await saga_history_of(unit.contexts[service], saga_id)
        if found is None:
            return page("No such saga", NO_SUCH_SAGA, status=404)
        saga, history = found
        rows = "".join(
            f"<tr><td class=mono>{event.at.isoformat(timespec='milliseconds')}</td>"
            f"<td>{escape(event.step or '')}</td><td>{escape(event.event)}</td>"
            f"<td class=mono>{escape(event.detail or '')}</td></tr>"
            for event in history
        )
        retry = (
            f'<form method=post action="/console/sagas/{escape(service)}/{escape(saga.id)}/retry">'
            f"{_csrf_field(session.csrf)}<button>retry</button></form>"
            if saga.status == "needs_attention"
            else ""
        )
        return page(
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

    async def retry_saga(request: Request, _session: Session) -> Response:
        from cleave.saga import retry_saga as resume

        service, saga_id = request.path_params["service"], request.path_params["saga"]
        if unit is None or service not in unit.contexts:
            return problem_response(404, f"no service {service!r} here", code="unknown-service")
        try:
            await resume(unit.contexts[service], saga_id, by="the console")
        except NotFound as missing:
            return problem_response(404, missing.detail, code="unknown-saga")
        except CleaveError as refused:  # not parked any more
            return problem_response(409, str(refused), code="not-retryable")
        return RedirectResponse(f"/console/sagas/{service}/{saga_id}", status_code=303)

    async def receive(request: Request) -> Response:
        """OTLP/HTTP: the system's other processes export their spans here (protobuf or JSON),
        each proving it is one of this system's units with the shared secret."""
        if not span_sender_ok(request.headers.get("authorization", ""), span_secret):
            return problem_response(
                401,
                "spans are accepted only from this system's units",
                code="unknown-sender",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            decoded = decode_otlp(await request.body(), request.headers.get("content-type", ""))
        except Exception:
            return problem_response(400, "not an OTLP trace export", code="not-otlp")
        store.add_spans(spans_of(decoded))
        return Response(b"", media_type="application/x-protobuf")

    async def trace_json(request: Request, _session: Session) -> Response:
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
                        "events": [
                            {"name": name, "at_ms": (at - s.start_ns) / 1e6}
                            for name, at in s.events
                        ],
                    }
                    for s in spans
                ],
                "logs": [{"service": log.service, "event": log.event} for log in logs],
            }
        )

    async def traces_json(request: Request, _session: Session) -> Response:
        try:
            query = _trace_query(request)
        except ValueError as bad:
            return problem_response(400, str(bad), code="bad-trace-filter")
        return JSONResponse(
            [
                {
                    "trace_id": t.trace_id,
                    "root": t.root,
                    "services": t.services,
                    "spans": t.spans,
                    "duration_ms": t.duration_ms,
                    "error": t.error,
                }
                for t in store.recent(200, query)
            ]
        )

    async def stylesheet(_request: Request) -> Response:
        return Response(STYLE, media_type="text/css")

    async def script(_request: Request) -> Response:
        return Response(CONSOLE_SCRIPT, media_type="text/javascript")

    guard = access.guard
    routes: list[BaseRoute] = [
        Route("/console", secured(guard(overview, "page"))),
        Route("/console/api/traces", secured(guard(traces_json, "api"))),
        Route("/console/api/traces/{trace_id}", secured(guard(trace_json, "api"))),
        Route("/console/traces/stream", secured(guard(traces_stream, "api"))),
        Route("/console/traces/{trace_id}", secured(guard(one_trace, "page"))),
        Route("/console/services/{service}", secured(guard(one_service, "page"))),
        Route("/console/logs", secured(guard(logs_page, "page"))),
        Route("/console/logs/stream", secured(guard(logs_stream, "api"))),
        Route("/console/api/logs", secured(guard(logs_json, "api"))),
        Route("/console/metrics", secured(guard(metrics_page, "page"))),
        Route("/console/api/metrics", secured(guard(metrics_json, "api"))),
        Route(
            "/console/dead-letters/{service}/{letter:int}/replay",
            secured(guard(replay, "action")),
            methods=["POST"],
        ),
        Route("/console/sagas/{service}/{saga}", secured(guard(one_saga, "page"))),
        Route(
            "/console/sagas/{service}/{saga}/retry",
            secured(guard(retry_saga, "action")),
            methods=["POST"],
        ),
        Route(STYLE_PATH, secured(stylesheet)),
        Route(SCRIPT_PATH, secured(script)),
        Route("/v1/traces", secured(receive), methods=["POST"]),
    ]
    routes += [
        Route(path, secured(endpoint), methods=methods)
        for path, endpoint, methods in access.routes()
    ]
    return routes


NO_SUCH_TRACE = "<h1>No such trace</h1><a href=/console>back</a>"
NAV = (
    "<nav id=pages><a href=/console>overview</a><a href=/console/logs>logs</a>"
    "<a href=/console/metrics>metrics</a></nav>"
)
SCRIPT = f'<script src="{SCRIPT_PATH}" defer></script>'
STREAM_HEADERS = {"X-Accel-Buffering": "no"}
# Each stream ends after a while (the browser reconnects, resuming from its last event id), so
# that no open page keeps a server from shutting down.
STREAM_SECONDS = 10.0
# Progressive enhancement: a table with `data-stream` takes each row its event stream sends
# (escaped HTML the server renders, as for the page), on top, replacing the row with its key.
CONSOLE_SCRIPT = """(function () {
  "use strict";
  if (!window.EventSource) { return; }
  document.querySelectorAll("table[data-stream]").forEach(function (table) {
    var body = table.tBodies[0];
    var keep = parseInt(table.dataset.keep || "200", 10);
    var source = new EventSource(table.dataset.stream);
    source.addEventListener("row", function (event) {
      var update = JSON.parse(event.data);
      var holder = document.createElement("tbody");
      holder.innerHTML = update.html;
      var row = holder.firstElementChild;
      if (update.key) {
        body.querySelectorAll("tr[data-key]").forEach(function (old) {
          if (old.dataset.key === update.key) { old.remove(); }
        });
      }
      body.querySelectorAll("tr.empty").forEach(function (empty) { empty.remove(); });
      body.insertBefore(row, body.firstElementChild);
      while (body.rows.length > keep) { body.deleteRow(-1); }
    });
  });
})();
"""
NO_SUCH_SAGA = "<h1>No such saga</h1><a href=/console>back</a>"
NO_SUCH_SERVICE = "<h1>No such service</h1><a href=/console>back</a>"


def _trace_query(request: Request) -> TraceQuery:
    """The trace filters of a query string (`q`, `service`, `status`, `min_ms`); ValueError
    says which one is wrong."""
    params = request.query_params
    raw_min = params.get("min_ms", "").strip()
    try:
        min_ms = float(raw_min) if raw_min else 0.0
    except ValueError:
        raise ValueError(f"min_ms must be a number of milliseconds, not {raw_min!r}") from None
    return TraceQuery(
        text=params.get("q", "").strip()[:200],
        service=params.get("service", "").strip(),
        status=params.get("status", "").strip(),
        min_ms=min_ms,
    )


def _search_form(query: TraceQuery, services: Sequence[str]) -> str:
    return (
        "<form id=trace-search method=get action=/console>"
        f'<input type=search name=q placeholder="order id, attribute, span…" '
        f'aria-label="search traces" value="{escape(query.text)}"> '
        f"<select name=service aria-label=service>"
        f"{select_options(query.service, services, 'any service')}</select> "
        "<select name=status aria-label=status>"
        f"{select_options(query.status, STATUSES, 'any status')}</select> "
        "<input type=number name=min_ms min=0 step=any aria-label='minimum duration'"
        f' placeholder="min ms" value="{query.min_ms or ""}"> <button>filter</button>'
        + (" <a href=/console>clear</a>" if query != TraceQuery() else "")
        + "</form>"
    )


def _trace_row(t: TraceSummary) -> str:
    return (
        f'<tr data-key="{t.trace_id}"><td><a class=mono href="/console/traces/{t.trace_id}">'
        f"{t.trace_id[:16]}…</a></td><td>{escape(t.root)}</td>"
        f"<td>{escape(', '.join(t.services))}</td><td>{t.spans}</td>"
        f"<td>{t.duration_ms:.1f} ms</td><td>{clock_time(t.start_ns)}</td>"
        f"<td class={'bad' if t.error else 'ok'}>{'error' if t.error else 'ok'}</td></tr>"
    )


def _query_string(request: Request, *, since: object) -> str:
    """The request's own filters, for its page's event stream, which starts after `since`."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "since"]
    return urlencode([*kept, ("since", str(since))])


def _finite(seconds: float | None) -> float | None:
    """JSON has no infinity: a duration past the histogram's last bound is null."""
    return None if seconds is None or math.isinf(seconds) else seconds


def _csrf_field(csrf: str) -> str:
    return f'<input type=hidden name=csrf value="{escape(csrf)}">'


def _pairs(fields: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in fields.items())


def _event_marks(span: SpanRecord, start: int, total: int) -> str:
    """A tick on the span's bar for each event in it (a transaction, a read), named on hover."""
    return "".join(
        f'<rect class=event height=16 width=3 x="{(at - start) / total * 1000 - 1.5:.1f}">'
        f"<title>{escape(name)}</title></rect>"
        for name, at in span.events
    )


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


async def _messaging(unit: Unit, csrf: str) -> str:
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
                f"{_csrf_field(csrf)}<button>replay</button></form></td></tr>"
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
