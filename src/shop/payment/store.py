"""Payment's tables and queries. Nothing outside payment touches these tables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, Index, MetaData, Row, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.database import BigInt, UtcDateTime

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False, unique=True),
    Column("customer_id", String(64), nullable=False),
    Column("amount", BigInt, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("card_hint", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(100), nullable=True),
    Column("processor_ref", String(100), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
Index("ix_payments_customer", payments.c.customer_id, payments.c.id)


async def by_order(connection: AsyncConnection, order_id: str) -> Row[Any] | None:
    statement = select(payments).where(payments.c.order_id == order_id)
    return (await connection.execute(statement)).one_or_none()


async def by_id(connection: AsyncConnection, payment_id: str) -> Row[Any] | None:
    statement = select(payments).where(payments.c.id == payment_id)
    return (await connection.execute(statement)).one_or_none()


async def insert(connection: AsyncConnection, values: dict[str, Any]) -> None:
    now = utcnow()
    await connection.execute(payments.insert().values(**values, created_at=now, updated_at=now))


async def transition(
    connection: AsyncConnection, payment_id: str, *, from_: Iterable[str], **values: Any
) -> bool:
    """Change a payment only if still in one of `from_`: where a race with a void is decided."""
    result = await connection.execute(
        update(payments)
        .where(payments.c.id == payment_id, payments.c.status.in_(list(from_)))
        .values(**values, updated_at=utcnow())
    )
    return result.rowcount == 1


async def list_payments(
    connection: AsyncConnection, *, customer_id: str | None, after: str | None, limit: int
) -> list[Row[Any]]:
    statement = select(payments).order_by(payments.c.id).limit(limit)
    if customer_id is not None:
        statement = statement.where(payments.c.customer_id == customer_id)
    if after is not None:
        statement = statement.where(payments.c.id > after)
    return list((await connection.execute(statement)).all())
