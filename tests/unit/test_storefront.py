"""The storefront's rules, without I/O: what a cart may hold, how carts merge on sign-in, how the
shop speaks of stock, money and orders, and what its session cookie keeps and refuses."""

from __future__ import annotations

import httpx
import pytest
from starlette.responses import Response

from cleave.errors import Unprocessable
from cleave.web.clients import cookieless_client
from shop.storefront import domain
from shop.storefront.domain import (
    MAX_LINES,
    MAX_QUANTITY,
    CartFull,
    SoldOut,
    add_line,
    change_line,
    format_money,
    merge_carts,
    order_outcome,
    safe_return_path,
    shipping_address,
    stock_status,
)
from shop.storefront.session import BrowserSession, Person, Tokens, set_cookie
from shop.storefront.upstream import ServiceDown, ShopApi


def test_adding_to_a_cart_grows_the_line_up_to_the_stock_and_the_limit() -> None:
    assert add_line({}, "MUG-CLASSIC", 2, in_stock=40).quantity == 2
    assert add_line({"MUG-CLASSIC": 2}, "MUG-CLASSIC", 3, in_stock=40).quantity == 5
    few = add_line({"PEN-BRASS": 2}, "PEN-BRASS", 5, in_stock=4)
    assert (few.quantity, few.capped) == (4, True)
    many = add_line({}, "STICKER-PACK", MAX_QUANTITY + 5, in_stock=100)
    assert (many.quantity, many.capped) == (MAX_QUANTITY, True)


def test_a_cart_refuses_what_is_sold_out_too_many_products_and_nonsense() -> None:
    with pytest.raises(SoldOut):
        add_line({}, "SOLD-OUT-VINYL", 1, in_stock=0)
    full = {f"SKU-{n:03d}": 1 for n in range(MAX_LINES)}
    with pytest.raises(CartFull):
        add_line(full, "ONE-MORE", 1, in_stock=5)
    assert add_line(full, "SKU-000", 1, in_stock=5).quantity == 2  # a line it has still grows
    with pytest.raises(Unprocessable):
        add_line({}, "MUG-CLASSIC", 0, in_stock=5)
    with pytest.raises(Unprocessable):
        add_line({}, "../../admin", 1, in_stock=5)


def test_changing_a_quantity_sets_it_removes_at_zero_and_caps_at_the_stock() -> None:
    assert change_line("MUG-CLASSIC", 3, in_stock=40).quantity == 3
    assert change_line("MUG-CLASSIC", 0, in_stock=0).quantity == 0  # removing needs no stock
    assert change_line("PEN-BRASS", 9, in_stock=4) == domain.LineChange(4, capped=True)
    with pytest.raises(SoldOut):
        change_line("SOLD-OUT-VINYL", 1, in_stock=0)
    with pytest.raises(Unprocessable):
        change_line("MUG-CLASSIC", -1, in_stock=5)


def test_signing_in_merges_the_visitors_cart_into_the_customers() -> None:
    customer = {"MUG-CLASSIC": 1, "TEE-LOGO-M": MAX_QUANTITY - 1}
    visitor = {"TEE-LOGO-M": 5, "CAP-BLACK": 2}
    merged = merge_carts(customer, visitor)
    assert merged == {"MUG-CLASSIC": 1, "TEE-LOGO-M": MAX_QUANTITY, "CAP-BLACK": 2}
    assert list(merged) == ["MUG-CLASSIC", "TEE-LOGO-M", "CAP-BLACK"]  # the customer's first
    assert merge_carts({}, visitor) == visitor
    assert merge_carts(customer, {}) == customer
    full = {f"SKU-{n:03d}": 1 for n in range(MAX_LINES)}
    assert merge_carts(full, {"EXTRA": 1, "SKU-001": 1}) == {**full, "SKU-001": 2}


def test_stock_and_money_in_a_shoppers_words() -> None:
    assert (stock_status(40).label, stock_status(40).can_buy) == ("In stock", MAX_QUANTITY)
    assert (stock_status(3).label, stock_status(3).can_buy) == ("Only 3 left", 3)
    assert (stock_status(0).level, stock_status(0).can_buy) == ("sold-out", 0)
    assert format_money(1999, "EUR") == "€19.99"
    assert format_money(123456, "USD") == "$1,234.56"
    assert format_money(500, "JPY") == "¥500"
    assert format_money(5, "CHF") == "CHF 0.05"


def test_every_end_of_an_order_is_told_without_a_machine_code() -> None:
    assert order_outcome("pending", None).final is False
    assert order_outcome("confirmed", None).title == "Order confirmed"
    declined = order_outcome("cancelled", "payment_declined")
    assert (declined.title, declined.final) == ("Order cancelled", True)
    assert "declined" in declined.message
    assert "nothing was charged" in declined.message
    assert "sold out" in order_outcome("rejected", "out_of_stock").message
    unknown = order_outcome("cancelled", "capture_failed_weirdly")
    assert "_" not in unknown.message
    assert "nothing was charged" in unknown.message
    for reason in ("payment_insufficient_funds", "payment_timeout", "unknown_sku"):
        assert "_" not in order_outcome("cancelled", reason).message


def test_only_paths_on_this_site_are_places_to_return_to() -> None:
    assert safe_return_path("/checkout") == "/checkout"
    assert safe_return_path("/search?q=mug") == "/search?q=mug"
    for hostile in ("//evil.example", "https://evil.example/", "/\\evil.example", "", None, "x"):
        assert safe_return_path(hostile) == "/"
    assert safe_return_path("/ok\r\nSet-Cookie: x=1") == "/"


def test_a_shipping_address_names_what_is_missing() -> None:
    address, errors = shipping_address(
        {
            "name": "Pat",
            "line1": "1 Main St",
            "city": "Utrecht",
            "postal_code": "3511",
            "country": "nl",
        }
    )
    assert errors == {}
    assert address is not None
    assert address.country == "NL"
    assert address.line2 is None
    missing, errors = shipping_address({"name": "Pat", "country": "Netherlands"})
    assert missing is None
    assert set(errors) == {"line1", "city", "postal_code", "country"}
    assert errors["country"] == "Enter the two-letter country code, like NL or DE."


def test_a_session_seals_its_tokens_under_its_own_cookie_only() -> None:
    mine = BrowserSession.new()
    mine.held.person = Person("p-1", "Pat", "pat@example.com")
    mine.held.tokens = Tokens("access", "refresh", "id", expires_at=9e9)
    sealed = mine.seal()
    assert b"access" not in sealed
    assert b"pat@example.com" not in sealed
    again = BrowserSession(mine.secret, is_new=False)
    assert again.unseal(sealed).tokens == mine.held.tokens
    theirs = BrowserSession.new()
    assert theirs.unseal(sealed).tokens is None  # another cookie opens nothing
    assert theirs.id_hash != mine.id_hash
    assert mine.secret not in mine.id_hash
    assert mine.cart_owner == "c:p-1"
    assert theirs.cart_owner.startswith("v:")


def test_a_forms_token_belongs_to_one_session_and_a_new_browser_has_none() -> None:
    mine, theirs = BrowserSession.new(), BrowserSession.new()
    kept = BrowserSession(mine.secret, is_new=False)
    assert kept.csrf_ok(mine.csrf_token)
    assert not kept.csrf_ok(theirs.csrf_token)
    assert not kept.csrf_ok("")
    assert not mine.csrf_ok(mine.csrf_token)  # a browser with no cookie yet posted nothing of ours


@pytest.mark.parametrize(
    ("secure", "name"), [(False, "shop_session"), (True, "__Host-shop_session")]
)
def test_the_session_cookie_is_http_only_lax_and_secure_on_https(secure: bool, name: str) -> None:
    response = Response()
    set_cookie(response, BrowserSession.new(), secure=secure)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{name}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    assert ("Secure" in cookie) is secure


async def test_the_shared_client_keeps_no_cookie_of_one_caller_for_the_next() -> None:
    seen: list[str | None] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=alices; Path=/"})

    async with cookieless_client(transport=httpx.MockTransport(upstream)) as client:
        await client.get("http://shop.test/a")
        await client.get("http://shop.test/b")
        await client.get("http://shop.test/c", headers={"cookie": "session=bobs"})
    assert seen == [None, None, "session=bobs"]
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as leaky:
        await leaky.get("http://shop.test/a")
        await leaky.get("http://shop.test/b")
    assert seen[-1] == "session=alices"  # what a plain client does, and the test would catch


async def test_a_read_on_a_connection_the_server_just_closed_is_sent_again_once() -> None:
    """The race every pooled client meets: the server closes an idle kept-alive connection as
    the next request goes out on it. A read is sent once more; a write never is."""
    sent: list[str] = []
    product = {
        "sku": "MUG-CLASSIC",
        "name": "Classic mug",
        "description": "A mug.",
        "price": {"amount": 1200, "currency": "EUR"},
        "stock": 3,
    }

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        if len(sent) == 1 or request.method == "POST":
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json=product)

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    api = ShopApi("http://shop.test", http)
    found = await api.product("MUG-CLASSIC")
    assert found is not None
    assert found.name == "Classic mug"
    assert sent == ["GET", "GET"]
    with pytest.raises(ServiceDown):
        await api._call("ordering", "POST", "/orders", json={})
    assert sent == ["GET", "GET", "POST"]
    await http.aclose()
