"""Catalog over HTTP: browsing, search, pagination, and admin changes that keep stock sane."""

from __future__ import annotations

from collections.abc import Callable

import httpx

Headers = Callable[[str], dict[str, str]]


async def test_products_are_paged_by_cursor_without_gaps_or_repeats(
    client: httpx.AsyncClient,
) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/catalog/v1/products", params=params)).json()
        assert len(page["items"]) <= 7
        seen.extend(item["sku"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 24
    assert seen == sorted(set(seen))


async def test_search_finds_words_in_names_and_descriptions(client: httpx.AsyncClient) -> None:
    mugs = (await client.get("/api/catalog/v1/products", params={"q": "MUG"})).json()["items"]
    assert {item["sku"] for item in mugs} == {"MUG-CLASSIC", "MUG-ENAMEL"}
    wool = (await client.get("/api/catalog/v1/products", params={"q": "wool"})).json()["items"]
    assert {item["sku"] for item in wool} == {"DESK-MAT", "BEANIE-NAVY"}


async def test_a_forged_cursor_is_a_clear_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/catalog/v1/products", params={"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid-cursor"


async def test_admins_add_products_and_adjust_stock_never_below_zero(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    price = {"amount": 4500, "currency": "EUR"}
    body = {"sku": "KITE-RED", "name": "Red kite", "price": price, "stock": 3}
    created = await client.post("/api/catalog/v1/products", json=body, headers=admin_headers)
    assert created.status_code == 201
    assert created.json()["stock"] == 3
    again = await client.post("/api/catalog/v1/products", json=body, headers=admin_headers)
    assert again.status_code == 409
    assert again.json()["code"] == "product-exists"

    adjust = "/api/catalog/v1/products/KITE-RED/stock-adjustments"
    added = await client.post(
        adjust, json={"delta": 2, "reason": "delivery"}, headers=admin_headers
    )
    assert added.json()["stock"] == 5
    too_many = await client.post(adjust, json={"delta": -6, "reason": "x"}, headers=admin_headers)
    assert too_many.status_code == 409
    assert (await client.get("/api/catalog/v1/products/KITE-RED")).json()["stock"] == 5

    renamed = await client.patch(
        "/api/catalog/v1/products/KITE-RED",
        json={"name": "Crimson kite", "price": {"amount": 4000, "currency": "EUR"}},
        headers=admin_headers,
    )
    assert renamed.json()["name"] == "Crimson kite"
    assert renamed.json()["price"] == {"amount": 4000, "currency": "EUR"}


async def test_bad_products_are_refused_with_the_reason(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    base = {"name": "Thing", "price": {"amount": 100, "currency": "EUR"}}
    bad_sku = await client.post(
        "/api/catalog/v1/products", json={**base, "sku": "lower case"}, headers=admin_headers
    )
    assert bad_sku.json()["code"] == "invalid-sku"
    bad_currency = await client.post(
        "/api/catalog/v1/products",
        json={**base, "sku": "THING-1", "price": {"amount": 100, "currency": "XYZ"}},
        headers=admin_headers,
    )
    assert bad_currency.json()["code"] == "invalid-currency"
    negative = await client.post(
        "/api/catalog/v1/products",
        json={**base, "sku": "THING-2", "price": {"amount": -1, "currency": "EUR"}},
        headers=admin_headers,
    )
    assert negative.status_code == 422
    assert negative.headers["content-type"] == "application/problem+json"


async def test_customers_cannot_change_the_catalog(
    client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    body = {"sku": "KITE-BLUE", "name": "Blue kite", "price": {"amount": 4500, "currency": "EUR"}}
    response = await client.post(
        "/api/catalog/v1/products", json=body, headers=customer_headers("alice")
    )
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient-scope"
    unauthenticated = await client.post("/api/catalog/v1/products", json=body)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"].startswith("Bearer")
