"""Customer's tables and queries. Nothing outside customer touches these tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.database import UtcDateTime

metadata = MetaData()

customers = Table(
    "customers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("confirmed_orders", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

addresses = Table(
    "addresses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("customer_id", String(64), ForeignKey("customers.id"), nullable=False),
    Column("label", String(50), nullable=False),
    Column("line1", String(200), nullable=False),
    Column("line2", String(200), nullable=True),
    Column("city", String(100), nullable=False),
    Column("postal_code", String(20), nullable=False),
    Column("country", String(2), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
Index("ix_addresses_customer", addresses.c.customer_id)


async def get_customer(connection: AsyncConnection, customer_id: str) -> Row[Any] | None:
    statement = select(customers).where(customers.c.id == customer_id)
    return (await connection.execute(statement)).one_or_none()


async def find_by_email(connection: AsyncConnection, email: str) -> Row[Any] | None:
    statement = select(customers).where(customers.c.email == email)
    return (await connection.execute(statement)).one_or_none()


async def insert_customer(
    connection: AsyncConnection, customer_id: str, email: str, name: str
) -> None:
    now = utcnow()
    await connection.execute(
        customers.insert().values(
            id=customer_id,
            email=email,
            name=name,
            confirmed_orders=0,
            created_at=now,
            updated_at=now,
        )
    )


async def list_customers(
    connection: AsyncConnection, *, after: str | None, limit: int
) -> list[Row[Any]]:
    statement = select(customers).order_by(customers.c.id).limit(limit)
    if after is not None:
        statement = statement.where(customers.c.id > after)
    return list((await connection.execute(statement)).all())


async def count_confirmed_order(connection: AsyncConnection, customer_id: str) -> bool:
    result = await connection.execute(
        update(customers)
        .where(customers.c.id == customer_id)
        .values(confirmed_orders=customers.c.confirmed_orders + 1, updated_at=utcnow())
    )
    return result.rowcount == 1


async def insert_address(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(addresses.insert().values(**values, created_at=utcnow()))


async def list_addresses(connection: AsyncConnection, customer_id: str) -> list[Row[Any]]:
    statement = (
        select(addresses)
        .where(addresses.c.customer_id == customer_id)
        .order_by(addresses.c.created_at, addresses.c.id)
    )
    return list((await connection.execute(statement)).all())
