"""The API docs in a real headless Chromium with no way out to the internet: every asset comes
from the server itself, and the Authorize button signs a person in with the built-in provider."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Browser, Page, Route

from tests.e2e.conftest import ROOT, RunningSystem

SCREENSHOTS = ROOT / "docs" / "screenshots"


async def offline_page(browser: Browser, server: str) -> tuple[Page, list[str]]:
    """A page that can reach the server and nothing else; what it tried to reach is listed."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    refused: list[str] = []

    async def only_the_server(route: Route) -> None:
        if route.request.url.startswith(server):
            await route.continue_()
        else:
            refused.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_the_server)
    return page, refused


async def test_the_docs_work_offline_and_sign_a_person_in(
    running_system: RunningSystem, browser: Browser
) -> None:
    server, env = running_system.base, running_system.env
    page, refused = await offline_page(browser, server)
    await page.goto(f"{server}/docs")
    paths = page.locator(".opblock-summary-path")
    await paths.first.wait_for()
    assert "/api/customer/v1/customers/me" in await paths.all_inner_texts()
    assert refused == []

    alice = json.loads((Path(env["CLEAVE_VAR"]) / "monolith" / "dev-credentials.json").read_text())
    await page.locator("button.authorize").first.click()
    modal = page.locator(".modal-ux")
    assert await modal.locator("#client_id_authorization_code").input_value() == "cleave-docs"
    for scope in ("openid", "profile", "email"):
        await modal.locator(f"label[for={scope}-authorization_code-checkbox-openid]").click()
    async with page.expect_popup() as opened:
        await modal.get_by_role("button", name="Apply given OAuth2 credentials").first.click()
    sign_in = await opened.value
    await sign_in.get_by_label("Email").fill(alice["users"]["alice"]["email"])
    await sign_in.get_by_label("Password").fill(alice["users"]["alice"]["password"])
    await sign_in.get_by_role("button", name="Sign in").click()
    await modal.locator("button", has_text="Logout").first.wait_for()
    await modal.locator("button.btn-done").first.click()

    operation = page.locator(".opblock").filter(has_text="/api/customer/v1/customers/me").first
    await operation.locator(".opblock-summary").click()
    await operation.get_by_role("button", name="Try it out").click()
    await operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    await status.wait_for()
    assert (await status.inner_text()).strip() == "200"
    assert "alice@example.com" in await operation.locator(".live-responses-table").inner_text()
    assert refused == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "docs.png"))
