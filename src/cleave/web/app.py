"""The HTTP face of a unit: one FastAPI app that mounts each service under `/api/<service>/v1`.

Every error leaves as RFC 9457 `application/problem+json`. Middleware is pure ASGI (a
`BaseHTTPMiddleware` alone would halve throughput), and one: it assigns the request id, binds it
to the logs, opens the request's SERVER span and records the RED metrics per service and route.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cleave.config import SELF_ISSUER
from cleave.errors import DatabaseUnavailable, Problem, ServiceUnavailable
from cleave.runtime import Unit, build_verifier
from cleave.telemetry import (
    DB_CONNECTIONS_IN_USE,
    DEAD_LETTERS,
    HTTP_DURATION,
    HTTP_REQUESTS,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PENDING,
    SAGAS_NEEDING_ATTENTION,
    configure_tracing,
    trace_context_of,
    tracer,
)
from cleave.web.docs import mount_docs

PROBLEM_JSON = "application/problem+json"
# A 503 is a passing state (a database restarting, a unit away): tell clients when to try again.
RETRY_LATER = {"Retry-After": "1"}
log = structlog.get_logger("cleave.web.app")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{code}" if code else "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if code:
        body["code"] = code
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, Problem)
        headers = (
            {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            if error.status == 401
            else RETRY_LATER
            if error.status == 503
            else {"Retry-After": str(error.extensions.get("retry_after", 1))}
            if error.status == 429
            else None
        )
        return problem_response(
            error.status,
            error.detail,
            code=error.code,
            instance=request.url.path,
            headers=headers,
            **error.extensions,
        )

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = [
            {
                "loc": list(item.get("loc", ())),
                "msg": item.get("msg", ""),
                "type": item.get("type", ""),
            }
            for item in error.errors()
        ]
        return problem_response(
            422,
            "the request is not valid",
            code="validation-error",
            instance=request.url.path,
            errors=errors,
        )

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return problem_response(
            error.status_code,
            str(error.detail),
            instance=request.url.path,
            headers=error.headers,
        )

    async def on_unavailable(request: Request, error: Exception) -> JSONResponse:
        log.error("dependency unavailable", error=str(error), path=request.url.path)
        return problem_response(
            503, str(error), code="unavailable", instance=request.url.path, headers=RETRY_LATER
        )

    async def on_crash(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(
            500, "an unexpected error occurred", code="internal-error", instance=request.url.path
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DatabaseUnavailable, on_unavailable)
    app.add_exception_handler(ServiceUnavailable, on_problem)
    app.add_exception_handler(Exception, on_crash)


# Paths with no trace of their own: probes, scrapes, the console and its OTLP receiver.
_UNTRACED = ("/livez", "/readyz", "/metrics", "/console", "/v1/traces")
# RFC 9110's methods and PATCH: any other is counted and traced as "OTHER".
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})


class RequestContextMiddleware:
    """Request id, log context, the request's SERVER span and RED metrics, as pure ASGI.

    One middleware for all four: the OpenTelemetry ASGI instrumentation looked up each request's
    route by matching it against every route again, and wrapped the app in three more layers.
    The span is named after the route the router picked (`scope["route"]`) once it has answered.
    """

    def __init__(self, app: ASGIApp, services: frozenset[str] = frozenset()) -> None:
        self.app = app
        # Label values come from this unit's own declarations, never from what a client sends:
        # a made-up path or method must not create a new metric series.
        self.services = services
        # Each series' child, looked up once: `labels()` takes a lock and checks every value.
        self._counted: dict[tuple[str, str, str, int], Any] = {}
        self._timed: dict[tuple[str, str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        carrier: dict[str, str] = {}
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
            elif key in _PROPAGATED:
                carrier[key.decode()] = value.decode("latin-1")
        request_id = request_id or os.urandom(16).hex()  # as random as uuid4().hex, cheaper
        status = 500
        started = time.perf_counter()
        path: str = scope["path"]
        method = scope["method"] if scope["method"] in STANDARD_METHODS else "OTHER"
        span = None
        if not path.startswith(_UNTRACED):
            span = tracer.start_span(
                method,
                context=trace_context_of(carrier) if carrier else None,
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": method,
                    "url.path": path,
                    "url.scheme": scope.get("scheme", "http"),
                },
            )
        response_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), response_header]
            await send(message)

        token = otel_context.attach(trace.set_span_in_context(span)) if span else None
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as error:
            if span is not None:
                span.record_exception(error)
            raise
        finally:
            structlog.contextvars.reset_contextvars(**bound)
            route = _route_template(scope, path, self.services)
            if span is not None:
                assert token is not None
                otel_context.detach(token)
                # Set together: each set_attribute takes the span's lock and checks it again.
                if route is None:
                    span.set_attribute("http.response.status_code", status)
                else:
                    span.update_name(f"{method} {route}")
                    span.set_attributes({"http.route": route, "http.response.status_code": status})
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
                span.end()
            if path.startswith("/api/"):
                self._measure(path, route or "unmatched", method, status, started)

    def _measure(self, path: str, route: str, method: str, status: int, started: float) -> None:
        service = path.split("/", 3)[2]
        service = service if service in self.services else "unknown"
        timed = self._timed.get((service, route, method))
        if timed is None:
            timed = self._timed[service, route, method] = HTTP_DURATION.labels(
                service, route, method
            )
        counted = self._counted.get((service, route, method, status))
        if counted is None:
            counted = self._counted[service, route, method, status] = HTTP_REQUESTS.labels(
                service, route, method, str(status)
            )
        counted.inc()
        timed.observe(time.perf_counter() - started)


def _route_template(scope: Scope, path: str, services: frozenset[str]) -> str | None:
    """The template of the route that answered, in full: a service's router knows its routes
    without the `/api/<service>/v1` it is mounted at, so that prefix is put back (only for a
    service of this unit: any other path is the client's own words, never a label)."""
    route: str | None = getattr(scope.get("route"), "path", None)
    prefix = "/".join(path.split("/", 4)[:4])
    if route is None or not path.startswith("/api/") or route.startswith(prefix):
        return route
    if prefix.split("/")[2] not in services:
        return route
    return prefix + route


def create_app(
    unit: Unit, *, start_unit: bool = True, console: bool = False, host: str | None = None
) -> FastAPI:
    """The unit's app. With `start_unit`, its lifespan starts and stops relays and workers;
    with `console`, it serves the console at /console (what `cleave up` does), open only when
    served on a loopback `host` (else an administrator signs in)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if start_unit:
            await unit.start()
        try:
            yield
        finally:
            app.state.rate_limiter.close()
            if start_unit:
                await unit.stop()

    app = FastAPI(
        title=f"Cleave · {unit.config.name}",
        version="1",
        description=f"Unit `{unit.name}` of topology `{unit.config.topology.name}`.",
        lifespan=lifespan,
        # The chassis traces and measures each request itself (RequestContextMiddleware);
        # FastAPI's own telemetry would add a span per dependency, validation and serialisation.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # served from this process below, never from a CDN
        redoc_url=None,
    )
    app.state.unit = unit
    serves_provider = unit.config.auth.issuer == SELF_ISSUER and any(
        service.name == unit.config.auth.provider for service in unit.services
    )
    app.state.verifier = build_verifier(
        unit.config,
        local_app=app if serves_provider else None,
        revocations=unit.revocations,
    )
    unit.verifier = app.state.verifier  # its gRPC server checks callers with the same verifier
    _install_problem_handlers(app)
    routers = {
        f"/api/{service.name}/v1": service.router
        for service in unit.services
        if service.router is not None
    }
    for prefix, router in routers.items():
        app.include_router(router, prefix=prefix, tags=[prefix.split("/")[2]])

    @app.get("/livez", tags=["health"])
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=None)
    async def readyz() -> JSONResponse:
        checks = await unit.readiness()
        ready = all(error is None for error in checks.values())
        body = {
            "status": "ready" if ready else "unready",
            "services": {name: error or "ok" for name, error in checks.items()},
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    mount_docs(app, routers, issuer=unit.config.issuer, client_id=unit.config.auth.docs_client)
    from cleave.web.guards import install_guards  # it imports problem_response from here

    install_guards(app, unit.config.rate_limit)  # inside the request context: ids on a 429
    app.add_middleware(
        RequestContextMiddleware, services=frozenset(service.name for service in unit.services)
    )
    configure_tracing(f"cleave-{unit.name}")
    if console:
        _mount_console(app, unit, host, serves_provider)
    for service in unit.services:
        # Last, so the site's catch-all (its friendly 404) never hides the chassis's own routes.
        if service.pages is not None:
            app.include_router(service.pages, tags=[f"{service.name} pages"])
    return app


def create_metrics_app(unit: Unit) -> Starlette:
    """The unit's Prometheus scrape endpoint, `/metrics`, served on a port of its own: counters
    say a lot about a system, so they stay off the API port and the public gateway."""

    async def metrics(_request: Request) -> PlainTextResponse:
        return PlainTextResponse(await metrics_text(unit), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", metrics)])


async def metrics_text(unit: Unit) -> str:
    """What the unit's `/metrics` serves: its counters, and the gauges read from its databases."""
    await _read_messaging_gauges(unit)
    return generate_latest().decode()


def _mount_console(app: FastAPI, unit: Unit, host: str | None, serves_provider: bool) -> None:
    import httpx

    from cleave.runtime import load_services
    from cleave.web.console import (
        ConsoleAccess,
        Scraped,
        TraceStore,
        collect_here,
        console_routes,
        sign_in_required,
        span_secret,
    )

    store = TraceStore()
    collect_here(store)

    async def health() -> dict[str, str]:
        return {name: error or "ok" for name, error in (await unit.readiness()).items()}

    async def metrics() -> list[Scraped]:
        return [Scraped(unit.name, await metrics_text(unit))]

    services = load_services(unit.config)
    access = ConsoleAccess(
        unit.config,
        sign_in=host is None or sign_in_required(unit.config, host),
        verifier=app.state.verifier,
        # The provider is in this app: the code is exchanged in-process, with no socket.
        transport=httpx.ASGITransport(app=app) if serves_provider else None,
    )
    secret = span_secret(unit.config.var_dir)
    app.router.routes.extend(
        console_routes(
            store,
            unit.config,
            services,
            health,
            metrics,
            unit,
            access=access,
            span_secret=secret,
        )
    )


async def _read_messaging_gauges(unit: Unit) -> None:
    """Outbox backlog and dead letters are facts in each service's database: read at scrape."""
    from cleave.messaging.consumer import count_dead_letters
    from cleave.messaging.relay import outbox_state
    from cleave.saga import NEEDS_ATTENTION, count_sagas

    for name, context in unit.contexts.items():
        try:
            state = await outbox_state(context)
            parked = await count_dead_letters(context)
            stuck = await count_sagas(context, NEEDS_ATTENTION)
        except Exception as error:  # a database that is down shows in /readyz, not as a crash here
            log.warning("cannot read messaging state", service=name, error=str(error))
            continue
        DB_CONNECTIONS_IN_USE.labels(name).set(context.database.connections_in_use)
        OUTBOX_PENDING.labels(name).set(state.pending)
        OUTBOX_OLDEST_AGE.labels(name).set(state.oldest_pending_age_seconds or 0.0)
        DEAD_LETTERS.labels(name).set(parked)
        SAGAS_NEEDING_ATTENTION.labels(name).set(stuck)
