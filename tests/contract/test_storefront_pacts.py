"""The storefront's HTTP pacts: with the catalog, the public calls its pages make (a page of
products, one product, a product that does not exist); with customer, the signed-in person's
profile and addresses. Each is made by the storefront's own API client against Pact's mock
server, so the pact holds exactly what that client sends and reads; each provider verifies it by
replaying the requests against its real app (tests/contract/test_providers.py)."""

from __future__ import annotations

from pact import Pact, match

from cleave.contracts.pacts import REQUESTED, SIGNED_IN
from cleave.web.clients import cookieless_client
from shop.identity.domain import USER_SCOPES
from shop.storefront.upstream import Product, ShopApi
from tests.contract.pactfiles import write_pact

PRODUCT = {
    "sku": "MUG-CLASSIC",
    "name": match.str("Classic mug"),
    "description": match.str("A white stoneware mug, 330 ml."),
    "price": {"amount": match.int(1200), "currency": match.str("EUR")},
    "stock": match.int(40),
}


async def test_storefront_reads_products_from_catalog() -> None:
    pact = Pact("storefront", "catalog")
    (
        pact.upon_receiving("a page of products")
        .with_request("GET", "/api/catalog/v1/products")
        .with_query_parameter("limit", "2")
        .will_respond_with(200)
        .with_body(
            {
                "items": match.each_like({**PRODUCT, "sku": match.str("MUG-CLASSIC")}, min=2),
                "next_cursor": match.str("eyJhZnRlciI6Ik1VRy1FTkFNRUwifQ"),
            },
            "application/json",
        )
    )
    (
        pact.upon_receiving("one product")
        .with_request("GET", "/api/catalog/v1/products/MUG-CLASSIC")
        .will_respond_with(200)
        .with_body(PRODUCT, "application/json")
    )
    (
        pact.upon_receiving("a product that does not exist")
        .with_request("GET", "/api/catalog/v1/products/NO-SUCH-SKU")
        .will_respond_with(404)
    )
    with pact.serve() as server:
        async with cookieless_client(timeout=5.0) as http:
            api = ShopApi(str(server.url), http)
            page = await api.products(limit=2)
            mug = await api.product("MUG-CLASSIC")
            missing = await api.product("NO-SUCH-SKU")
    assert page.items
    assert page.next_cursor
    assert isinstance(mug, Product)
    assert (mug.sku, mug.currency) == ("MUG-CLASSIC", "EUR")
    assert missing is None  # the product page answers 404 of its own
    write_pact(pact)


ADDRESS = {
    "label": "home",
    "line1": "1 Main St",
    "city": "Utrecht",
    "postal_code": "3511",
    "country": "NL",
}


async def test_storefront_reads_the_persons_profile_from_customer() -> None:
    """As the signed-in person: their own token on every call (the verifier sends one for the
    state's subject, signed by the issuer the provider trusts)."""
    pact = Pact("storefront", "customer")
    token = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"
    signed_in: dict[str, object] = {"subject": "alice", "scopes": sorted(USER_SCOPES)}
    (
        pact.upon_receiving("the person's profile")
        .given(SIGNED_IN, signed_in)
        .with_request("GET", "/api/customer/v1/customers/me")
        .with_header("Authorization", match.regex(f"Bearer {token}", regex=r"^Bearer \S+$"))
        .will_respond_with(200)
        .with_body(
            {
                "id": "alice",
                "email": match.str("alice@example.com"),
                "name": match.str("Alice Example"),
                "confirmed_orders": match.int(0),
            },
            "application/json",
        )
    )
    (
        pact.upon_receiving("the person's addresses")
        .given(SIGNED_IN, signed_in)
        .with_request("GET", "/api/customer/v1/customers/me/addresses")
        .with_header("Authorization", match.regex(f"Bearer {token}", regex=r"^Bearer \S+$"))
        .will_respond_with(200)
        .with_body(
            match.each_like({"id": match.str("a-1"), **ADDRESS}, min=1),
            "application/json",
        )
    )
    (
        pact.upon_receiving("a new address")
        .given(SIGNED_IN, signed_in)
        .with_request("POST", "/api/customer/v1/customers/me/addresses")
        .with_header("Authorization", match.regex(f"Bearer {token}", regex=r"^Bearer \S+$"))
        .with_body(ADDRESS, "application/json")
        .will_respond_with(201)
        .with_body({"id": match.str("a-2"), **ADDRESS}, "application/json")
    )
    with pact.serve() as server:
        async with cookieless_client(timeout=5.0) as http:
            api = ShopApi(str(server.url), http)
            profile = await api.profile(token)
            addresses = await api.addresses(token)
            added = await api.add_address(token, ADDRESS)
    assert profile is not None
    assert (profile.id, profile.confirmed_orders) == ("alice", 0)
    assert addresses
    assert addresses[0].city == "Utrecht"
    assert added.id
    write_pact(pact)


SHIPPING = {
    "name": "Alice Example",
    "line1": "1 Main St",
    "city": "Utrecht",
    "postal_code": "3511",
    "country": "NL",
}
ORDER = {
    "lines": [{"sku": "MUG-CLASSIC", "quantity": 2}],
    "card_token": "tok_visa",
    "shipping_address": SHIPPING,
}


CREATED_AT = match.regex(
    "2026-01-01T00:00:00Z", regex=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
)


def placed_order(**extra: object) -> dict[str, object]:
    """The provider state of an order placed first (by the signed-in person, or by `subject`):
    its answer's `id` is the state's value that a request for that order takes."""
    return {
        "method": "POST",
        "path": "/api/ordering/v1/orders",
        "body": ORDER,
        "headers": {"Idempotency-Key": "k-listed"},
        **extra,
    }


def an_order(order_id: object) -> dict[str, object]:
    """An order as the storefront reads it (`upstream.Order`), just placed: not priced yet."""
    return {
        "id": order_id,
        "status": match.str("pending"),
        "reason": None,
        "lines": match.each_like(
            {"sku": "MUG-CLASSIC", "quantity": 2, "name": None, "unit_price": None}, min=1
        ),
        "total": None,
        "shipping_address": SHIPPING,
        "card": match.str("visa"),
        "created_at": CREATED_AT,
    }


# The path of the order the state placed: its id comes from the state at verification (the
# mock server answers for the example, exactly, so that each order's request finds its own).
PLACED_ORDER_PATH = {
    "path": {"type": "ProviderState", "expression": "/api/ordering/v1/orders/${id}"}
}


async def test_storefront_places_and_reads_the_persons_orders_at_ordering() -> None:
    pact = Pact("storefront", "ordering")
    token = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"
    bearer = match.regex(f"Bearer {token}", regex=r"^Bearer \S+$")
    signed_in: dict[str, object] = {"subject": "alice", "scopes": sorted(USER_SCOPES)}
    (
        pact.upon_receiving("a new order")
        .given(SIGNED_IN, signed_in)
        .with_request("POST", "/api/ordering/v1/orders")
        .with_header("Authorization", bearer)
        .with_header("Idempotency-Key", match.str("k-5b7e0c3a"))
        .with_body(ORDER, "application/json")
        .will_respond_with(202)
        .with_body({"id": match.str("o-81d2")}, "application/json")
    )
    (
        pact.upon_receiving("the person's orders")
        .given(SIGNED_IN, signed_in)
        .given(REQUESTED, placed_order())
        .with_request("GET", "/api/ordering/v1/orders")
        .with_query_parameter("limit", "10")
        .with_header("Authorization", bearer)
        .will_respond_with(200)
        .with_body(
            {"items": match.each_like(an_order(match.str("o-81d2")), min=1), "next_cursor": None},
            "application/json",
        )
    )
    (
        pact.upon_receiving("one order")
        .given(SIGNED_IN, signed_in)
        .given(REQUESTED, placed_order())
        .with_request("GET", "/api/ordering/v1/orders/o-81d2")
        .with_generators(PLACED_ORDER_PATH, "Request")
        .with_header("Authorization", bearer)
        .will_respond_with(200)
        .with_body(an_order(match.str("o-81d2")), "application/json")
    )
    # Another person's order is "not found" to this one: the order page answers 404 of its own.
    (
        pact.upon_receiving("an order that is not the person's")
        .given(SIGNED_IN, signed_in)
        .given(REQUESTED, placed_order(subject="bob"))
        .with_request("GET", "/api/ordering/v1/orders/o-of-bob")
        .with_generators(PLACED_ORDER_PATH, "Request")
        .with_header("Authorization", bearer)
        .will_respond_with(404)
    )
    with pact.serve() as server:
        async with cookieless_client(timeout=5.0) as http:
            api = ShopApi(str(server.url), http)
            order_id = await api.place_order(token, ORDER, "k-5b7e0c3a")
            page = await api.orders(token, cursor=None)
            one = await api.order(token, "o-81d2")
            not_theirs = await api.order(token, "o-of-bob")
    assert order_id
    [order] = page.items
    assert (order.status, order.lines[0].sku, order.total) == ("pending", "MUG-CLASSIC", None)
    assert page.next_cursor is None
    assert one is not None
    assert (one.id, one.status, one.card) == ("o-81d2", "pending", "visa")
    assert not_theirs is None
    write_pact(pact)
