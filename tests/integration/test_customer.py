"""The customer service on a real database, in the monolith and in the split: who may see which
profile, addresses, the order projection and the port other services call (over gRPC in the
split)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cleave.auth.tokens import DevIssuer
from cleave.data.tables import outbox
from cleave.events import Envelope
from cleave.messaging.consumer import list_dead_letters
from cleave.money import Money
from shop.customer.contract import CustomerCreated, CustomerInfo, CustomerPort
from shop.customer.seed import seed
from shop.ordering.contract import OrderConfirmed
from tests.conftest import WiredShop

Headers = Callable[[str], dict[str, str]]
CUSTOMERS = "/api/customer/v1/customers"
PROBLEM = "application/problem+json"
ADDRESS = {
    "label": "work",
    "line1": "9 Dock",
    "line2": "Floor 3",
    "city": "Den Haag",
    "postal_code": "2511",
    "country": "NL",
}


async def create(client: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post(CUSTOMERS, json=body, headers=admin)


async def published(wired: WiredShop, event_type: str) -> list[str]:
    async with wired.unit_of("customer").context("customer").read() as connection:
        rows = await connection.execute(
            select(outbox.c.envelope).where(outbox.c.type == event_type)
        )
        return [row.envelope for row in rows]


async def test_an_admin_creates_a_customer_who_then_sees_their_profile(
    wired: WiredShop,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    customer_headers: Headers,
) -> None:
    created = await create(client, admin_headers, id="dana", email="Dana@Example.com", name="Dana")
    assert created.status_code == 201
    assert created.json() == {
        "id": "dana",
        "email": "dana@example.com",
        "name": "Dana",
        "confirmed_orders": 0,
        "created_at": created.json()["created_at"],
    }
    me = await client.get(f"{CUSTOMERS}/me", headers=customer_headers("dana"))
    assert me.json() == created.json()
    [envelope] = [e for e in await published(wired, CustomerCreated.event_type) if "dana" in e]
    assert '"email":"dana@example.com"' in envelope


async def test_without_an_id_the_customer_gets_a_new_one(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    first = await create(client, admin_headers, email="e1@example.com", name="Eve")
    second = await create(client, admin_headers, email="e2@example.com", name="Eve")
    assert first.status_code == second.status_code == 201
    assert len(first.json()["id"]) == 32
    assert first.json()["id"] != second.json()["id"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"id": "alice", "email": "new@example.com", "name": "Another Alice"}, "customer-exists"),
        ({"id": "alice2", "email": "ALICE@example.com", "name": "Alice Two"}, "email-taken"),
    ],
)
async def test_a_duplicate_id_or_email_is_a_conflict(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, str], code: str
) -> None:
    response = await create(client, admin_headers, **body)
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert (response.json()["status"], response.json()["code"]) == (409, code)
    assert (await client.get(f"{CUSTOMERS}/alice", headers=admin_headers)).json()["name"] == (
        "Alice Example"
    )


async def test_concurrent_creates_of_one_customer_make_one_and_a_conflict(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    responses = await asyncio.gather(
        *(
            create(client, admin_headers, id="twin", email="twin@example.com", name="T")
            for _ in "ab"
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"id": "has space", "email": "x@example.com", "name": "X"}, "invalid-id"),
        ({"id": "me", "email": "x@example.com", "name": "X"}, "invalid-id"),
        ({"email": "not-an-email", "name": "X"}, "invalid-email"),
        ({"email": "x@example.com", "name": "   "}, "invalid-name"),
    ],
)
async def test_an_invalid_customer_is_refused_with_a_reason(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, str], code: str
) -> None:
    response = await create(client, admin_headers, **body)
    assert (response.status_code, response.json()["code"]) == (422, code)
    assert response.headers["content-type"] == PROBLEM


async def test_admin_routes_refuse_a_customer_token(
    client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    alice = customer_headers("alice")
    listing = await client.get(CUSTOMERS, headers=alice)
    creating = await create(client, alice, id="mallory", email="m@example.com", name="M")
    for response in (listing, creating):
        assert response.status_code == 403
        assert response.headers["content-type"] == PROBLEM
    assert (await client.get(CUSTOMERS)).status_code == 401


async def test_admins_page_through_every_customer(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for number in range(4):
        await create(client, admin_headers, id=f"page{number}", email=f"p{number}@x.io", name="P")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(CUSTOMERS, params=params, headers=admin_headers)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == sorted(seen)
    assert set(seen) == {"alice", "bob", "carol", "page0", "page1", "page2", "page3"}
    bad = await client.get(CUSTOMERS, params={"cursor": "not-a-cursor"}, headers=admin_headers)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid-cursor")


async def test_a_customer_sees_only_themself(
    client: httpx.AsyncClient, admin_headers: dict[str, str], customer_headers: Headers
) -> None:
    alice = customer_headers("alice")
    own = await client.get(f"{CUSTOMERS}/alice", headers=alice)
    assert (own.status_code, own.json()["email"]) == (200, "alice@example.com")
    for other in ("bob", "no-such-customer"):
        hidden = await client.get(f"{CUSTOMERS}/{other}", headers=alice)
        assert hidden.status_code == 404
        assert hidden.headers["content-type"] == PROBLEM
    assert "bob@example.com" not in (await client.get(f"{CUSTOMERS}/bob", headers=alice)).text
    bob = await client.get(f"{CUSTOMERS}/bob", headers=admin_headers)
    assert bob.json()["email"] == "bob@example.com"


async def test_the_own_profile_needs_a_profile_and_the_profile_scope(
    client: httpx.AsyncClient, customer_headers: Headers, issuer: DevIssuer
) -> None:
    stranger = await client.get(f"{CUSTOMERS}/me", headers=customer_headers("stranger"))
    assert stranger.status_code == 404
    assert stranger.headers["content-type"] == PROBLEM
    for scopes in (["orders:read"], ["openid"]):
        narrow = {"Authorization": f"Bearer {issuer.issue('alice', scopes)}"}
        # By id too: the same profile under another path needs the same scope.
        for path in ("me", "me/addresses", "alice"):
            refused = await client.get(f"{CUSTOMERS}/{path}", headers=narrow)
            assert (refused.status_code, refused.json()["code"]) == (403, "insufficient-scope")


async def test_a_customer_adds_and_lists_their_own_addresses(
    client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    bob = customer_headers("bob")
    added = await client.post(f"{CUSTOMERS}/me/addresses", json=ADDRESS, headers=bob)
    assert added.status_code == 201
    assert added.json() == {**ADDRESS, "id": added.json()["id"]}
    mine = (await client.get(f"{CUSTOMERS}/me/addresses", headers=bob)).json()
    assert [(a["label"], a["line1"]) for a in mine] == [("home", "2 Canal Rd"), ("work", "9 Dock")]
    carols = (
        await client.get(f"{CUSTOMERS}/me/addresses", headers=customer_headers("carol"))
    ).json()
    assert [a["line1"] for a in carols] == ["3 Quay"]


@pytest.mark.parametrize(
    ("change", "status"),
    [({"country": "Netherlands"}, 422), ({"country": "nl"}, 422), ({"line1": ""}, 422)],
)
async def test_an_invalid_address_is_refused(
    client: httpx.AsyncClient, customer_headers: Headers, change: dict[str, str], status: int
) -> None:
    carol = customer_headers("carol")
    response = await client.post(
        f"{CUSTOMERS}/me/addresses", json={**ADDRESS, **change}, headers=carol
    )
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert len((await client.get(f"{CUSTOMERS}/me/addresses", headers=carol)).json()) == 1


async def test_a_caller_without_a_profile_cannot_add_an_address(
    client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    response = await client.post(
        f"{CUSTOMERS}/me/addresses", json=ADDRESS, headers=customer_headers("stranger")
    )
    assert response.status_code == 404


def order_confirmed(order_id: str, customer_id: str) -> Envelope:
    event = OrderConfirmed(
        order_id=order_id, customer_id=customer_id, total=Money(amount=1200, currency="EUR")
    )
    return Envelope.of(event, source="/test", trace={})


async def confirmed_orders(client: httpx.AsyncClient, admin: dict[str, str], who: str) -> int:
    count: int = (await client.get(f"{CUSTOMERS}/{who}", headers=admin)).json()["confirmed_orders"]
    return count


async def test_each_confirmed_order_counts_once_however_often_it_is_delivered(
    wired: WiredShop, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    consumer = wired.unit_of("customer").consumers["customer"]
    first, second = order_confirmed("o-1", "carol"), order_confirmed("o-2", "carol")
    await consumer.deliver(first)
    await consumer.deliver(first)  # the broker delivers at least once: here, twice
    await asyncio.gather(consumer.deliver(second), consumer.deliver(second))
    assert await confirmed_orders(client, admin_headers, "carol") == 2
    assert await confirmed_orders(client, admin_headers, "bob") == 0


async def test_an_order_for_an_unknown_customer_changes_nobody(
    wired: WiredShop, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await wired.unit_of("customer").consumers["customer"].deliver(order_confirmed("o-9", "ghost"))
    listing = (await client.get(CUSTOMERS, headers=admin_headers)).json()["items"]
    assert all(customer["confirmed_orders"] == 0 for customer in listing)
    # Nothing to retry: the event is applied (as a no-op), not parked as a dead letter.
    assert await list_dead_letters(wired.unit_of("customer").context("customer")) == []


async def test_other_services_read_a_customer_through_the_port(wired: WiredShop) -> None:
    customers = wired.unit_of("ordering").ports.get(CustomerPort)  # as the saga calls it
    assert await customers.get_customer("alice") == CustomerInfo(
        id="alice", email="alice@example.com", name="Alice Example"
    )
    assert await customers.get_customer("ghost") is None


async def test_the_demo_customers_are_seeded_once(
    wired: WiredShop, client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    assert (
        await seed(wired.unit_of("customer").context("customer")) == 0
    )  # the fixture seeded them already
    for who, name in (("alice", "Alice Example"), ("bob", "Bob Example"), ("carol", None)):
        profile = (await client.get(f"{CUSTOMERS}/me", headers=customer_headers(who))).json()
        assert profile["email"] == f"{who}@example.com"
        assert name is None or profile["name"] == name
        addresses = await client.get(f"{CUSTOMERS}/me/addresses", headers=customer_headers(who))
        assert len(addresses.json()) == 1
