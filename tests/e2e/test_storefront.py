"""The storefront in a real headless Chromium, on the real monolith served over HTTP: the whole
journey of the issue, two people at once, and what protects a shopper (CSRF, cookie flags, CSP,
tokens kept on the server, friendly pages for a missing page and a service that is down,
accessibility by axe-core). The split topology runs the same journey in
`test_the_same_shop_works_split_into_units`.

The storefront reaches the services' API through a proxy of the test's own, which can make one
service "down" (answering 503, as the split's gateway does for a unit that is not answering)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cleave.config import SystemConfig
from cleave.runtime import Unit
from cleave.web.app import create_app, problem_response
from cleave.web.clients import cookieless_client
from shop.identity import store as identity_tables
from shop.identity.contract import read_credentials
from tests.conftest import ROOT, require
from tests.e2e.conftest import ReadmeSplit
from tests.e2e.shopping import Shopper, the_whole_journey
from tests.identity.conftest import free_port, serving

AXE = ROOT / "tests" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"


@dataclass
class FaultProxy:
    """Forwards the storefront's API calls to the shop, except to the services marked down."""

    target: str
    client: httpx.AsyncClient
    down: set[str] = field(default_factory=set)

    def app(self) -> Starlette:
        async def forward(request: Request) -> Response:
            service = request.url.path.split("/")[2]
            if service in self.down:
                return problem_response(503, f"unit serving {service} is not answering")
            upstream = await self.client.request(
                request.method,
                self.target + request.url.path,
                params=request.query_params,
                headers={k: v for k, v in request.headers.items() if k != "host"},
                content=await request.body(),
            )
            return Response(upstream.content, upstream.status_code, upstream.headers)

        return Starlette(routes=[Route("/api/{rest:path}", forward, methods=["GET", "POST"])])


@dataclass
class Shop:
    base: str
    unit: Unit
    credentials: dict[str, Any]
    proxy: FaultProxy


@pytest.fixture
async def shop(base_config: SystemConfig) -> AsyncIterator[Shop]:
    port, proxy_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {name: dict(values) for name, values in base_config.settings.items()}
    settings["storefront"] = {"api_url": f"http://127.0.0.1:{proxy_port}"}
    # Short-lived access tokens: the storefront refreshes them (in their last quarter) many
    # times along the journey, on rotated refresh tokens.
    settings["identity"] = {"access_token_seconds": 4}
    # The bank that never answers keeps an order pending for 2.5 s: long enough for the page to
    # be shown pending and then change live, however loaded the machine.
    settings["payment"]["processor_timeout_seconds"] = 2.5
    settings["ordering"]["step_deadline_seconds"] = 5.0
    auth = replace(base_config.auth, issuer="self", public_url=base)
    config = replace(base_config, auth=auth, settings=settings)
    unit = Unit(config)
    await unit.migrate()
    await unit.seed()
    await unit.start()
    proxy = FaultProxy(base, cookieless_client(timeout=10))
    try:
        async with (
            serving(create_app(unit, start_unit=False), port),
            serving(proxy.app(), proxy_port),
        ):
            yield Shop(base, unit, read_credentials(config.var_dir), proxy)
    finally:
        await proxy.client.aclose()
        await unit.stop()


def screenshots(tmp_path: Path) -> Path:
    """Where the journey keeps its pictures: `CLEAVE_SCREENSHOTS` (the README's are made with
    `CLEAVE_SCREENSHOTS=docs/screenshots`), else the test's own folder."""
    folder = Path(os.environ.get("CLEAVE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def test_a_person_shops_from_sign_up_to_confirmed_orders(
    shop: Shop, browser: Browser, tmp_path: Path
) -> None:
    await the_whole_journey(browser, shop.base, screenshots(tmp_path))
    # Every call ran on a refreshed token: refresh tokens were rotated many times.
    async with shop.unit.context("identity").read() as connection:
        rotated = await connection.execute(
            select(identity_tables.refresh_tokens.c.used_at).where(
                identity_tables.refresh_tokens.c.used_at.is_not(None)
            )
        )
        assert len(rotated.all()) >= 2


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    await page.evaluate(AXE.read_text())  # through the DevTools protocol: the page's CSP allows it
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => (await axe.run(document, {
            runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'],
        })).violations.map(v => ({id: v.id, impact: v.impact,
                                   nodes: v.nodes.map(n => n.target.join(' '))}))"""
    )
    return found


async def test_the_shop_protects_a_shopper_and_explains_every_failure(
    shop: Shop, browser: Browser
) -> None:
    require(AXE.exists(), f"no {AXE.relative_to(ROOT)} (make test runs npm ci in tests/a11y)")
    alice = shop.credentials["users"]["alice"]
    person = await Shopper.open(browser, shop.base)
    page = person.page
    await person.go("/")
    await person.sign_in(alice["email"], alice["password"])

    # The session cookie: HttpOnly (no script reads it), SameSite=Lax, not Secure on http.
    (cookie,) = [c for c in await person.context.cookies() if c["name"] == "shop_session"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Lax", False)
    assert await page.evaluate("document.cookie") == ""
    # Tokens stay on the server: no cookie, no page and no storage of the browser holds one.
    assert all(not c["value"].startswith("ey") for c in await person.context.cookies())
    await person.go("/account")
    assert "eyJ" not in await page.content()
    assert (
        await page.evaluate("Object.keys(localStorage).length + Object.keys(sessionStorage).length")
        == 0
    )

    # A Content-Security-Policy without inline scripts, on every page.
    answer = await page.goto(f"{shop.base}/search?q=mug")
    assert answer is not None
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy

    # A form without its CSRF token is refused, and changes nothing.
    forged = await person.context.request.post(
        f"{shop.base}/cart/items", form={"sku": "MUG-CLASSIC", "quantity": "1"}
    )
    assert forged.status == 403
    assert "This form has expired" in await forged.text()
    other = await Shopper.open(browser, shop.base)
    await other.go("/products/MUG-CLASSIC")
    theirs = await other.page.locator("input[name=csrf]").first.input_value()
    forged = await person.context.request.post(
        f"{shop.base}/cart/items", form={"sku": "MUG-CLASSIC", "quantity": "1", "csrf": theirs}
    )
    assert forged.status == 403  # another browser's token is no token here
    assert await person.cart() == {}
    await other.close()

    # Accessibility of the main pages, as axe-core checks them (WCAG 2.2 AA and best practice).
    await person.go("/search?q=mug")
    await person.add("Classic mug")
    await person.fill_checkout("Demo card that is approved", new_address=True)
    pages = {"checkout": page.url}
    await page.get_by_role("button", name="Place order").click()
    await page.wait_for_url("**/orders/*")
    pages["order"] = page.url
    for path in ("/", "/search?q=t", "/products/PEN-BRASS", "/cart", "/orders", "/account", "/x"):
        pages[path] = shop.base + path
    problems = {}
    for name, url in pages.items():
        await page.goto(url)
        if violations := await axe_violations(page):
            problems[name] = violations
    assert problems == {}, json.dumps(problems, indent=1)
    await page.set_content("<html><body><img src='tile.png'><input></body></html>")
    caught = {violation["id"] for violation in await axe_violations(page)}
    assert {"image-alt", "label", "html-has-lang"} <= caught  # the check does find what is wrong

    # Keyboard alone: the first Tab reaches the skip link, which moves focus to the content.
    await person.go("/")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"

    # A page that does not exist, and an API path that does not: each in its own language.
    missing = await page.goto(f"{shop.base}/no/such/page")
    assert missing is not None
    assert missing.status == 404
    await expect(page.get_by_role("heading", name="We could not find that page")).to_be_visible()
    async with httpx.AsyncClient() as client:
        api = await client.get(f"{shop.base}/api/catalog/v1/no-such-route")
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/problem+json"

    # A service that is down: a page that says so, and the cart is still there afterwards.
    await person.go("/search?q=cap")
    await person.add("Black cap")
    shop.proxy.down = {"ordering"}
    await person.fill_checkout("Demo card that is approved", new_address=False)
    await page.get_by_role("button", name="Place order").click()
    await expect(
        page.get_by_role("heading", name="Sorry, that is unavailable right now")
    ).to_be_visible()
    await expect(page.get_by_text("Checkout and orders are unavailable right now.")).to_be_visible()
    await expect(page.get_by_text("Your cart is kept")).to_be_visible()
    shop.proxy.down = {"catalog"}
    down = await page.goto(shop.base + "/")
    assert down is not None
    assert down.status == 503
    await expect(page.get_by_text("The catalog is unavailable right now.")).to_be_visible()
    assert "Traceback" not in await page.content()
    shop.proxy.down = set()
    assert await person.cart() == {"Black cap": 1}
    await person.close()


@pytest.mark.timeout(300)
async def test_the_same_shop_works_split_into_units(
    browser: Browser, readme_split: ReadmeSplit
) -> None:
    """Every service its own process over PostgreSQL, RabbitMQ and gRPC, one gateway in front:
    the storefront's unit serves the site's pages through it, cookies and all (two people at
    once through it: tests/e2e/test_split_from_readme.py)."""
    async with httpx.AsyncClient() as client:
        answer = await client.get(readme_split.base + "/")
    assert answer.status_code == 200, readme_split.tail()
    assert "Featured" in answer.text
    await the_whole_journey(browser, readme_split.base, None, every_ending=False)
