"""Ordering's tables and queries. Nothing outside ordering touches these tables."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.database import BigInt, UtcDateTime
from cleave.data.statements import Prepared

metadata = MetaData()

orders = Table(
    "orders",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(100), nullable=True),
    Column("total_amount", BigInt, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("shipping_address", Text, nullable=False),
    Column("card_hint", String(8), nullable=False),
    Column("idempotency_key", String(200), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("customer_id", "idempotency_key", name="uq_orders_idempotency"),
)
Index("ix_orders_customer_created", orders.c.customer_id, orders.c.created_at)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("name", String(200), nullable=True),
    Column("unit_price", BigInt, nullable=True),
)


# A row as the queries return it: its fields are the table's columns in order (a unit test
# holds them equal), so mypy checks every column name the routes read.
class OrderRow(NamedTuple):
    id: str
    customer_id: str
    status: str
    reason: str | None
    total_amount: int | None
    currency: str | None
    shipping_address: str  # JSON
    card_hint: str
    idempotency_key: str | None
    request_hash: str | None
    created_at: datetime
    updated_at: datetime


class OrderLineRow(NamedTuple):
    order_id: str
    sku: str
    quantity: int
    name: str | None
    unit_price: int | None


class LinePrice(NamedTuple):
    """What pricing sets on an order's line (catalog's name and price of its sku)."""

    sku: str
    name: str
    unit_price: int


def _binds(table: Table, columns: Iterable[str], prefix: str = "") -> dict[str, Any]:
    return {c: bindparam(f"{prefix}{c}", type_=table.c[c].type) for c in columns}


_INSERT_ORDER = Prepared(orders.insert().values(_binds(orders, orders.c.keys())))
_INSERT_LINE = Prepared(order_lines.insert().values(_binds(order_lines, order_lines.c.keys())))
_SET_TOTAL = Prepared(
    update(orders)
    .where(orders.c.id == bindparam("order_id"))
    .values(_binds(orders, ("total_amount", "currency", "updated_at"), "new_"))
)
_SET_LINE_PRICE = Prepared(
    update(order_lines)
    .where(order_lines.c.order_id == bindparam("of_order"), order_lines.c.sku == bindparam("line"))
    .values(_binds(order_lines, ("name", "unit_price"), "new_"))
)
_FINISH = Prepared(
    update(orders)
    .where(orders.c.id == bindparam("order_id"), orders.c.status == "pending")
    .values(_binds(orders, ("status", "reason", "updated_at"), "new_"))
)


async def insert_order(
    connection: AsyncConnection, order: OrderRow, lines: Iterable[OrderLineRow]
) -> None:
    await _INSERT_ORDER.rowcount(connection, **order._asdict())
    await _INSERT_LINE.many(connection, [line._asdict() for line in lines])


async def get_order(connection: AsyncConnection, order_id: str) -> OrderRow | None:
    row = (await connection.execute(select(orders).where(orders.c.id == order_id))).one_or_none()
    return None if row is None else OrderRow._make(row)


async def find_by_idempotency_key(
    connection: AsyncConnection, customer_id: str, key: str
) -> OrderRow | None:
    statement = select(orders).where(
        orders.c.customer_id == customer_id, orders.c.idempotency_key == key
    )
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else OrderRow._make(row)


async def get_lines(
    connection: AsyncConnection, order_ids: list[str]
) -> dict[str, list[OrderLineRow]]:
    rows = await connection.execute(
        select(order_lines).where(order_lines.c.order_id.in_(order_ids)).order_by(order_lines.c.sku)
    )
    lines: dict[str, list[OrderLineRow]] = {order_id: [] for order_id in order_ids}
    for row in rows:
        lines[row.order_id].append(OrderLineRow._make(row))
    return lines


async def list_orders(
    connection: AsyncConnection,
    *,
    customer_id: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[OrderRow]:
    """Newest first, keyset-paginated on (created_at, id) so pages never skip or repeat."""
    statement = select(orders).order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
    if customer_id is not None:
        statement = statement.where(orders.c.customer_id == customer_id)
    if before is not None:
        created_at, order_id = before
        statement = statement.where(
            or_(
                orders.c.created_at < created_at,
                and_(orders.c.created_at == created_at, orders.c.id < order_id),
            )
        )
    return [OrderRow._make(row) for row in await connection.execute(statement)]


async def set_priced(
    connection: AsyncConnection,
    order_id: str,
    priced: Iterable[LinePrice],
    total: int,
    currency: str,
) -> None:
    await _SET_TOTAL.rowcount(
        connection,
        order_id=order_id,
        new_total_amount=total,
        new_currency=currency,
        new_updated_at=utcnow(),
    )
    await _SET_LINE_PRICE.many(
        connection,
        [
            {
                "of_order": order_id,
                "line": line.sku,
                "new_name": line.name,
                "new_unit_price": line.unit_price,
            }
            for line in priced
        ],
    )


async def finish(
    connection: AsyncConnection, order_id: str, status: str, reason: str | None
) -> bool:
    """Move a pending order to its terminal state; False if it was final already."""
    finished = await _FINISH.rowcount(
        connection, order_id=order_id, new_status=status, new_reason=reason, new_updated_at=utcnow()
    )
    return finished == 1
