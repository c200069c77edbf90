"""The console in a real headless Chromium: a person places an order, opens /console, follows the
order's trace and sees its whole path across the services as one waterfall."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from tests.e2e.conftest import cleave
from tests.e2e.shopping import settled_order


async def test_an_orders_path_is_one_waterfall_in_the_console(
    server: str, env: dict[str, str], browser: Browser, tmp_path: Path
) -> None:
    token = cleave("token", "--customer", "alice", env=env).stdout.strip()
    await settled_order(server, token)

    page = await browser.new_page(viewport={"width": 1300, "height": 1000})
    refused: list[str] = []  # what the console's CSP blocked: nothing, its pages need no inline
    page.on("console", lambda message: refused.append(message.text))
    await page.goto(f"{server}/console")
    # The monolith on loopback: open, and it says so.
    assert "This console is open" in await page.locator("#access").inner_text()
    assert await page.locator("svg.topology [data-service=payment]").count() == 1
    assert "ok" in await page.locator("#health").inner_text()
    await (
        page.get_by_role("row")
        .filter(has_text="POST /api/ordering/v1/orders")
        .first.get_by_role("link")
        .click()
    )
    waterfall = page.locator("#waterfall")
    await waterfall.wait_for()
    rows = waterfall.locator(".row")
    services = {await row.get_attribute("data-service") for row in await rows.all()}
    assert {"ordering", "catalog"} <= services  # catalog published the reservation and its release
    text = await waterfall.inner_text()
    for step in (
        "price_lines",
        "reserve_stock",
        "authorise_payment",
        "compensate reserve_stock",
        "failed",
    ):
        assert step in text, step
    assert "publish shop.ordering.order_cancelled.v1" in text
    # A transaction or a read is a tick on the bar of the span it ran in, named on hover.
    marks = await waterfall.locator("rect.event title").all_text_contents()
    assert {"transaction ordering", "read catalog"} <= set(marks), marks
    logs = await page.locator("#logs").inner_text()
    assert "saga compensating" in logs  # the trace's own logs, next to its spans
    bar = waterfall.locator(".lane rect").first
    assert float(await bar.get_attribute("width") or 0) > 0
    box = await waterfall.locator(".lane svg").first.bounding_box()
    assert box is not None
    assert box["width"] > 300  # the stylesheet applied: the lane fills the row
    assert not [text for text in refused if "Content Security Policy" in text], refused
    await page.screenshot(path=str(tmp_path / "waterfall.png"), full_page=True)
    assert (tmp_path / "waterfall.png").stat().st_size > 10_000
