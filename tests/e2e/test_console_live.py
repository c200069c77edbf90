"""The console's logs and metrics pages and its live trace list, in a real headless Chromium on a
real `cleave up` (the monolith): an order's log lines appear, a filter narrows them and new ones
arrive without a reload; the catalog's route has its chart; a new trace joins the list live."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page

from tests.e2e.conftest import ROOT, cleave
from tests.e2e.shopping import settled_order


def screenshots(tmp_path: Path) -> Path:
    """`CLEAVE_SCREENSHOTS` (the README's: `CLEAVE_SCREENSHOTS=docs/screenshots`), else here."""
    folder = Path(os.environ.get("CLEAVE_SCREENSHOTS") or tmp_path)
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def not_reloaded(page: Page) -> bool:
    return bool(await page.evaluate("window.stillThisPage === true"))


async def test_logs_follow_live_filter_and_belong_to_their_trace(
    server: str, env: dict[str, str], browser: Browser, tmp_path: Path
) -> None:
    token = cleave("token", "--customer", "alice", env=env).stdout.strip()
    first = await settled_order(server, token)
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))

    await page.goto(f"{server}/console/logs")
    lines = page.locator("#log-lines tbody tr")
    compensating = lines.filter(has_text="saga compensating").filter(has_text=first)
    await compensating.first.wait_for()
    everything = await lines.count()
    await page.evaluate("window.stillThisPage = true")

    # Following: a line of an order placed now appears on the open page, with no reload.
    second = await settled_order(server, token)
    await (
        lines.filter(has_text="saga compensating")
        .filter(has_text=second)
        .first.wait_for(timeout=15_000)
    )
    assert await not_reloaded(page)

    # Filtering by text: only the first order's lines, fewer than all.
    await page.get_by_label("search logs").fill(first)
    await page.get_by_role("button", name="filter").click()
    await page.wait_for_url("**/console/logs?q=*")
    await compensating.first.wait_for()
    narrowed = [await row.inner_text() for row in await lines.all()]
    assert narrowed
    assert all(first in text for text in narrowed)
    assert len(narrowed) < everything
    # And by level: warnings and above hide the saga's info lines.
    await page.get_by_label("level").select_option("warning")
    await page.get_by_role("button", name="filter").click()
    await page.wait_for_url("**level=warning*")
    assert await compensating.count() == 0

    # A trace's page links to its logs, and they are that trace's only.
    await page.goto(f"{server}/console")
    await (
        page.get_by_role("row")
        .filter(has_text="POST /api/ordering/v1/orders")
        .first.get_by_role("link")
        .click()
    )
    await page.locator("#waterfall").wait_for()
    await page.locator("#trace-logs").click()
    await page.wait_for_url("**/console/logs?trace=*")
    await lines.filter(has_text="saga compensating").first.wait_for()
    trace_id = page.url.rsplit("=", 1)[1]
    links = page.locator("#log-lines tbody a")
    assert {await link.get_attribute("href") for link in await links.all()} == {
        f"/console/traces/{trace_id}"
    }

    await page.goto(f"{server}/console/logs")
    await compensating.first.wait_for()
    await page.screenshot(path=str(screenshots(tmp_path) / "console-logs.png"))
    assert not [text for text in refused if "Content Security Policy" in text], refused


async def test_the_trace_list_updates_live_and_metrics_chart_each_route(
    server: str, env: dict[str, str], browser: Browser, tmp_path: Path
) -> None:
    token = cleave("token", "--customer", "alice", env=env).stdout.strip()
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    await page.goto(f"{server}/console")
    await page.evaluate("window.stillThisPage = true")
    orders = page.locator("#traces tbody tr").filter(has_text="POST /api/ordering/v1/orders")
    assert await orders.count() == 0

    await settled_order(server, token, card="tok_visa")
    await orders.first.wait_for(timeout=15_000)  # there without a reload
    assert await not_reloaded(page)
    link = await orders.first.get_by_role("link").get_attribute("href")
    assert link is not None
    assert link.startswith("/console/traces/")

    async with httpx.AsyncClient(base_url=server) as http:
        for _ in range(3):
            assert (await http.get("/api/catalog/v1/products")).status_code == 200
    await page.goto(f"{server}/console/metrics")
    catalog = page.locator("#red tr[data-service=catalog][data-route='/api/catalog/v1/products']")
    await catalog.wait_for()
    assert int(await catalog.get_attribute("data-count") or 0) >= 3
    bars = catalog.locator("svg.durations rect")
    assert await bars.count() > 0
    assert sum([float(await bar.get_attribute("height") or 0) for bar in await bars.all()]) > 0
    ordering = page.locator("#gauges tr[data-service=ordering]")
    assert "0" in await ordering.locator("[data-gauge=cleave_dead_letters]").inner_text()
    # The page looks again by itself: a rate and its line appear from the second look on.
    async with httpx.AsyncClient(base_url=server) as http:
        for _ in range(25):
            await http.get("/api/catalog/v1/products")
            await asyncio.sleep(0.2)
    deadline = time.monotonic() + 15
    while float(await catalog.get_attribute("data-rate") or 0) == 0:
        assert time.monotonic() < deadline, "no rate for the catalog's route"
        await asyncio.sleep(0.5)
    await catalog.locator("svg.sparkline").wait_for()  # the page may be between two looks
    await page.screenshot(path=str(screenshots(tmp_path) / "console-metrics.png"))
    assert not [text for text in refused if "Content Security Policy" in text], refused
