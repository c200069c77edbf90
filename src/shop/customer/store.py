"""Customer's tables and queries. Nothing outside customer touches these tables."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.database import UtcDateTime
from cleave.data.statements import Prepared

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


# A row as the queries return it: its fields are the table's columns in order (a unit test
# holds them equal), so mypy checks every column name the handlers and routes read.
class CustomerRow(NamedTuple):
    id: str
    email: str
    name: str
    confirmed_orders: int
    created_at: datetime
    updated_at: datetime


class AddressRow(NamedTuple):
    id: str
    customer_id: str
    label: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str
    created_at: datetime


_GET_CUSTOMER = Prepared(
    select(customers).where(customers.c.id == bindparam("customer_id")), CustomerRow
)
# Counted on every confirmed order (and read on every order placed, above): built once.
_COUNT_CONFIRMED_ORDER = Prepared(
    update(customers)
    .where(customers.c.id == bindparam("customer_id"))
    .values(
        confirmed_orders=customers.c.confirmed_orders + 1,
        updated_at=bindparam("now", type_=UtcDateTime),
    )
)


async def get_customer(connection: AsyncConnection, customer_id: str) -> CustomerRow | None:
    return await _GET_CUSTOMER.one_or_none(connection, customer_id=customer_id)


async def find_by_email(connection: AsyncConnection, email: str) -> CustomerRow | None:
    statement = select(customers).where(customers.c.email == email)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else CustomerRow(*row)


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
) -> list[CustomerRow]:
    statement = select(customers).order_by(customers.c.id).limit(limit)
    if after is not None:
        statement = statement.where(customers.c.id > after)
    return [CustomerRow(*row) for row in await connection.execute(statement)]


async def count_confirmed_order(connection: AsyncConnection, customer_id: str) -> bool:
    counted = await _COUNT_CONFIRMED_ORDER.rowcount(
        connection, customer_id=customer_id, now=utcnow()
    )
    return counted == 1


async def insert_address(connection: AsyncConnection, address: AddressRow) -> None:
    await connection.execute(addresses.insert().values(**address._asdict()))


async def list_addresses(connection: AsyncConnection, customer_id: str) -> list[AddressRow]:
    statement = (
        select(addresses)
        .where(addresses.c.customer_id == customer_id)
        .order_by(addresses.c.created_at, addresses.c.id)
    )
    return [AddressRow(*row) for row in await connection.execute(statement)]
