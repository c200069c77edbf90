"""Ordering's tables and queries. Nothing outside ordering touches these tables."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.database import BigInt, UtcDateTime

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


async def insert_order(
    connection: AsyncConnection, order: dict[str, Any], lines: list[dict[str, Any]]
) -> None:
    now = utcnow()
    await connection.execute(
        orders.insert().values(
            **{**order, "shipping_address": json.dumps(order["shipping_address"])},
            created_at=now,
            updated_at=now,
        )
    )
    await connection.execute(
        order_lines.insert(), [{"order_id": order["id"], **line} for line in lines]
    )


async def get_order(connection: AsyncConnection, order_id: str) -> Row[Any] | None:
    return (await connection.execute(select(orders).where(orders.c.id == order_id))).one_or_none()


async def find_by_idempotency_key(
    connection: AsyncConnection, customer_id: str, key: str
) -> Row[Any] | None:
    statement = select(orders).where(
        orders.c.customer_id == customer_id, orders.c.idempotency_key == key
    )
    return (await connection.execute(statement)).one_or_none()


async def get_lines(connection: AsyncConnection, order_ids: list[str]) -> dict[str, list[Row[Any]]]:
    rows = await connection.execute(
        select(order_lines).where(order_lines.c.order_id.in_(order_ids)).order_by(order_lines.c.sku)
    )
    lines: dict[str, list[Row[Any]]] = {order_id: [] for order_id in order_ids}
    for row in rows:
        lines[row.order_id].append(row)
    return lines


async def list_orders(
    connection: AsyncConnection,
    *,
    customer_id: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Row[Any]]:
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
    return list((await connection.execute(statement)).all())


async def set_priced(
    connection: AsyncConnection,
    order_id: str,
    priced: list[dict[str, Any]],
    total: int,
    currency: str,
) -> None:
    await connection.execute(
        update(orders)
        .where(orders.c.id == order_id)
        .values(total_amount=total, currency=currency, updated_at=utcnow())
    )
    for line in priced:
        await connection.execute(
            update(order_lines)
            .where(order_lines.c.order_id == order_id, order_lines.c.sku == line["sku"])
            .values(name=line["name"], unit_price=line["unit_price"])
        )


async def finish(
    connection: AsyncConnection, order_id: str, status: str, reason: str | None
) -> bool:
    """Move a pending order to its terminal state; False if it was final already."""
    result = await connection.execute(
        update(orders)
        .where(orders.c.id == order_id, orders.c.status == "pending")
        .values(status=status, reason=reason, updated_at=utcnow())
    )
    return result.rowcount == 1
