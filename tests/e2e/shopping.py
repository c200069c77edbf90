"""A person shopping in a real browser: what the storefront's end-to-end tests do, the same in
every topology. Each step is what a person does: click a link by its name, fill a field by its
label, read what the page says. And an order placed over the API, for the tests that look at
what one leaves behind (its trace, its log lines, its metrics)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.async_api import Browser, BrowserContext, Page, expect

PASSWORD = "correct horse battery staple"
ADDRESS = {
    "Street and number": "1 Main St",
    "Postal code": "3511",
    "City": "Utrecht",
    "Country code (two letters, like NL)": "NL",
}
SHIPPING_ADDRESS = {  # the same, as the ordering API takes it
    "name": "A",
    "line1": "1 Main St",
    "city": "Utrecht",
    "postal_code": "3511",
    "country": "NL",
}


@dataclass
class Shopper:
    context: BrowserContext
    page: Page
    base: str

    @classmethod
    async def open(cls, browser: Browser, base: str, *, width: int = 1200) -> Shopper:
        context = await browser.new_context(viewport={"width": width, "height": 900})
        context.set_default_timeout(20_000)
        page = await context.new_page()
        return cls(context, page, base)

    async def go(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def shot(self, folder: Path | None, name: str) -> None:
        if folder is not None:
            await self.page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    async def sign_up(self, name: str, email: str) -> None:
        await self.page.get_by_role("link", name="Create account").click()
        await self.page.get_by_label("Name").fill(name)
        await self.page.get_by_label("Email").fill(email)
        await self.page.get_by_label("Password (at least 10 characters)").fill(PASSWORD)
        await self.page.get_by_role("button", name="Create account").click()
        await self.provider_sign_in(email, PASSWORD)

    async def sign_in(self, email: str, password: str = PASSWORD) -> None:
        await self.page.get_by_role("link", name="Sign in").click()
        await self.provider_sign_in(email, password)

    async def provider_sign_in(self, email: str, password: str) -> None:
        """On the identity provider's own page, then back to the shop, signed in."""
        await expect(self.page.get_by_role("heading", name="Sign in")).to_be_visible()
        await self.page.get_by_label("Email").fill(email)
        await self.page.get_by_label("Password").fill(password)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()

    async def sign_out(self) -> None:
        await self.page.get_by_role("button", name="Sign out").click()
        await expect(self.page.get_by_role("link", name="Sign in")).to_be_visible()

    async def search(self, words: str) -> None:
        await self.page.get_by_label("Search products").fill(words)
        await self.page.get_by_role("button", name="Search").click()
        await expect(self.page.get_by_role("heading", level=1)).to_contain_text(words)

    async def add(self, name: str, quantity: int = 1) -> None:
        """From a page listing the product: open it, choose a quantity, add it to the cart."""
        await self.page.get_by_role("link", name=name, exact=True).first.click()
        await self.add_here(name, quantity)

    async def add_here(self, name: str, quantity: int = 1) -> None:
        """On the product's own page."""
        await self.page.get_by_label("Quantity").fill(str(quantity))
        await self.page.get_by_role("button", name="Add to cart").click()
        await expect(self.page.get_by_role("status")).to_contain_text(f"{name} is in your cart")

    async def cart(self) -> dict[str, int]:
        """The cart page's lines: product name to quantity."""
        await self.go("/cart")
        lines: dict[str, int] = {}
        for row in await self.page.locator("table.cart tbody tr").all():
            name = await row.get_by_role("rowheader").inner_text()
            lines[name] = int(await row.get_by_role("spinbutton").input_value())
        return lines

    async def set_quantity(self, name: str, quantity: int) -> None:
        await self.go("/cart")
        await self.page.get_by_label(f"Quantity of {name}").fill(str(quantity))
        await self.page.get_by_role("button", name=f"Update {name}").click()
        await expect(self.page.get_by_role("status")).to_contain_text("Quantity updated")

    async def fill_checkout(self, card: str, *, new_address: bool) -> None:
        await self.go("/cart")
        await self.page.get_by_role("link", name="Check out").click()
        await expect(self.page.get_by_role("heading", name="Checkout")).to_be_visible()
        if new_address:
            choice = re.compile(r"^(A new address|This address)")
            await self.page.get_by_role("radio", name=choice).check()
            for label, value in ADDRESS.items():
                await self.page.get_by_label(label).fill(value)
        await self.page.get_by_label(card).check()

    async def place_order(self, card: str, *, new_address: bool = False) -> str:
        """Check out with a demo card; returns the order's id, from the page it lands on."""
        await self.fill_checkout(card, new_address=new_address)
        await self.page.get_by_role("button", name="Place order").click()
        await self.page.wait_for_url(re.compile(r"/orders/[0-9a-f]+$"))
        return self.page.url.rsplit("/", 1)[1]

    async def order_ids(self) -> list[str]:
        await self.go("/orders")
        return [
            str(await row.get_attribute("data-order"))
            for row in await self.page.locator("tr[data-order]").all()
        ]

    async def stock_of(self, sku: str) -> int:
        await self.go(f"/products/{sku}")
        return int(str(await self.page.locator("[data-stock]").get_attribute("data-stock")))

    async def close(self) -> None:
        await self.context.close()


async def final_status(shopper: Shopper) -> str:
    """Wait, without reloading, until the order page shows a final status; return it."""
    status = shopper.page.locator("#order-status [data-status]")
    await expect(status).not_to_have_attribute("data-status", "pending", timeout=30_000)
    return str(await status.get_attribute("data-status"))


async def settled_order(base: str, token: str, card: str = "tok_decline") -> str:
    """An order of one mug placed over the API with `card`, waited on until it is no longer
    pending; its id. The default card is declined: the saga compensates."""
    body = {
        "lines": [{"sku": "MUG-CLASSIC", "quantity": 1}],
        "card_token": card,
        "shipping_address": SHIPPING_ADDRESS,
    }
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        placed = (await http.post("/api/ordering/v1/orders", json=body)).json()
        deadline = time.monotonic() + 15
        while (await http.get(f"/api/ordering/v1/orders/{placed['id']}")).json()[
            "status"
        ] == "pending":
            assert time.monotonic() < deadline
    order_id: str = placed["id"]
    return order_id


def new_email() -> str:
    return f"shopper-{uuid.uuid4().hex[:8]}@example.com"


async def the_whole_journey(
    browser: Browser, base: str, screenshots: Path | None, *, every_ending: bool = True
) -> None:
    """The issue's journey: sign up, search, add two products, change a quantity, sign in again
    and find the cart kept (and a visitor's line merged into it), check out with the approving
    card and watch the order confirm without a reload; with the declining card, see it cancelled
    with its reason and the stock back; a double-submitted checkout makes one order."""
    person = await Shopper.open(browser, base)
    page = person.page
    email = new_email()
    await person.go("/")
    await expect(page.get_by_role("heading", name="Featured")).to_be_visible()
    await person.shot(screenshots, "home")
    await person.sign_up("Pat Example", email)

    await person.search("mug")
    await expect(page.get_by_role("link", name="Enamel camping mug")).to_be_visible()
    await person.shot(screenshots, "search")
    await person.add("Classic mug")
    await person.search("hoodie")
    await person.add("Grey hoodie", 2)
    await person.set_quantity("Classic mug", 3)
    assert await person.cart() == {"Classic mug": 3, "Grey hoodie": 2}
    await person.shot(screenshots, "cart")

    # Signed out, the cart is the visitor's (empty); what the visitor adds joins on sign-in.
    await person.sign_out()
    assert await person.cart() == {}
    await person.search("cap")
    await person.add("Black cap")
    await person.sign_in(email)  # the provider asks again: its session ended at sign-out too
    assert await person.cart() == {"Classic mug": 3, "Grey hoodie": 2, "Black cap": 1}

    # Approved: the order page follows the order to confirmed without being reloaded.
    await person.fill_checkout("Demo card that is approved", new_address=True)
    await person.shot(screenshots, "checkout")
    await page.get_by_role("button", name="Place order").click()
    await page.wait_for_url(re.compile(r"/orders/[0-9a-f]+$"))
    await page.evaluate("window.stillTheSamePage = true")
    assert await final_status(person) == "confirmed"
    assert await page.evaluate("window.stillTheSamePage") is True
    await expect(page.get_by_role("heading", name="Order confirmed")).to_be_visible()
    await expect(page.get_by_text("Grey hoodie")).to_be_visible()
    await person.shot(screenshots, "order")
    confirmed = page.url.rsplit("/", 1)[1]
    assert await person.cart() == {}

    # Declined: cancelled, in words; the stock held for it is back on the product page.
    before = await person.stock_of("DESK-MAT")
    await expect(page.get_by_text(f"Only {before} left")).to_be_visible()
    await person.add_here("Desk mat")
    await person.place_order("Demo card that is declined")  # the saved address, pre-selected
    assert await final_status(person) == "cancelled"
    await expect(page.get_by_role("heading", name="Order cancelled")).to_be_visible()
    await expect(page.get_by_text("Your card was declined")).to_be_visible()
    assert await person.stock_of("DESK-MAT") == before

    if every_ending:
        await an_order_that_stays_pending_changes_live(person)
    await a_double_submitted_checkout_makes_one_order(person, confirmed)
    await person.go("/orders")
    await person.shot(screenshots, "orders")
    await person.go("/account")
    await expect(page.get_by_text("1 Main St")).to_be_visible()  # saved at the first checkout
    await person.shot(screenshots, "account")
    if every_ending:  # a phone's width: the same pages, one column
        phone = await Shopper.open(browser, base, width=390)
        await phone.go("/products/MUG-ENAMEL")
        await expect(phone.page.get_by_role("button", name="Add to cart")).to_be_visible()
        await phone.shot(screenshots, "phone-product")
        await phone.close()
    await person.close()


async def an_order_that_stays_pending_changes_live(person: Shopper) -> None:
    """The bank never answers: pending for a while for sure, so the page must change live."""
    page = person.page
    await person.go("/products/NOTEBOOK-A5")
    await person.add_here("A5 notebook")
    streams: list[str] = []
    page.on(
        "request", lambda request: streams.append(request.url) if "/events" in request.url else None
    )
    await person.place_order("Demo card whose bank never answers")
    await page.evaluate("window.stillTheSamePage = true")
    assert await final_status(person) == "cancelled"
    assert await page.evaluate("window.stillTheSamePage") is True
    assert streams
    assert streams[0].endswith("/events")
    await expect(page.get_by_text("The bank did not answer in time")).to_be_visible()
    await page.get_by_role("button", name="Put these products back in my cart").click()
    assert await person.cart() == {"A5 notebook": 1}


async def a_double_submitted_checkout_makes_one_order(person: Shopper, earlier: str) -> None:
    """The same checkout form sent twice at once places one order, and both answers show it."""
    page, base = person.page, person.base
    placed = await person.order_ids()
    await person.go("/products/STICKER-PACK")
    await person.add_here("Sticker pack")
    await person.fill_checkout("Demo card that is approved", new_address=False)
    form = await page.locator("form.checkout-form").evaluate(
        "form => Object.fromEntries(new FormData(form))"
    )
    first, second = await asyncio.gather(
        *(
            person.context.request.post(f"{base}/checkout", form=form, max_redirects=0)
            for _ in range(2)
        )
    )
    assert first.status == second.status == 303
    assert first.headers["location"] == second.headers["location"]
    await person.go(first.headers["location"])
    assert await final_status(person) == "confirmed"
    orders = await person.order_ids()
    assert len(orders) == len(placed) + 1
    assert earlier in orders


async def two_people_at_once(browser: Browser, base: str) -> None:
    """Two people shop at the same moment through the same site: each sees only their own cart
    and their own orders, whatever any server in between shares between them."""
    ann, ben = (await Shopper.open(browser, base), await Shopper.open(browser, base))
    await asyncio.gather(ann.go("/"), ben.go("/"))
    await asyncio.gather(ann.sign_up("Ann", new_email()), ben.sign_up("Ben", new_email()))

    async def shop(person: Shopper, product: str) -> str:
        await person.search(product.split()[-1].lower())
        await person.add(product)
        assert await person.cart() == {product: 1}
        order_id = await person.place_order("Demo card that is approved", new_address=True)
        assert await final_status(person) == "confirmed"
        return order_id

    ann_order, ben_order = await asyncio.gather(shop(ann, "Striped socks"), shop(ben, "Brass pen"))
    assert await ann.order_ids() == [ann_order]
    assert await ben.order_ids() == [ben_order]
    await ann.go(f"/orders/{ben_order}")  # someone else's order is not there at all
    await expect(
        ann.page.get_by_role("heading", name="We could not find that page")
    ).to_be_visible()
    await asyncio.gather(ann.go("/search?q=cap"), ben.go("/search?q=tote"))
    await asyncio.gather(ann.add("Black cap"), ben.add("Canvas tote"))
    assert (await ann.cart(), await ben.cart()) == ({"Black cap": 1}, {"Canvas tote": 1})
    await ann.close()
    await ben.close()
