"""What every storefront page shares: the visit (the browser's session and this unit's
storefront), rendering with the security headers, forms with their CSRF check, static files, and
the friendly pages that every error becomes (never a stack trace or raw JSON)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jinja2
import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from cleave.errors import DatabaseUnavailable, NotFound, Unprocessable
from cleave.service.api import context_of
from shop.storefront import domain, session
from shop.storefront.handlers import SignInNeeded, Storefront, storefront_of
from shop.storefront.oidc import SignInFailed
from shop.storefront.session import BrowserSession, Person
from shop.storefront.upstream import ServiceDown

log = structlog.get_logger("shop.storefront")
MAX_FORM_BYTES = 16_384

# What a person reads when a service is down: what stopped, and that nothing is lost.
DOWN = {
    "catalog": "The catalog is unavailable right now.",
    "ordering": "Checkout and orders are unavailable right now.",
    "customer": "Your profile is unavailable right now.",
    "identity": "Signing in is unavailable right now.",
    "payment": "Payments are unavailable right now.",
}


# --- templates and static files ---------------------------------------------------------------

_package = resources.files("shop.storefront")
STATIC = {
    entry.name: entry.read_bytes()
    for entry in (_package / "static").iterdir()
    if entry.name.endswith((".css", ".js", ".svg"))
}
_VERSIONS = {name: hashlib.sha256(body).hexdigest()[:10] for name, body in STATIC.items()}
_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def static_url(name: str) -> str:
    return f"/static/{name}?v={_VERSIONS[name]}"


def static_response(name: str, version: str | None) -> Response:
    body = STATIC.get(name)
    if body is None:
        raise NotFound(f"no static file {name}")
    suffix = name[name.rfind(".") :]
    # A versioned URL never changes: browsers may keep it for a year.
    cache = "public, max-age=31536000, immutable" if version == _VERSIONS[name] else "no-cache"
    headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    return Response(body, media_type=_TYPES[suffix], headers=headers)


templates = jinja2.Environment(
    loader=jinja2.PackageLoader("shop.storefront", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals.update(
    static=static_url,
    demo_cards=domain.DEMO_CARDS,
    max_quantity=domain.MAX_QUANTITY,
    card_label=domain.card_label,
)
templates.filters.update(
    money=domain.format_money,
    stock=domain.stock_status,
    tile=lambda sku: sum(sku.encode()) % 6,  # one of six colours, the same for a product always
)


def security_headers(site: Storefront) -> dict[str, str]:
    """No inline script or style, no framing, forms only to this site (and the provider)."""
    form_targets = {"'self'"}
    issuer = urlsplit(site.oidc.issuer)
    if f"{issuer.scheme}://{issuer.netloc}" != site.public_url:
        form_targets.add(f"{issuer.scheme}://{issuer.netloc}")
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'; form-action {' '.join(sorted(form_targets))}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


# --- a visit: one request of one browser ------------------------------------------------------


class CsrfRefused(Exception):
    """A form came without the token of this browser's session."""


@dataclass
class Visit:
    request: Request
    site: Storefront
    session: BrowserSession
    _cart_size: asyncio.Task[int] | None = field(default=None, repr=False)

    @property
    def person(self) -> Person | None:
        return self.session.person

    def start(self) -> None:
        """Count the cart for the page header while the page fetches its own data."""
        self._cart_size = asyncio.create_task(self.site.cart_size(self.session))

    async def cart_size(self) -> int | None:
        if self._cart_size is None:
            return None
        try:
            return await self._cart_size
        except DatabaseUnavailable:
            return None

    def close(self) -> None:
        if self._cart_size is not None and not self._cart_size.done():
            self._cart_size.cancel()

    def adopt(self, replacement: BrowserSession) -> None:
        """A new session from here on (signing in or out); the response sets its cookie."""
        self.session = replacement
        self.close()
        self._cart_size = None

    def finish(self, response: Response) -> Response:
        if self.session.is_new:
            session.set_cookie(response, self.session, secure=self.site.secure)
        return response

    async def render(self, template: str, *, status: int = 200, **values: Any) -> Response:
        size = await self.cart_size()
        html = templates.get_template(template).render(
            person=self.person,
            csrf=self.session.csrf_token,
            cart_size=size,
            path=self.request.url.path,
            query=self.request.query_params.get("q", ""),
            **values,
        )
        response = HTMLResponse(html, status_code=status, headers=security_headers(self.site))
        return self.finish(response)

    def fragment(self, template: str, **values: Any) -> str:
        return templates.get_template(template).render(csrf=self.session.csrf_token, **values)

    def redirect(self, url: str, **params: str) -> Response:
        target = f"{url}?{urlencode(params)}" if params else url
        response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
        return self.finish(response)

    async def form(self) -> dict[str, str]:
        """The posted form, once its CSRF token matched this browser's session."""
        kind = self.request.headers.get("content-type", "")
        body = await self.request.body()
        if not kind.startswith("application/x-www-form-urlencoded") or len(body) > MAX_FORM_BYTES:
            raise CsrfRefused()
        fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if not self.session.csrf_ok(fields.get("csrf", "")):
            raise CsrfRefused()
        return fields


async def open_visit(request: Request) -> Visit:
    """The dependency of every page: this browser's session, loaded, and the cart being counted."""
    context = await context_of("storefront")(request)
    site = storefront_of(context)
    browser = await site.load(session.from_request(request, secure=site.secure))
    visit = Visit(request, site, browser)
    request.state.visit = visit
    visit.start()
    return visit


# --- every error becomes a page ---------------------------------------------------------------


class PageRoute(APIRoute):
    """A route whose errors are pages a shopper can read: 404, a service that is down, an expired
    form, sign-in needed; anything unexpected is logged and shown as an apology."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:
                return await error_page(request, error)
            finally:
                visit = getattr(request.state, "visit", None)
                if visit is not None:
                    visit.close()

        return route


async def error_page(request: Request, error: Exception) -> Response:
    visit: Visit | None = getattr(request.state, "visit", None)
    if visit is None:  # the storefront itself could not start on this request
        log.exception("storefront page failed before it started", path=request.url.path)
        return HTMLResponse(
            "<!doctype html><title>Sorry</title><h1>Sorry, the shop is unavailable</h1>",
            status_code=503,
        )
    if isinstance(error, SignInNeeded):
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            back = request.headers.get("referer", "/")
            back = urlsplit(back).path or "/"
        return visit.redirect("/account/sign-in", next=domain.safe_return_path(back))
    if isinstance(error, CsrfRefused):
        return await visit.render("error.html", status=403, kind="expired")
    if isinstance(error, NotFound | RequestValidationError):
        return await visit.render("error.html", status=404, kind="not-found")
    if isinstance(error, ServiceDown):
        log.warning("a service is down", service=error.service, detail=error.detail)
        words = DOWN.get(error.service, "Part of the shop is unavailable right now.")
        return await visit.render("error.html", status=503, kind="down", words=words)
    if isinstance(error, DatabaseUnavailable):
        log.error("the storefront's database is down", error=str(error))
        return await visit.render(
            "error.html", status=503, kind="down", words="The shop is unavailable right now."
        )
    if isinstance(error, SignInFailed):
        log.warning("sign-in did not finish", reason=error.reason)
        return await visit.render("error.html", status=400, kind="sign-in")
    if isinstance(error, Unprocessable):
        return await visit.render("error.html", status=422, kind="rejected", words=error.detail)
    log.exception("storefront page failed", path=request.url.path)
    return await visit.render("error.html", status=500, kind="broken")


def number(fields: Mapping[str, str], name: str, *, low: int, high: int) -> int:
    """An integer form field within bounds; anything else is a clear refusal."""
    with contextlib.suppress(ValueError):
        value = int(fields.get(name, ""))
        if low <= value <= high:
            return value
    raise Unprocessable(f"Choose a {name} from {low} to {high}.", code="invalid-number")
