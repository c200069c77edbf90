"""The gateway of a multi-unit topology: one public address in front of every unit.

It routes `/api/<service>/...` to the unit that runs the service, so clients see one API whatever
the topology, and every other path to the unit of the service that serves the site's pages (its
`pages` router), when one does; `/readyz` is ready when every unit is. In Kubernetes an Ingress
with the same path rules takes its place. Its client keeps no cookie jar, and every `Set-Cookie`
of an answer reaches the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cleave.config import SystemConfig
from cleave.web.app import problem_response
from cleave.web.clients import cookieless_client
from cleave.web.console.store import TraceStore

# Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def create_gateway(
    config: SystemConfig, *, store: TraceStore | None = None, timeout_seconds: float = 30.0
) -> Starlette:
    """The gateway; with a `store`, also the console, fed by the units over OTLP."""
    topology = config.topology
    unit_urls = {unit: topology.address_of(unit).http for unit in topology.units}
    client = cookieless_client(timeout=timeout_seconds)
    from cleave.runtime import load_services, site_service

    services = load_services(config)
    site = site_service(services)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()

    async def proxy(request: Request) -> Response:
        service = request.path_params["service"]
        if service not in config.services:
            return problem_response(
                404, f"no service {service!r} in this system", code="unknown-service"
            )
        return await forward(request, service)

    async def pages(request: Request) -> Response:
        assert site is not None
        return await forward(request, site)

    async def forward(request: Request, service: str) -> Response:
        unit = topology.unit_of(service)
        target = unit_urls[unit] + request.url.path
        if request.url.query:
            target += "?" + request.url.query
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        try:
            upstream = await client.request(
                request.method, target, headers=headers, content=await request.body()
            )
        except httpx.TransportError as error:
            return problem_response(
                503,
                f"unit {unit!r} (serving {service}) is not answering: {error}",
                code="unavailable",
            )
        response = Response(upstream.content, upstream.status_code)
        # Every header line as it came, so each Set-Cookie stays a line of its own.
        response.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in upstream.headers.multi_items()
            if k.lower() not in HOP_BY_HOP
        ] + [(b"content-length", str(len(upstream.content)).encode())]
        return response

    async def unit_ready(unit: str) -> str:
        try:
            answer = await client.get(f"{unit_urls[unit]}/readyz", timeout=2.0)
        except httpx.TransportError:
            return "not answering"
        return "ok" if answer.status_code == 200 else f"unready ({answer.status_code})"

    async def readyz(_request: Request) -> JSONResponse:
        states = await asyncio.gather(*(unit_ready(unit) for unit in topology.units))
        units = dict(zip(topology.units, states, strict=True))
        ready = all(state == "ok" for state in units.values())
        body = {"status": "ready" if ready else "unready", "units": units}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def livez(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def index(_request: Request) -> HTMLResponse:
        rows = "".join(
            f"<tr><td>{unit}</td><td>{', '.join(services)}</td>"
            f'<td><a href="{unit_urls[unit]}/docs">{unit_urls[unit]}/docs</a></td></tr>'
            for unit, services in topology.units.items()
        )
        return HTMLResponse(
            f"<!doctype html><title>Cleave · {topology.name}</title>"
            f"<h1>Cleave · topology {topology.name}</h1>"
            f"<p>The API is served here under /api/&lt;service&gt;/v1. Each unit's docs:</p>"
            f"<table><tr><th>unit</th><th>services</th><th>docs</th></tr>{rows}</table>"
        )

    async def health() -> dict[str, str]:
        states = await asyncio.gather(*(unit_ready(unit) for unit in topology.units))
        return {f"unit {unit}": state for unit, state in zip(topology.units, states, strict=True)}

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes: list[BaseRoute] = [
        Route("/livez", livez),
        Route("/readyz", readyz),
        Route("/api/{service}/{rest:path}", proxy, methods=methods),
    ]
    if store is not None:
        from cleave.runtime import build_verifier
        from cleave.web.console import ConsoleAccess, console_routes, span_secret

        # In front of several units, the console is an administrator's, signed in.
        access = ConsoleAccess(config, sign_in=True, verifier=build_verifier(config))
        secret = span_secret(config.var_dir)
        routes += console_routes(store, config, services, health, access=access, span_secret=secret)
    # The site's pages own the root and every other path; without them, an index of the units.
    routes.append(
        Route("/{path:path}", pages, methods=methods) if site is not None else Route("/", index)
    )
    return Starlette(routes=routes, lifespan=lifespan)
