"""Every input bound answers with a 4xx problem, never a 500 or a wrong answer, on SQLite and
PostgreSQL: SKUs matched whole, search words taken literally, prices, stock, stock changes and
quantities within bounds that fit the database's integers, and an empty Idempotency-Key refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text

from shop.catalog.domain import MAX_PRICE, MAX_STOCK
from tests.conftest import WiredShop
from tests.integration.test_order_saga import order, place, settled

Headers = Callable[[str], dict[str, str]]
PRODUCTS = "/api/catalog/v1/products"
ORDERS = "/api/ordering/v1/orders"
HUGE = 10**30


def product(sku: str, amount: int = 100, stock: int = 1) -> dict[str, Any]:
    return {
        "sku": sku,
        "name": "Thing",
        "price": {"amount": amount, "currency": "EUR"},
        "stock": stock,
    }


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


async def test_a_sku_with_a_trailing_newline_is_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(PRODUCTS, json=product("KITE-RED\n"), headers=admin_headers)
    assert assert_problem(response, 422)["code"] == "invalid-sku"
    assert (await client.get(f"{PRODUCTS}/KITE-RED")).status_code == 404


async def test_search_wildcards_match_only_themselves(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for q in ("%", "_", "\\", "/"):
        found = (await client.get(PRODUCTS, params={"q": q})).json()["items"]
        assert found == [], f"q={q!r} matched {[item['sku'] for item in found]}"
    body = {**product("CAP-WOOL"), "name": "Cap, 100% wool_blend"}
    assert (await client.post(PRODUCTS, json=body, headers=admin_headers)).status_code == 201
    for q in ("%", "_", "100% w", "wool_b"):
        found = (await client.get(PRODUCTS, params={"q": q})).json()["items"]
        assert [item["sku"] for item in found] == ["CAP-WOOL"]
    assert (await client.get(PRODUCTS, params={"q": "100%_w"})).json()["items"] == []


async def test_prices_and_stock_beyond_their_bounds_are_a_422_with_the_bound(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for body in (product("BIG-1", amount=HUGE), product("BIG-2", stock=HUGE)):
        assert_problem(await client.post(PRODUCTS, json=body, headers=admin_headers), 422)
    # A price whose order of two would overflow 64 bits: refused before any order can use it.
    over = await client.post(PRODUCTS, json=product("BIG-3", amount=2**62), headers=admin_headers)
    assert_problem(over, 422)
    above = await client.post(
        PRODUCTS, json=product("BIG-3", amount=MAX_PRICE + 1), headers=admin_headers
    )
    assert str(MAX_PRICE) in assert_problem(above, 422)["detail"]
    too_much = await client.post(
        PRODUCTS, json=product("BIG-4", stock=MAX_STOCK + 1), headers=admin_headers
    )
    assert_problem(too_much, 422)
    patched = await client.patch(
        f"{PRODUCTS}/MUG-CLASSIC",
        json={"price": {"amount": HUGE, "currency": "EUR"}},
        headers=admin_headers,
    )
    assert_problem(patched, 422)

    adjust = f"{PRODUCTS}/MUG-CLASSIC/stock-adjustments"
    for delta in (HUGE, -HUGE, MAX_STOCK):  # the last one would take stock above its bound
        response = await client.post(
            adjust, json={"delta": delta, "reason": "x"}, headers=admin_headers
        )
        assert_problem(response, 422)
    assert (await client.get(f"{PRODUCTS}/MUG-CLASSIC")).json()["price"]["amount"] < MAX_PRICE


async def test_the_largest_order_totals_exactly(
    client: httpx.AsyncClient, admin_headers: dict[str, str], customer_headers: Headers
) -> None:
    body = product("GOLD-BAR", amount=MAX_PRICE, stock=1000)
    assert (await client.post(PRODUCTS, json=body, headers=admin_headers)).status_code == 201
    alice = customer_headers("alice")
    done = await settled(client, alice, await place(client, alice, order(("GOLD-BAR", 1000))))
    assert done["status"] == "confirmed", done
    assert done["total"] == {"amount": MAX_PRICE * 1000, "currency": "EUR"}


async def test_quantities_beyond_their_bound_are_a_422(
    client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    alice = customer_headers("alice")
    for quantity in (HUGE, 1001, 0, -1):
        response = await client.post(ORDERS, json=order(("MUG-CLASSIC", quantity)), headers=alice)
        assert_problem(response, 422)


async def test_an_empty_idempotency_key_is_a_400_every_time(
    client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    alice = customer_headers("alice")
    for key in ("", "", "   "):
        response = await client.post(
            ORDERS, json=order(("MUG-CLASSIC", 1)), headers={**alice, "Idempotency-Key": key}
        )
        assert assert_problem(response, 400)["code"] == "invalid-idempotency-key"
    listed = await client.get(ORDERS, headers=alice)
    assert listed.json()["items"] == []


async def test_an_order_whose_total_would_overflow_is_rejected_saying_so(
    client: httpx.AsyncClient, wired: WiredShop, customer_headers: Headers
) -> None:
    # A price from before the bound (written straight into catalog's table): the saga refuses
    # the total it would make, at once and by name, and keeps nothing of it.
    catalog = wired.unit_of("catalog").context("catalog")
    async with catalog.database.transaction() as connection:
        await connection.execute(
            text("UPDATE products SET price_amount = :price WHERE sku = 'MUG-CLASSIC'"),
            {"price": 2**62},
        )
    alice = customer_headers("alice")
    done = await settled(client, alice, await place(client, alice, order(("MUG-CLASSIC", 2))))
    assert (done["status"], done["reason"], done["total"]) == ("rejected", "total_too_large", None)
