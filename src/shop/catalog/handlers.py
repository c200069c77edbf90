"""Catalog use cases, and the local implementation of its port. Handlers never commit: the
routes and `LocalCatalog` open the unit of work (docs/handlers.md)."""

from __future__ import annotations

from typing import Any

from cleave.clock import utcnow
from cleave.errors import Conflict, NotFound
from cleave.service import ServiceContext, UnitOfWork
from shop.catalog import store
from shop.catalog.contract import (
    OrderLine,
    OutOfStock,
    PricedLine,
    StockReleased,
    StockReserved,
    UnknownProducts,
)
from shop.catalog.domain import ProductDraft, adjusted_stock, merge_lines, validate_product


async def create_product(uow: UnitOfWork, draft: ProductDraft) -> None:
    validate_product(draft)
    if await store.get_product(uow.connection, draft.sku) is not None:
        raise Conflict(f"product {draft.sku} exists already", code="product-exists")
    now = utcnow()
    await store.insert_product(
        uow.connection,
        store.ProductRow(
            sku=draft.sku,
            name=draft.name,
            description=draft.description,
            price_amount=draft.price_amount,
            currency=draft.currency,
            stock=draft.stock,
            created_at=now,
            updated_at=now,
        ),
    )


async def update_product(uow: UnitOfWork, sku: str, changes: dict[str, Any]) -> None:
    current = await store.get_product(uow.connection, sku)
    if current is None:
        raise NotFound(f"no product {sku}")
    merged = current._replace(**changes)
    validate_product(
        ProductDraft(
            sku=sku,
            name=merged.name,
            description=merged.description,
            price_amount=merged.price_amount,
            currency=merged.currency,
            stock=merged.stock,
        )
    )
    if changes:
        await store.update_product(uow.connection, sku, changes)


async def adjust_stock(uow: UnitOfWork, sku: str, delta: int) -> None:
    current = await store.get_product(uow.connection, sku)
    if current is None:
        raise NotFound(f"no product {sku}")
    await store.update_product(uow.connection, sku, {"stock": adjusted_stock(current.stock, delta)})


async def price_lines(context: ServiceContext, lines: list[OrderLine]) -> list[PricedLine]:
    """Each line with its product's name and price now: a query, so it reads and changes nothing."""
    async with context.read() as connection:
        known = await store.get_products(connection, [line.sku for line in lines])
    if unknown := sorted({line.sku for line in lines} - set(known)):
        raise UnknownProducts(unknown)
    return [
        PricedLine(
            sku=line.sku,
            name=known[line.sku].name,
            quantity=line.quantity,
            unit_price=known[line.sku].price_amount,
            currency=known[line.sku].currency,
        )
        for line in lines
    ]


async def reserve_stock(uow: UnitOfWork, order_id: str, lines: list[OrderLine]) -> None:
    """Hold every line's stock for the order, or none of it (OutOfStock, UnknownProducts)."""
    wanted = merge_lines([(line.sku, line.quantity) for line in lines])
    if not await store.mark_order(uow.connection, order_id, store.HELD):
        return  # reserved before (a retried or resumed call), or released already
    known = await store.get_products(uow.connection, list(wanted))
    if unknown := sorted(set(wanted) - set(known)):
        raise UnknownProducts(unknown)
    short = [
        sku
        for sku, quantity in sorted(wanted.items())
        if not await store.take_stock(uow.connection, sku, quantity)
    ]
    if short:
        raise OutOfStock(short)  # the unit of work rolls back every line taken
    await store.record_reservation(uow.connection, order_id, wanted)
    uow.publish(StockReserved(order_id=order_id, lines=wanted), subject=order_id)


async def release_stock(uow: UnitOfWork, order_id: str) -> None:
    """Give the order's held stock back (a compensation); nothing if none is held."""
    # First, so that a reserve arriving after this release holds nothing.
    await store.mark_order(uow.connection, order_id, store.RELEASED)
    released = await store.end_reservation(uow.connection, order_id, store.RELEASED)
    if not released:
        return  # never held, or released or committed by an earlier call
    for sku, quantity in sorted(released.items()):
        await store.give_stock(uow.connection, sku, quantity)
    uow.publish(StockReleased(order_id=order_id, lines=released), subject=order_id)


async def commit_stock(uow: UnitOfWork, order_id: str) -> None:
    """The order is confirmed: its held stock is sold."""
    await store.end_reservation(uow.connection, order_id, store.COMMITTED)


# --- entry points ----------------------------------------------------------------------------


class LocalCatalog:
    """The catalog port, served in this process: an entry point to the use cases above, opening
    the unit of work of each. Remote callers reach the same methods over RPC."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context

    async def price_lines(self, lines: list[OrderLine]) -> list[PricedLine]:
        return await price_lines(self.context, lines)

    async def reserve_stock(self, order_id: str, lines: list[OrderLine]) -> None:
        async with self.context.unit_of_work() as uow:
            await reserve_stock(uow, order_id, lines)

    async def release_stock(self, order_id: str) -> None:
        async with self.context.unit_of_work() as uow:
            await release_stock(uow, order_id)

    async def commit_stock(self, order_id: str) -> None:
        async with self.context.unit_of_work() as uow:
            await commit_stock(uow, order_id)
