"""Ordering use cases (docs/handlers.md). `place_order` spans several transactions (reading a
replayed Idempotency-Key, asking customer's port, recording the order), so it takes the context."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from cleave.clock import utcnow
from cleave.errors import Problem, Unprocessable
from cleave.saga import start_saga
from cleave.service import ServiceContext
from shop.customer.contract import CustomerPort
from shop.ordering import saga, store
from shop.ordering.contract import OrderPlaced
from shop.ordering.domain import PENDING, Line, validate_lines
from shop.payment.contract import card_hint


@dataclass(frozen=True)
class PlaceOrder:
    customer_id: str
    lines: list[Line]
    card_token: str
    shipping_address: dict[str, Any]
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Placed:
    order_id: str
    created: bool  # False when an Idempotency-Key replayed an earlier order


def _fingerprint(command: PlaceOrder) -> str:
    body = {
        "lines": sorted((line.sku, line.quantity) for line in command.lines),
        "card": command.card_token,
        "ship": command.shipping_address,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


async def place_order(context: ServiceContext, command: PlaceOrder) -> Placed:
    """Record a pending order and start its saga, in one transaction with its OrderPlaced event."""
    lines = validate_lines(command.lines)
    if command.idempotency_key is not None and not command.idempotency_key.strip():
        raise Problem("an Idempotency-Key cannot be empty", code="invalid-idempotency-key")
    fingerprint = _fingerprint(command)
    if command.idempotency_key is not None and (
        replayed := await _replay(context, command, fingerprint)
    ):
        return replayed
    if await context.port(CustomerPort).get_customer(command.customer_id) is None:
        raise Unprocessable(
            f"customer {command.customer_id} has no profile yet", code="unknown-customer"
        )
    order_id = uuid.uuid4().hex
    try:
        async with context.unit_of_work() as uow:
            now = utcnow()
            order = store.OrderRow(
                id=order_id,
                customer_id=command.customer_id,
                status=PENDING,
                reason=None,
                total_amount=None,  # set once the saga has priced the lines
                currency=None,
                shipping_address=json.dumps(command.shipping_address),
                card_hint=card_hint(command.card_token),
                idempotency_key=command.idempotency_key,
                request_hash=fingerprint if command.idempotency_key else None,
                created_at=now,
                updated_at=now,
            )
            unpriced = [
                store.OrderLineRow(order_id, line.sku, line.quantity, name=None, unit_price=None)
                for line in lines
            ]
            await store.insert_order(uow.connection, order, unpriced)
            wanted = {line.sku: line.quantity for line in lines}
            await start_saga(
                uow,
                saga.NAME,
                order_id,
                {
                    "customer_id": command.customer_id,
                    "lines": wanted,
                    "card_token": command.card_token,
                },
            )
            uow.publish(
                OrderPlaced(order_id=order_id, customer_id=command.customer_id, lines=wanted),
                subject=order_id,
            )
    except IntegrityError:
        # Two requests raced with one Idempotency-Key: the other one won, so answer with its order.
        if command.idempotency_key and (replayed := await _replay(context, command, fingerprint)):
            return replayed
        raise
    return Placed(order_id=order_id, created=True)


async def _replay(context: ServiceContext, command: PlaceOrder, fingerprint: str) -> Placed | None:
    assert command.idempotency_key is not None
    async with context.read() as connection:
        earlier = await store.find_by_idempotency_key(
            connection, command.customer_id, command.idempotency_key
        )
    if earlier is None:
        return None
    if earlier.request_hash != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was used for a different order",
            code="idempotency-key-reused",
        )
    return Placed(order_id=earlier.id, created=False)
