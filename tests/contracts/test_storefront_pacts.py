"""The storefront's HTTP pact with the catalog: the public calls its pages make (a page of
products, one product, a product that does not exist), made by the storefront's own API client
against Pact's mock server, so the pact holds exactly what that client sends and reads. The
catalog verifies it by replaying each request against its real app (tests/contracts/
test_providers.py)."""

from __future__ import annotations

from pact import Pact, match

from cleave.web.clients import cookieless_client
from shop.storefront.upstream import Product, ShopApi
from tests.contracts.pactfiles import write_pact

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
