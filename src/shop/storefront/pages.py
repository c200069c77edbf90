"""The storefront's pages, at the root of the site: rendered on the server (Jinja2), each fetching
what it needs from the services concurrently, every form CSRF-checked, every error a page."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from cleave.errors import NotFound, Unprocessable
from cleave.web.app import problem_response
from shop.storefront import domain
from shop.storefront.domain import DEMO_TOKENS, SKU_PATTERN, CartFull, SoldOut, order_outcome
from shop.storefront.handlers import SignInNeeded
from shop.storefront.session import BrowserSession
from shop.storefront.upstream import Address, Order, Product, ServiceDown
from shop.storefront.web import PageRoute, Visit, number, open_visit, static_response

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Page = Annotated[Visit, Depends(open_visit)]
Cursor = Annotated[str | None, Query(max_length=512)]
OrderId = Annotated[str, Path(pattern=r"^[0-9a-f]{8,64}$")]
KEY_PATTERN = re.compile(r"^[0-9a-f]{32}$")
SEARCH_PAGE = 12


def _sku(sku: str) -> str:
    if not SKU_PATTERN.match(sku):
        raise NotFound(f"no product {sku}")
    return sku


# --- browsing ---------------------------------------------------------------------------------


@router.get("/")
async def home(page: Page) -> Response:
    featured = await page.site.api.products(limit=8)
    return await page.render("home.html", products=featured.items)


@router.get("/search")
async def search(
    page: Page, q: Annotated[str, Query(max_length=100)] = "", cursor: Cursor = None
) -> Response:
    found = await page.site.api.products(query=q.strip() or None, cursor=cursor, limit=SEARCH_PAGE)
    return await page.render(
        "search.html",
        q=q.strip(),
        products=found.items,
        next_cursor=found.next_cursor,
        first_page=cursor is None,
    )


@router.get("/products/{sku}")
async def product(page: Page, sku: str, notice: str = "") -> Response:
    found = await page.site.api.product(_sku(sku))
    if found is None:
        raise NotFound(f"no product {sku}")
    return await page.render("product.html", product=found, notice=notice)


# --- the cart ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PricedLine:
    product: Product
    quantity: int

    @property
    def total(self) -> int:
        return self.product.price.amount * self.quantity


def _priced(cart: dict[str, int], products: dict[str, Product]) -> dict[str, Any]:
    """The cart's lines at today's prices; products no longer sold are named apart."""
    lines = [
        PricedLine(products[sku], quantity) for sku, quantity in cart.items() if sku in products
    ]
    currencies = {line.product.currency for line in lines}
    return {
        "lines": lines,
        "gone": [sku for sku in cart if sku not in products],
        "subtotal": sum(line.total for line in lines),
        "currency": currencies.pop() if len(currencies) == 1 else None,
    }


def _cart_notice(notice: str, sku: str, lines: dict[str, int], products: dict[str, Product]) -> str:
    """What just happened to the cart, in words (the redirect names it by a code, never text)."""
    item = products[sku].name if sku in products else "The product"
    return {
        "added": f"{item} is in your cart.",
        "updated": "Quantity updated.",
        "removed": "Removed from your cart.",
        "capped": f"Only {lines.get(sku, 0)} of {item} can be ordered now: your cart has that "
        "many.",
        "sold-out": "Sorry, that product sold out: it is no longer in your cart.",
        "cart-full": "Your cart is full: check out or remove something first.",
        "put-back": "The products of that order are back in your cart.",
    }.get(notice, "")


@router.get("/cart")
async def cart(page: Page, notice: str = "", sku: str = "") -> Response:
    lines = await page.site.cart(page.session)
    products = await page.site.api.products_by_sku(list(lines))
    return await page.render(
        "cart.html", **_priced(lines, products), notice=_cart_notice(notice, sku, lines, products)
    )


@router.post("/cart/items")
async def add_to_cart(page: Page) -> Response:
    fields = await page.form()
    sku = _sku(fields.get("sku", ""))
    quantity = number(fields, "quantity", low=1, high=domain.MAX_QUANTITY)
    try:
        change = await page.site.add_to_cart(page.session, sku, quantity)
    except SoldOut:
        return page.redirect(f"/products/{sku}", notice="sold-out")
    except CartFull:
        return page.redirect("/cart", notice="cart-full")
    return page.redirect("/cart", notice="capped" if change.capped else "added", sku=sku)


@router.post("/cart/items/{sku}")
async def change_quantity(page: Page, sku: str) -> Response:
    fields = await page.form()
    quantity = number(fields, "quantity", low=0, high=domain.MAX_QUANTITY)
    try:
        change = await page.site.change_quantity(page.session, _sku(sku), quantity)
    except SoldOut:
        await page.site.change_quantity(page.session, sku, 0)
        return page.redirect("/cart", notice="sold-out", sku=sku)
    if change.quantity == 0:
        return page.redirect("/cart", notice="removed", sku=sku)
    return page.redirect("/cart", notice="capped" if change.capped else "updated", sku=sku)


# --- checkout ---------------------------------------------------------------------------------


async def _checkout_page(
    page: Page,
    *,
    key: str,
    fields: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
    problem: str | None = None,
) -> Response:
    lines = await page.site.cart(page.session)
    if not lines:
        return page.redirect("/cart")
    products, addresses = await asyncio.gather(
        page.site.api.products_by_sku(list(lines)),
        page.site.as_person(page.session, page.site.api.addresses),
    )
    person = page.person
    assert person is not None
    chosen = fields.get("address") or (addresses[0].id if addresses else "new")
    return await page.render(
        "checkout.html",
        status=status,
        **_priced(lines, products),
        addresses=addresses,
        chosen=chosen,
        key=key,
        fields={"name": person.name, "card": "tok_approve", "save": "1", **fields},
        errors=errors,
        problem=problem,
    )


@router.get("/checkout")
async def checkout(page: Page) -> Response:
    if page.person is None:
        raise SignInNeeded()
    return await _checkout_page(page, key=uuid.uuid4().hex, fields={}, errors={})


@router.post("/checkout")
async def place_order(page: Page) -> Response:
    fields = await page.form()
    if page.person is None:
        raise SignInNeeded()
    key = fields.get("key", "")
    if not KEY_PATTERN.match(key):
        raise Unprocessable("This checkout form is not one the shop gave out.")
    site, session = page.site, page.session
    # The same form sent twice (a double click, a reload) finds the order it placed.
    if (placed := await site.checked_out(session, key)) is not None:
        return page.redirect(f"/orders/{placed}")
    lines = await site.cart(session)
    if not lines:
        return page.redirect("/cart")
    card = fields.get("card", "")
    address, errors = await _shipping_address(page, fields)
    if card not in DEMO_TOKENS:
        errors["card"] = "Choose one of the demo cards."
    if address is None or errors:
        return await _checkout_page(page, key=key, fields=fields, errors=errors, status=422)
    order = {
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines.items()],
        "card_token": card,
        "shipping_address": address,
    }
    try:
        order_id = await site.as_person(
            session, lambda token: site.api.place_order(token, order, key)
        )
    except Unprocessable as refused:
        problem = (
            "Your account is still being set up: please try again in a moment."
            if refused.code == "unknown-customer"
            else f"The order was not accepted: {refused.detail}."
        )
        return await _checkout_page(
            page, key=key, fields=fields, errors={}, status=422, problem=problem
        )
    await site.record_checkout(session, key, order_id)
    return page.redirect(f"/orders/{order_id}")


async def _shipping_address(
    page: Page, fields: dict[str, str]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The order's address: a saved one of the profile's, or a new one (saved if asked)."""
    site, session = page.site, page.session
    saved = await site.as_person(session, site.api.addresses)
    name = fields.get("name", "").strip()
    if fields.get("address", "new") != "new":
        known = next((a for a in saved if a.id == fields.get("address")), None)
        if known is None:
            return None, {"address": "Choose one of your addresses, or enter a new one."}
        if not name:
            return None, {"name": "Enter the recipient's name."}
        if len(name) > 200:
            return None, {"name": "Shorten the recipient's name to 200 characters."}
        return {"name": name, **_address_fields(known)}, {}
    address, errors = domain.shipping_address(fields)
    if address is None:
        return None, errors
    wanted = {key: value for key, value in vars(address).items() if key != "name"}
    if fields.get("save") and not any(_address_fields(a) == wanted for a in saved):
        await site.as_person(
            session, lambda token: site.api.add_address(token, {"label": "home", **wanted})
        )
    return vars(address), {}


def _address_fields(address: Address) -> dict[str, Any]:
    return {
        "line1": address.line1,
        "line2": address.line2,
        "city": address.city,
        "postal_code": address.postal_code,
        "country": address.country,
    }


# --- orders -----------------------------------------------------------------------------------


async def _order(page: Page, order_id: str) -> Order:
    order = await page.site.as_person(
        page.session, lambda token: page.site.api.order(token, order_id)
    )
    if order is None:
        raise NotFound(f"no order {order_id}")
    return order


@router.get("/orders")
async def orders(page: Page, cursor: Cursor = None) -> Response:
    found = await page.site.as_person(
        page.session, lambda token: page.site.api.orders(token, cursor=cursor)
    )
    return await page.render(
        "orders.html",
        orders=found.items,
        next_cursor=found.next_cursor,
        first_page=cursor is None,
        outcome=order_outcome,
    )


async def _names(page: Page, order: Order) -> dict[str, str]:
    """Names of the lines the order has not priced (it was rejected before), from the catalog."""
    unnamed = [line.sku for line in order.lines if line.name is None]
    if not unnamed:
        return {}
    products = await page.site.api.products_by_sku(unnamed)
    return {sku: product.name for sku, product in products.items()}


@router.get("/orders/{order_id}")
async def order_page(page: Page, order_id: OrderId) -> Response:
    order = await _order(page, order_id)
    return await page.render(
        "order.html",
        order=order,
        outcome=order_outcome(order.status, order.reason),
        names=await _names(page, order),
    )


@router.get("/orders/{order_id}/events")
async def order_events(page: Page, order_id: OrderId) -> Response:
    """Server-sent events: the order's status panel each time it changes, until it is final."""
    order = await _order(page, order_id)

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        shown, current, delay = "", order, 0.2
        deadline = time.monotonic() + 120
        while True:
            outcome = order_outcome(current.status, current.reason)
            if current.status != shown:
                shown = current.status
                panel = page.fragment("_order_status.html", order=current, outcome=outcome)
                details = page.fragment(
                    "_order_details.html", order=current, names=await _names(page, current)
                )
                data = json.dumps({"status": current.status, "html": panel, "details": details})
                yield f"event: status\ndata: {data}\n\n"
            if outcome.final or time.monotonic() > deadline:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)
            try:
                current = await _order(page, order_id)
            except ServiceDown:
                continue  # keep the last status shown; the next poll may find the service back
            except SignInNeeded:
                yield "event: signed-out\ndata: {}\n\n"
                return

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@router.post("/orders/{order_id}/cart")
async def put_back(page: Page, order_id: OrderId) -> Response:
    await page.form()
    order = await _order(page, order_id)
    if order.status in ("cancelled", "rejected"):
        await page.site.put_back(page.session, {line.sku: line.quantity for line in order.lines})
    return page.redirect("/cart", notice="put-back")


# --- the account ------------------------------------------------------------------------------


@router.get("/account")
async def account(page: Page, notice: str = "") -> Response:
    profile, addresses = await asyncio.gather(
        page.site.as_person(page.session, page.site.api.profile),
        page.site.as_person(page.session, page.site.api.addresses),
    )
    return await page.render(
        "account.html", profile=profile, addresses=addresses, notice=notice, fields={}, errors={}
    )


@router.post("/account/addresses")
async def add_address(page: Page) -> Response:
    fields = await page.form()
    if page.person is None:
        raise SignInNeeded()
    label = fields.get("label", "").strip() or "home"
    address, errors = domain.shipping_address({**fields, "name": page.person.name})
    if len(label) > 50:
        errors["label"] = "Shorten the label to 50 characters."
    if address is None or errors:
        profile, addresses = await asyncio.gather(
            page.site.as_person(page.session, page.site.api.profile),
            page.site.as_person(page.session, page.site.api.addresses),
        )
        return await page.render(
            "account.html",
            status=422,
            profile=profile,
            addresses=addresses,
            notice="",
            fields=fields,
            errors=errors,
        )
    body = {"label": label, **{k: v for k, v in vars(address).items() if k != "name"}}
    await page.site.as_person(page.session, lambda token: page.site.api.add_address(token, body))
    return page.redirect("/account", notice="address-added")


@router.get("/account/sign-in")
async def sign_in(page: Page, next: str = "/") -> Response:
    return_to = domain.safe_return_path(next)
    if page.person is not None:
        return page.redirect(return_to)
    return page.redirect(await page.site.start_sign_in(page.session, return_to, sign_up=False))


@router.get("/account/sign-up")
async def sign_up(page: Page, next: str = "/") -> Response:
    return_to = domain.safe_return_path(next)
    if page.person is not None:
        return page.redirect(return_to)
    return page.redirect(await page.site.start_sign_in(page.session, return_to, sign_up=True))


@router.get("/account/callback")
async def signed_in(page: Page, request: Request) -> Response:
    query = {key: value[:2048] for key, value in request.query_params.items()}
    session, return_to = await page.site.finish_sign_in(page.session, query)
    page.adopt(session)
    return page.redirect(domain.safe_return_path(return_to))


@router.post("/account/sign-out")
async def sign_out(page: Page) -> Response:
    await page.form()
    provider_sign_out = await page.site.sign_out(page.session)
    page.adopt(BrowserSession.new())
    return page.redirect(provider_sign_out or "/")


# --- files, and everything else ---------------------------------------------------------------


@router.get("/static/{name}")
async def static(name: str, v: str | None = None) -> Response:
    return static_response(name, v)


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def not_found(page: Page, path: str) -> Response:
    if path.startswith("api/"):  # the API answers in its own language, even here
        return problem_response(404, f"no route /{path}", code="not-found")
    raise NotFound(f"no page /{path}")
