"""Ordering's public face: the events that tell the rest of the shop how an order ended."""

from __future__ import annotations

from cleave.events import Event
from cleave.money import Money


class OrderPlaced(Event):
    event_type = "shop.ordering.order_placed.v1"

    order_id: str
    customer_id: str
    lines: dict[str, int]


class OrderConfirmed(Event):
    event_type = "shop.ordering.order_confirmed.v1"

    order_id: str
    customer_id: str
    total: Money


class OrderRejected(Event):
    event_type = "shop.ordering.order_rejected.v1"

    order_id: str
    customer_id: str
    reason: str


class OrderCancelled(Event):
    event_type = "shop.ordering.order_cancelled.v1"

    order_id: str
    customer_id: str
    reason: str


__all__ = ["OrderCancelled", "OrderConfirmed", "OrderPlaced", "OrderRejected"]
