"""Customer over HTTP: profiles, addresses, who may see what, and the order projection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from cleave.messaging.envelope import Envelope
from cleave.money import Money
from cleave.runtime import Unit
from shop.ordering.contract import OrderConfirmed

Headers = Callable[[str], dict[str, str]]


async def test_a_customer_sees_their_profile_and_nobody_elses(
    client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    alice = customer_headers("alice")
    me = await client.get("/api/customer/v1/customers/me", headers=alice)
    assert me.status_code == 200
    assert me.json()["email"] == "alice@example.com"
    assert (await client.get("/api/customer/v1/customers/alice", headers=alice)).status_code == 200
    bobs = await client.get("/api/customer/v1/customers/bob", headers=alice)
    assert bobs.status_code == 404
    assert "bob@example.com" not in bobs.text
    listing = await client.get("/api/customer/v1/customers", headers=alice)
    assert listing.status_code == 403


async def test_admins_create_customers_and_duplicates_conflict(
    client: httpx.AsyncClient, admin_headers: dict[str, str], customer_headers: Headers
) -> None:
    created = await client.post(
        "/api/customer/v1/customers",
        json={"id": "dana", "email": "Dana@Example.com", "name": "Dana"},
        headers=admin_headers,
    )
    assert created.status_code == 201
    assert created.json()["email"] == "dana@example.com"
    same_email = await client.post(
        "/api/customer/v1/customers",
        json={"id": "dana2", "email": "dana@example.com", "name": "D"},
        headers=admin_headers,
    )
    assert (same_email.status_code, same_email.json()["code"]) == (409, "email-taken")
    bad = await client.post(
        "/api/customer/v1/customers",
        json={"email": "not-an-email", "name": "X"},
        headers=admin_headers,
    )
    assert bad.json()["code"] == "invalid-email"
    assert (
        await client.get("/api/customer/v1/customers/me", headers=customer_headers("dana"))
    ).json()["name"] == "Dana"


async def test_customers_keep_their_own_addresses(
    client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    bob = customer_headers("bob")
    address = {
        "label": "work",
        "line1": "9 Dock",
        "city": "Den Haag",
        "postal_code": "2511",
        "country": "NL",
    }
    added = await client.post("/api/customer/v1/customers/me/addresses", json=address, headers=bob)
    assert added.status_code == 201
    mine = (await client.get("/api/customer/v1/customers/me/addresses", headers=bob)).json()
    assert [a["label"] for a in mine] == ["home", "work"]
    carols = (
        await client.get(
            "/api/customer/v1/customers/me/addresses", headers=customer_headers("carol")
        )
    ).json()
    assert all(a["line1"] != "9 Dock" for a in carols)
    bad = await client.post(
        "/api/customer/v1/customers/me/addresses",
        json={**address, "country": "Netherlands"},
        headers=bob,
    )
    assert bad.status_code == 422


async def test_a_confirmed_order_is_counted_once_however_often_it_arrives(
    unit: Unit, client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    event = OrderConfirmed(
        order_id="o-1", customer_id="carol", total=Money(amount=500, currency="EUR")
    )
    envelope = Envelope.of(event, source="/test", trace={})
    consumer = unit.consumers["customer"]
    await asyncio.gather(*(consumer.deliver(envelope) for _ in range(5)))
    await consumer.deliver(envelope)
    profile = (
        await client.get("/api/customer/v1/customers/me", headers=customer_headers("carol"))
    ).json()
    assert profile["confirmed_orders"] == 1
