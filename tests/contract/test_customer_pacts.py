"""Customer's pacts as a consumer: the events its subscriptions read, written from its real
handlers. Each message of the pact is applied by the customer service's own subscription (the
inbox, the model it parses, the handler) on a database of its own; each field the pact names is
one the customer needs: without it the message is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pact import Pact, match

from cleave.config import SystemConfig
from cleave.contracts.pacts import alone
from cleave.events import Envelope
from cleave.runtime import Unit
from shop.customer import store
from tests.contract.pactfiles import expect_event, write_pact

Check = Callable[[Unit], Awaitable[None]]


async def _apply(config: SystemConfig, folder: Path, body: str, check: Check) -> None:
    """Apply one message through the customer's own subscription, then check what it did."""
    unit = Unit(alone(config, "customer", folder))
    try:
        await unit.migrate()
        await unit.seed()
        envelope = Envelope.from_json(body)
        customer = unit.services[0]
        [subscription] = [s for s in customer.subscriptions if s.event.event_type == envelope.type]
        await unit.consumers["customer"].apply(subscription, envelope)
        await check(unit)
    finally:
        await unit.stop()


def _drive(config: SystemConfig, tmp_path: Path, pact: Pact, check: Check) -> None:
    """Every message of the pact applied, and each without one of its data fields refused."""
    bodies: list[str] = []
    runs = iter(range(10_000))

    def handle(body: str | bytes | None, metadata: dict[str, object]) -> None:
        bodies.append(str(body))
        asyncio.run(_apply(config, tmp_path / f"run-{next(runs)}", str(body), check))

    pact.verify(handle, "Async")
    assert bodies, "the pact has no messages"
    for body in bodies:
        message = Envelope.from_json(body).to_dict()
        for field in message["data"]:
            lacking: dict[str, Any] = {**message, "data": dict(message["data"])}
            del lacking["data"][field]
            without = json.dumps(lacking)
            with pytest.raises(Exception, match=field):
                asyncio.run(_apply(config, tmp_path / f"run-{next(runs)}", without, check))


def test_customer_reads_user_registered_from_identity(
    base_config: SystemConfig, tmp_path: Path
) -> None:
    pact = Pact("customer", "identity")
    expect_event(
        pact,
        "shop.identity.user_registered.v1",
        {
            "user_id": match.str("u-3f1c"),
            "email": match.str("Ann@Example.com"),
            "name": match.str("Ann Example"),
        },
    )

    async def profile_made(unit: Unit) -> None:
        async with unit.contexts["customer"].read() as connection:
            row = await store.get_customer(connection, "u-3f1c")
        assert row is not None
        assert (row.email, row.name) == ("ann@example.com", "Ann Example")

    _drive(base_config, tmp_path, pact, profile_made)
    write_pact(pact)


def test_customer_reads_order_confirmed_from_ordering(
    base_config: SystemConfig, tmp_path: Path
) -> None:
    pact = Pact("customer", "ordering")
    expect_event(
        pact,
        "shop.ordering.order_confirmed.v1",
        {
            "order_id": match.str("o-81d2"),
            "customer_id": match.str("alice"),
            "total": {"amount": match.int(2400), "currency": match.str("EUR")},
        },
    )

    async def order_counted(unit: Unit) -> None:
        async with unit.contexts["customer"].read() as connection:
            row = await store.get_customer(connection, "alice")
        assert row is not None
        assert row.confirmed_orders == 1

    _drive(base_config, tmp_path, pact, order_counted)
    write_pact(pact)
