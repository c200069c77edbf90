"""The HTTP face of a unit: one FastAPI app that mounts each service under `/api/<service>/v1`.

Every error leaves as RFC 9457 `application/problem+json`. Middleware is pure ASGI (a
`BaseHTTPMiddleware` alone would halve throughput): it assigns the request id, binds it to the
logs, and records the RED metrics per service and route.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
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
    configure_tracing,
)
from cleave.web.docs import mount_docs

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("cleave.web.app")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
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
            {"WWW-Authenticate": 'Bearer error="invalid_token"'} if error.status == 401 else None
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
        return problem_response(503, str(error), code="unavailable", instance=request.url.path)

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


class RequestContextMiddleware:
    """Request id, log context and RED metrics, as a pure ASGI middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                path: str = scope["path"]
                if path.startswith("/api/"):
                    route = getattr(scope.get("route"), "path", "unmatched")
                    service = path.split("/")[2]
                    method = scope["method"]
                    HTTP_REQUESTS.labels(service, route, method, str(status)).inc()
                    HTTP_DURATION.labels(service, route, method).observe(
                        time.perf_counter() - started
                    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            decoded: str = value.decode("latin-1")[:128]
            return decoded
    return None


def create_app(unit: Unit, *, start_unit: bool = True, console: bool = False) -> FastAPI:
    """The unit's app. With `start_unit`, its lifespan starts and stops relays and workers;
    with `console`, it serves the console at /console (what `cleave up` does)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if start_unit:
            await unit.start()
        try:
            yield
        finally:
            if start_unit:
                await unit.stop()

    app = FastAPI(
        title=f"Cleave · {unit.config.name}",
        version="1",
        description=f"Unit `{unit.name}` of topology `{unit.config.topology.name}`.",
        lifespan=lifespan,
        docs_url=None,  # served from this process below, never from a CDN
        redoc_url=None,
    )
    app.state.unit = unit
    serves_provider = unit.config.auth.issuer == SELF_ISSUER and any(
        service.name == unit.config.auth.provider for service in unit.services
    )
    app.state.verifier = build_verifier(unit.config, local_app=app if serves_provider else None)
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

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        await _read_messaging_gauges(unit)
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    mount_docs(app, routers, issuer=unit.config.issuer, client_id=unit.config.auth.docs_client)
    app.add_middleware(RequestContextMiddleware)
    configure_tracing(f"cleave-{unit.name}")
    if console:
        _mount_console(app, unit)
    for service in unit.services:
        # Last, so the site's catch-all (its friendly 404) never hides the chassis's own routes.
        if service.pages is not None:
            app.include_router(service.pages, tags=[f"{service.name} pages"])
    _instrument(app)
    return app


def _mount_console(app: FastAPI, unit: Unit) -> None:
    from cleave.runtime import load_services
    from cleave.web.console import TraceStore, collect_here, console_routes

    store = TraceStore()
    collect_here(store)

    async def health() -> dict[str, str]:
        return {name: error or "ok" for name, error in (await unit.readiness()).items()}

    services = load_services(unit.config)
    app.router.routes.extend(console_routes(store, unit.config, services, health, unit))


async def _read_messaging_gauges(unit: Unit) -> None:
    """Outbox backlog and dead letters are facts in each service's database: read at scrape."""
    from cleave.messaging.consumer import count_dead_letters
    from cleave.messaging.relay import outbox_state

    for name, context in unit.contexts.items():
        try:
            state = await outbox_state(context)
            parked = await count_dead_letters(context)
        except Exception as error:  # a database that is down shows in /readyz, not as a crash here
            log.warning("cannot read messaging state", service=name, error=str(error))
            continue
        DB_CONNECTIONS_IN_USE.labels(name).set(context.database.connections_in_use)
        OUTBOX_PENDING.labels(name).set(state.pending)
        OUTBOX_OLDEST_AGE.labels(name).set(state.oldest_pending_age_seconds or 0.0)
        DEAD_LETTERS.labels(name).set(parked)


def _instrument(app: FastAPI) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # The per-message receive/send spans cost ~45 µs a request and say nothing a person needs.
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="livez,readyz,metrics,console,v1/traces",
        exclude_spans=["receive", "send"],
    )
