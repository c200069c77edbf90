"""The console's topology picture in a real headless Chromium at 1280 pixels, laid out by
Graphviz: it fits the window, no edge label lies on another label or on a service and its words
stay readable, for the split (a unit per service) and for larger made-up systems with many more
calls and events; clicking a service of the split opens its details."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page
from sqlalchemy import MetaData

from cleave.config import SystemConfig, Topology, load_config
from cleave.data.unit_of_work import UnitOfWork
from cleave.events import Event
from cleave.service import PortBinding, Service, Subscription
from cleave.web.console.picture import topology_picture
from cleave.web.console.web import STYLE
from shop.identity.contract import read_credentials
from tests.conftest import require
from tests.e2e.conftest import ROOT, ReadmeSplit
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


async def assert_legible(page: Page, picture: Locator) -> list[dict[str, Any]]:
    """The picture fits the window, and each edge's label lies clear of every other label and
    of every service, in letters at least 10 pixels tall. Returns the labels."""
    box = await picture.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= WIDTH, box
    assert await page.evaluate("document.documentElement.scrollWidth") <= WIDTH  # no scrolling
    found = await picture.evaluate(BOXES)
    labels: list[dict[str, Any]] = found["labels"]
    for index, label in enumerate(labels):
        assert label["screen_height"] >= 10, label  # not shrunk past reading
        for other in labels[index + 1 :]:
            assert not overlap(label, other), (label, other)
        for service in found["services"]:
            assert not overlap(label, service), (label, service)
    return labels


def a_made_up_system(units: int, per_unit: int) -> tuple[SystemConfig, dict[str, Service]]:
    """`units` units of `per_unit` services, each providing a port, calling two others' and
    consuming a third one's event: a denser web than any real system's."""
    count = units * per_unit
    ports = [type(f"Svc{i}Port", (), {}) for i in range(count)]
    events = [
        type(f"Thing{i}", (Event,), {"event_type": f"big.svc{i}.thing{i}_happened.v1"})
        for i in range(count)
    ]

    async def handled(_event: Event, _uow: UnitOfWork) -> None:
        return None

    services = {
        f"svc{i}": Service(
            name=f"svc{i}",
            metadata=MetaData(),
            migrations=Path("migrations"),
            port=PortBinding(ports[i], factory=lambda _context: None),
            calls=(ports[(i + 1) % count], ports[(i + 3) % count]),
            publishes=(events[i],),
            subscriptions=(Subscription(events[(i + 2) % count], handled, f"on_thing{i}"),),
        )
        for i in range(count)
    }
    names = list(services)
    topology = Topology(
        name=f"{units}x{per_unit}",
        units={f"u{u}": tuple(names[u * per_unit : (u + 1) * per_unit]) for u in range(units)},
        broker="memory",
        database="sqlite+aiosqlite:///{var}/{service}.db",
    )
    return replace(load_config(ROOT / "cleave.toml"), topology=topology), services


@pytest.mark.parametrize(("units", "per_unit"), [(16, 1), (4, 4), (2, 3), (1, 12)])
async def test_a_larger_systems_picture_stays_legible(
    browser: Browser, units: int, per_unit: int
) -> None:
    require(shutil.which("dot") is not None, "no Graphviz dot (tests/browser.sh adds it)")
    config, services = a_made_up_system(units, per_unit)
    svg = await topology_picture(config, services)
    page = await browser.new_page(viewport={"width": WIDTH, "height": 900})
    await page.set_content(f"<style>{STYLE}</style>{svg}")  # the console's own stylesheet
    labels = await assert_legible(page, page.locator("svg.topology.laid-out"))
    assert len(labels) == 3 * len(services)  # two calls and one event each, every one labelled


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
    labels = await assert_legible(page, picture)
    assert len(labels) == 5, labels  # three calls and two events, each with its label
    assert "CatalogPort · gRPC" in {label["text"] for label in labels}
    hooks = await picture.locator("[data-service]").all()
    assert {await hook.get_attribute("data-service") for hook in hooks} == {
        "identity",
        "catalog",
        "customer",
        "ordering",
        "payment",
        "storefront",
    }

    # Each service is a link by its name, for a mouse, a keyboard and a screen reader alike.
    await picture.get_by_role("link", name=re.compile(r"^payment\b")).click()
    details = page.locator("#service-details")
    await details.wait_for()
    assert page.url == f"{readme_split.base}/console/services/payment"
    routes = await page.locator("#service-routes").inner_text()
    assert "/api/payment/v1/payments/{payment_id}/refund" in routes
    assert "PaymentPort" in await page.locator("#service-ports").inner_text()

    # From one service to the next, through the same picture, the chosen one drawn stronger.
    await page.locator("svg.topology").get_by_role("link", name=re.compile("^ordering")).focus()
    await page.keyboard.press("Enter")
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
