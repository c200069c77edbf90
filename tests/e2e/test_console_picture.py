"""The console's topology picture of the split (a unit per service), in a real headless
Chromium at 1280 pixels: laid out by Graphviz, it fits the window, no edge label lies on another
label or on a service, its words stay readable, and clicking a service opens its details."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page

from shop.identity.contract import read_credentials
from tests.e2e.conftest import ReadmeSplit
from tests.e2e.test_storefront import screenshots

WIDTH = 1280
# Each edge's label box and each service's box, in the picture's own coordinates, and how tall
# a label's letters are on the screen.
BOXES = """(svg) => {
  const box = (element) => { const b = element.getBBox();
    return {x: b.x, y: b.y, right: b.x + b.width, bottom: b.y + b.height}; };
  const union = (boxes) => ({x: Math.min(...boxes.map(b => b.x)),
    y: Math.min(...boxes.map(b => b.y)), right: Math.max(...boxes.map(b => b.right)),
    bottom: Math.max(...boxes.map(b => b.bottom))});
  const labels = [...svg.querySelectorAll('g.edge')].map(edge => ({
    edge: edge.querySelector('title').textContent,
    text: [...edge.querySelectorAll('text')].map(t => t.textContent).join(' '),
    ...union([...edge.querySelectorAll('text')].map(box)),
    screen_height: Math.min(...[...edge.querySelectorAll('text')].map(
      t => t.getBoundingClientRect().height)),
  }));
  const services = [...svg.querySelectorAll('g.node')].map(node => ({
    service: node.dataset.service, ...box(node.querySelector('path, polygon'))}));
  return {labels, services};
}"""


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(
        a["x"] < b["right"]
        and b["x"] < a["right"]
        and a["y"] < b["bottom"]
        and b["y"] < a["bottom"]
    )


async def sign_in_as_admin(page: Page, split: ReadmeSplit) -> None:
    admin = read_credentials(Path(split.environment["CLEAVE_VAR"]) / "split")["users"]["admin"]
    await page.goto(f"{split.base}/console")
    await page.get_by_label("Email").fill(admin["email"])
    await page.get_by_label("Password").fill(admin["password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.locator("#access").wait_for()


async def test_the_splits_picture_fits_keeps_its_labels_apart_and_opens_a_service(
    browser: Browser, readme_split: ReadmeSplit, tmp_path: Path
) -> None:
    page = await browser.new_page(viewport={"width": WIDTH, "height": 900})
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    await sign_in_as_admin(page, readme_split)

    picture = page.locator("svg.topology.laid-out")
    box = await picture.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= WIDTH, box
    assert await page.evaluate("document.documentElement.scrollWidth") <= WIDTH  # no scrolling

    found = await picture.evaluate(BOXES)
    labels, services = found["labels"], found["services"]
    assert {s["service"] for s in services} == {
        "identity",
        "catalog",
        "customer",
        "ordering",
        "payment",
        "storefront",
    }
    assert len(labels) == 5, labels  # three calls and two events, each with its label
    for index, label in enumerate(labels):
        assert label["screen_height"] >= 10, label  # not shrunk past reading
        for other in labels[index + 1 :]:
            assert not overlap(label, other), (label, other)
        for service in services:
            assert not overlap(label, service), (label, service)
    assert "CatalogPort · gRPC" in {label["text"] for label in labels}

    await picture.locator("[data-service=payment] a").click()
    details = page.locator("#service-details")
    await details.wait_for()
    assert page.url == f"{readme_split.base}/console/services/payment"
    routes = await page.locator("#service-routes").inner_text()
    assert "/api/payment/v1/payments/{payment_id}/refund" in routes
    assert "PaymentPort" in await page.locator("#service-ports").inner_text()

    # From one service to the next, through the same picture, the chosen one drawn stronger.
    await page.locator("svg.topology [data-service=ordering] a").click()
    await page.wait_for_url("**/console/services/ordering")
    ports = await page.locator("#service-ports").inner_text()
    for called in ("CatalogPort", "CustomerPort", "PaymentPort"):
        assert called in ports
    assert "gRPC" in ports  # every call of the split crosses units
    assert "shop.ordering.order_confirmed.v1" in await page.locator("#service-events").inner_text()
    chosen = page.locator("svg.topology [data-service=ordering] path").first
    assert await chosen.get_attribute("stroke-width") == "3"
    assert not [text for text in refused if "Content Security Policy" in text], refused
    await page.screenshot(path=str(screenshots(tmp_path) / "console-topology.png"), full_page=True)
