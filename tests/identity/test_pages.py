"""The sign-up, sign-in and sign-out pages in a real headless Chromium: a new person signs up,
signs in, the app gets its code, and the customer service has their profile from the event."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from playwright.async_api import Browser, Page, Route

from tests.conftest import eventually
from tests.identity.conftest import Provider, oauth_client


async def catch_callback(page: Page) -> list[str]:
    """The app's redirect URI has no listener here: the browser's visit to it is caught."""
    visits: list[str] = []

    async def fulfil(route: Route) -> None:
        visits.append(route.request.url)
        await route.fulfill(status=200, body="signed in", content_type="text/plain")

    await page.route("http://127.0.0.1:8976/**", fulfil)
    return visits


async def test_a_new_person_signs_up_and_signs_in_through_the_pages(
    provider: Provider, browser: Browser
) -> None:
    page = await browser.new_page()
    visits = await catch_callback(page)
    verifier = secrets.token_urlsafe(48)
    async with oauth_client(provider) as client:
        url, _state = client.create_authorization_url(
            f"{provider.issuer}/authorize", code_verifier=verifier
        )
        await page.goto(url)
        assert await page.title() == "Sign in · Cleave"
        await page.get_by_role("link", name="Create an account").click()
        await page.get_by_label("Name").fill("Dana Example")
        await page.get_by_label("Email").fill("dana@example.com")
        await page.get_by_label("Password (at least 10 characters)").fill("correct horse battery")
        await page.get_by_role("button", name="Create account").click()
        assert "your account is ready" in await page.get_by_role("status").inner_text()

        await page.get_by_label("Email").fill("dana@example.com")
        await page.get_by_label("Password").fill("a wrong password")
        await page.get_by_role("button", name="Sign in").click()
        assert "do not match" in await page.get_by_role("alert").inner_text()

        await page.get_by_label("Password").fill("correct horse battery")
        await page.get_by_role("button", name="Sign in").click()
        await eventually(_async(lambda: visits), within=10)
        token = await client.fetch_token(
            f"{provider.issuer}/token", authorization_response=visits[0], code_verifier=verifier
        )

    async with httpx.AsyncClient() as http:

        async def profile() -> dict[str, Any] | None:
            response = await http.get(
                provider.api("/customer/v1/customers/me"),
                headers={"Authorization": f"Bearer {token['access_token']}"},
            )
            return response.json() if response.status_code == 200 else None

        created = await eventually(profile)
    assert created["email"] == "dana@example.com"
    assert created["name"] == "Dana Example"

    await page.goto(f"{provider.issuer}/sign-out")  # a bare visit only asks: no logout CSRF
    assert await page.title() == "Sign out · Cleave"
    await page.get_by_role("button", name="Sign out").click()
    assert await page.title() == "Signed out · Cleave"
    await page.goto(url)  # signed out: the provider asks to sign in again
    assert await page.title() == "Sign in · Cleave"


async def test_signing_up_with_a_registered_email_looks_the_same(
    provider: Provider, browser: Browser
) -> None:
    texts = []
    for email in ("alice@example.com", "new-person@example.com"):
        page = await browser.new_page()
        await page.goto(f"{provider.issuer}/sign-up")
        await page.get_by_label("Name").fill("Someone")
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password (at least 10 characters)").fill("long enough pass")
        await page.get_by_role("button", name="Create account").click()
        texts.append((page.url, await page.get_by_role("main").inner_text()))
        await page.close()
    assert texts[0] == texts[1]


def _async(function: Any) -> Any:
    async def call() -> Any:
        return function()

    return call
