"""Events the catalog publishes. The wire name is the `event_type`, versioned; never the class."""

from __future__ import annotations

from cleave.events import Event


class StockReserved(Event):
    event_type = "shop.catalog.stock_reserved.v1"

    order_id: str
    lines: dict[str, int]


class StockReleased(Event):
    event_type = "shop.catalog.stock_released.v1"

    order_id: str
    lines: dict[str, int]
