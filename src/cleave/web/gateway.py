"""The gateway of a multi-unit topology: one public address in front of every unit.

It routes `/api/<service>/...` to the unit that runs the service, so clients see one API whatever
the topology, and every other path to the unit of the service that serves the site's pages (its
`pages` router), when one does; `/readyz` is ready when every unit is. In Kubernetes an Ingress
with the same path rules takes its place.

It is a streaming reverse proxy over keep-alive connections to each unit (`cleave.web.upstream`):
request and response bodies flow through as they come (server-sent events arrive event by event),
every response header line is passed on as often as it appears, hop-by-hop headers stay behind,
and it keeps nothing of one client for another (no cookie jar). It sets `X-Forwarded-For/Proto/
Host` itself; a client's own are believed only from a peer in the topology's `trusted_proxies`.
A unit's own `/metrics` is never served through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import uuid
from collections.abc import AsyncIterator, Iterable

import httpx
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from cleave.config import SystemConfig
from cleave.web.app import RETRY_LATER, problem_response
from cleave.web.clients import cookieless_client
from cleave.web.console.metrics import Scraped
from cleave.web.console.store import TraceStore
from cleave.web.docs import DOCS_ROUTES, api_docs_app
from cleave.web.upstream import (
    RawHeaders,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)

log = structlog.get_logger("cleave.web.gateway")

# Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1).
# How often the gateway's console reads the provider's revocations: the bound on how long a
# disabled admin's console session lasts.
CONSOLE_REVOCATIONS_SECONDS = 2.0
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# What a client says about where a request came from: replaced by what the gateway saw.
FORWARDING = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
)
# Set by the gateway itself (the upstream's host; the request id is the gateway's), or answered
# by its own server (an `Expect: 100-continue` the client sent).
OWN = frozenset({b"host", b"x-request-id", b"expect"})
# The gateway's own server states these for the answer it sends (as nginx does).
RESTATED = frozenset({b"date", b"server"})
# Requests carry a body only when they say so; a GET is never sent on as a chunked upload.
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


class TrustedProxies:
    """The peers whose `X-Forwarded-*` the gateway believes: addresses or networks (CIDR)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]

    def __contains__(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.strip().strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client_of(self, peer: str, forwarded_for: list[str]) -> str:
        """The address the request came from: the peer, or, behind trusted proxies, the nearest
        address in their `X-Forwarded-For` chain that is not itself a trusted proxy."""
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
        client = peer
        while client in self and hops:
            client = hops.pop()
        return client


def connection_tokens(headers: RawHeaders) -> frozenset[bytes]:
    """The header names a `Connection` header lists: hop-by-hop for this one message."""
    return frozenset(
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    )


def end_to_end(headers: RawHeaders, *also: frozenset[bytes]) -> RawHeaders:
    """The header lines that are about the message itself, in order, repeated ones kept."""
    dropped = HOP_BY_HOP.union(connection_tokens(headers), *also)
    return [(name, value) for name, value in headers if name.lower() not in dropped]


class ReverseProxy:
    """Forwards one request to an upstream base URL and streams the answer back."""

    def __init__(
        self,
        *,
        trusted_proxies: Iterable[str] = (),
        timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 5.0,
    ) -> None:
        self.trusted = TrustedProxies(trusted_proxies)
        # Read timeout per chunk: a stream of events stays open as long as events keep coming.
        self.timeout_seconds = timeout_seconds
        self.connect_timeout_seconds = connect_timeout_seconds
        self.pools: dict[str, UpstreamPool] = {}

    async def aclose(self) -> None:
        for pool in self.pools.values():
            pool.close()

    def _pool(self, base_url: str) -> UpstreamPool:
        pool = self.pools.get(base_url)
        if pool is None:
            pool = self.pools[base_url] = UpstreamPool(
                base_url, timeout=self.timeout_seconds, connect_timeout=self.connect_timeout_seconds
            )
        return pool

    def upstream_headers(self, request: Request, request_id: str) -> RawHeaders:
        raw = request.scope["headers"]
        peer = request.client.host if request.client else ""
        proto, host = request.url.scheme, _first(raw, b"host")
        if peer in self.trusted:
            proto = _nearest(_first(raw, b"x-forwarded-proto")) or proto
            host = _nearest(_first(raw, b"x-forwarded-host")) or host
        forwarded_for = [v.decode("latin-1") for k, v in raw if k == b"x-forwarded-for"]
        client = self.trusted.client_of(peer, forwarded_for)
        return [
            *end_to_end(raw, FORWARDING, OWN),
            (b"x-forwarded-for", client.encode("latin-1")),
            (b"x-forwarded-proto", proto.encode("latin-1")),
            (b"x-forwarded-host", host.encode("latin-1")),
            (b"x-request-id", request_id.encode("latin-1")),
        ]

    async def forward(self, request: Request, base_url: str, *, upstream_name: str) -> Response:
        request_id = (_first(request.scope["headers"], b"x-request-id") or uuid.uuid4().hex)[:128]
        target = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        if request.scope["query_string"]:
            target += "?" + request.scope["query_string"].decode("latin-1")
        names = {key for key, _ in request.scope["headers"]}
        has_body = any(key in names for key in _BODY_HEADERS)
        try:
            upstream = await self._pool(base_url).request(
                request.method,
                target,
                self.upstream_headers(request, request_id),
                request.stream() if has_body else None,
                content_length=b"content-length" in names,
            )
        except UpstreamTimeout:
            return self._problem(504, f"{upstream_name} did not answer in time", request_id)
        except UpstreamUnreachable:
            return self._problem(503, f"{upstream_name} is not answering", request_id)
        except UpstreamError as error:
            detail = f"{upstream_name} broke off its answer: {error}"
            return self._problem(502, detail, request_id)
        # Every header line as it came (each Set-Cookie its own line), and nothing else.
        headers = end_to_end(upstream.headers, RESTATED)
        if not any(name == b"x-request-id" for name, _ in upstream.headers):
            headers.append((b"x-request-id", request_id.encode("latin-1")))
        return RelayedResponse(upstream, headers, upstream_name)

    @staticmethod
    def _problem(status: int, detail: str, request_id: str) -> Response:
        headers = {"x-request-id": request_id, **(RETRY_LATER if status == 503 else {})}
        code = {502: "bad-gateway", 503: "unavailable", 504: "gateway-timeout"}[status]
        return problem_response(status, detail, code=code, headers=headers, request_id=request_id)


class RelayedResponse(Response):
    """A unit's answer passed on: whole in one message when it has all arrived (most do), else
    part by part as it comes (server-sent events arrive event by event)."""

    def __init__(self, upstream: UpstreamResponse, headers: RawHeaders, upstream_name: str):
        self.upstream = upstream
        self.upstream_name = upstream_name
        self.status_code = upstream.status
        self.raw_headers = headers
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        upstream = self.upstream
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            whole = upstream.whole_body()
            if whole is None:
                try:
                    async for chunk in upstream.body():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except UpstreamError as error:
                    # The status line has left already: breaking the connection is the only way
                    # left to tell the client the answer is incomplete (ending it cleanly would
                    # pass it as whole).
                    log.warning("upstream broke off", upstream=self.upstream_name, error=str(error))
                    raise
                whole = b""
            await send({"type": "http.response.body", "body": whole, "more_body": False})
        finally:
            upstream.close()


def _first(headers: RawHeaders, name: bytes) -> str:
    """The first value of a header (names in an ASGI scope are lower case), or ""."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return ""


def gateway_server(app: Starlette, host: str, port: int) -> uvicorn.Server:
    """The gateway's HTTP server. Uvicorn's own proxy-header handling is off: it would believe
    any local client's `X-Forwarded-For`; the gateway decides that itself (`trusted_proxies`)."""
    return uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, proxy_headers=False
        )
    )


def _nearest(value: str | None) -> str:
    """The last of a header's comma-separated values: the one the nearest (trusted) proxy set."""
    return (value or "").split(",")[-1].strip()


def create_gateway(
    config: SystemConfig, *, store: TraceStore | None = None, timeout_seconds: float = 30.0
) -> Starlette:
    """The gateway; with a `store`, also the console, fed by the units over OTLP."""
    topology = config.topology
    unit_urls = {unit: topology.address_of(unit).http for unit in topology.units}
    proxy = ReverseProxy(trusted_proxies=topology.trusted_proxies, timeout_seconds=timeout_seconds)
    client = cookieless_client(timeout=httpx.Timeout(timeout_seconds, connect=5.0))
    from cleave.runtime import Unit, load_services, site_service

    services = load_services(config)
    site = site_service(services)

    # The console reads each service's outbox, inbox, dead letters and sagas from their own
    # databases, as `cleave dlq` does: one unit of every service, never started.
    admin = Unit(config.collapsed()) if store is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # The console's sessions end with what the provider revokes: read from its database,
        # as the admin unit reaches every service's data, every few seconds (no broker here).
        reloading = (
            asyncio.create_task(admin.keep_revocations_loaded(every=CONSOLE_REVOCATIONS_SECONDS))
            if admin is not None and config.auth.provider
            else None
        )
        try:
            yield
        finally:
            if reloading is not None:
                reloading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reloading
            await proxy.aclose()
            await client.aclose()
            if admin is not None:
                await admin.stop()

    async def api(request: Request) -> Response:
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
        name = f"unit {unit!r} (serving {service})"
        return await proxy.forward(request, unit_urls[unit], upstream_name=name)

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

    async def no_metrics(request: Request) -> Response:
        # Each unit's counters are for its own scraper, on the unit's metrics port, never public.
        return problem_response(404, "metrics are not served here", instance=request.url.path)

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

    async def unit_metrics(unit: str) -> Scraped:
        address = topology.address_of(unit)
        if address.metrics_port is None:
            return Scraped(unit, problem="serves no metrics (no metrics_port in the topology)")
        try:
            answer = await client.get(
                f"http://{address.host}:{address.metrics_port}/metrics", timeout=2.0
            )
        except httpx.TransportError:
            return Scraped(unit, problem=f"no answer on metrics port {address.metrics_port}")
        if answer.status_code != 200:
            return Scraped(unit, problem=f"its /metrics answered {answer.status_code}")
        return Scraped(unit, answer.text)

    async def metrics() -> list[Scraped]:
        return list(await asyncio.gather(*(unit_metrics(unit) for unit in topology.units)))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes: list[BaseRoute] = [
        Route("/livez", livez),
        Route("/readyz", readyz),
        Route("/metrics", no_metrics, methods=methods),
        Route("/api/{service}/{rest:path}", api, methods=methods),
    ]
    if store is not None:
        from cleave.runtime import build_verifier
        from cleave.web.console import ConsoleAccess, console_routes, span_secret

        # In front of several units, the console is an administrator's, signed in.
        verifier = build_verifier(config, revocations=admin.revocations if admin else None)
        access = ConsoleAccess(config, sign_in=True, verifier=verifier)
        secret = span_secret(config.var_dir)
        routes += console_routes(
            store, config, services, health, metrics, admin, access=access, span_secret=secret
        )
    # Every service's API in one document, tried out through this gateway.
    routers = {f"/api/{n}/v1": s.router for n, s in services.items() if s.router is not None}
    docs = api_docs_app(
        f"Cleave · {config.name}",
        routers,
        issuer=config.issuer,
        client_id=config.auth.docs_client,
    )
    routes += [Route(path, docs) for path in DOCS_ROUTES]
    # The site's pages own the root and every other path; without them, an index of the units.
    routes.append(
        Route("/{path:path}", pages, methods=methods) if site is not None else Route("/", index)
    )
    return Starlette(routes=routes, lifespan=lifespan)
