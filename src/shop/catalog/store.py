"""Catalog's tables, and the queries on them. Nothing outside catalog touches these tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.database import BigInt, UtcDateTime
from cleave.data.statements import Prepared, by_shape

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("price_amount", BigInt, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("stock", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The last word on what reservation's conditional UPDATE already ensures: never below zero.
    CheckConstraint("stock >= 0", name="ck_products_stock_not_negative"),
    CheckConstraint("price_amount >= 0", name="ck_products_price_not_negative"),
)

# One row per order and sku while stock is held; `state` is held, released or committed. Each
# order also has one row of sku ORDER_MARK (quantity 0), written by whichever of reserve and
# release comes first: a reserve arriving after its order's release holds nothing.
reservations = Table(
    "reservations",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
Index("ix_reservations_state", reservations.c.state)

HELD, RELEASED, COMMITTED = "held", "released", "committed"
ORDER_MARK = ""


# A row as the queries return it: its fields are the table's columns in order (a unit test
# holds them equal), so mypy checks every column name the handlers and routes read.
class ProductRow(NamedTuple):
    sku: str
    name: str
    description: str
    price_amount: int
    currency: str
    stock: int
    created_at: datetime
    updated_at: datetime


class ReservationRow(NamedTuple):
    order_id: str
    sku: str
    quantity: int
    state: str
    updated_at: datetime


_GET_PRODUCT = Prepared(select(products).where(products.c.sku == bindparam("sku")), ProductRow)
# Products by a few skus (an order's lines): one statement per count, its binds spelt out.
_GET_PRODUCTS = by_shape(
    lambda count: select(products).where(
        products.c.sku.in_([bindparam(f"sku_{index}") for index in range(count)])
    ),
    ProductRow,
)
_TAKE_STOCK = Prepared(
    update(products)
    .where(products.c.sku == bindparam("of_sku"), products.c.stock >= bindparam("wanted"))
    .values(
        stock=products.c.stock - bindparam("wanted"), updated_at=bindparam("now", type_=UtcDateTime)
    )
)
_GIVE_STOCK = Prepared(
    update(products)
    .where(products.c.sku == bindparam("of_sku"))
    .values(
        stock=products.c.stock + bindparam("given"), updated_at=bindparam("now", type_=UtcDateTime)
    )
)
_RESERVATION = Prepared(
    select(reservations)
    .where(reservations.c.order_id == bindparam("order_id"))
    .order_by(reservations.c.sku),
    ReservationRow,
)
_RECORD_RESERVATION = Prepared(
    reservations.insert().values({c.key: bindparam(c.key, type_=c.type) for c in reservations.c})
)


def _mark_statement(dialect: Any) -> Prepared[Any]:
    values = {
        "order_id": bindparam("of_order"),
        "sku": ORDER_MARK,
        "quantity": 0,
        "state": bindparam("mark_state"),
        "updated_at": bindparam("now", type_=UtcDateTime),
    }
    return Prepared(dialect.insert(reservations).values(values).on_conflict_do_nothing())


_MARK_ORDER = {"postgresql": _mark_statement(postgresql), "sqlite": _mark_statement(sqlite)}
_END_RESERVATION = Prepared(
    update(reservations)
    .where(reservations.c.order_id == bindparam("of_order"), reservations.c.state == HELD)
    .values(state=bindparam("new_state"), updated_at=bindparam("now", type_=UtcDateTime))
    .returning(reservations.c.sku, reservations.c.quantity)
)


async def get_product(connection: AsyncConnection, sku: str) -> ProductRow | None:
    # The hottest read of the shop (every product page): built once, run on the driver.
    return await _GET_PRODUCT.one_or_none(connection, sku=sku)


async def get_products(connection: AsyncConnection, skus: Sequence[str]) -> dict[str, ProductRow]:
    named = {f"sku_{index}": sku for index, sku in enumerate(skus)}
    rows = await _GET_PRODUCTS(len(named)).rows(connection, **named)
    return {row.sku: row for row in rows}


async def list_products(
    connection: AsyncConnection, *, query: str | None, after: str | None, limit: int
) -> list[ProductRow]:
    statement = select(products).order_by(products.c.sku).limit(limit)
    if query:
        # The words are matched as typed: autoescape makes `%` and `_` literal, not wildcards.
        words = query.lower()
        statement = statement.where(
            or_(
                func.lower(products.c.name).contains(words, autoescape=True),
                func.lower(products.c.description).contains(words, autoescape=True),
                func.lower(products.c.sku).contains(words, autoescape=True),
            )
        )
    if after:
        statement = statement.where(products.c.sku > after)
    return [ProductRow(*row) for row in await connection.execute(statement)]


async def insert_product(connection: AsyncConnection, product: ProductRow) -> None:
    await connection.execute(products.insert().values(**product._asdict()))


async def update_product(connection: AsyncConnection, sku: str, values: dict[str, Any]) -> None:
    await connection.execute(
        update(products).where(products.c.sku == sku).values(**values, updated_at=utcnow())
    )


async def take_stock(connection: AsyncConnection, sku: str, quantity: int) -> bool:
    """Decrement stock only if enough is left: one atomic statement, safe under concurrency."""
    taken = await _TAKE_STOCK.rowcount(connection, of_sku=sku, wanted=quantity, now=utcnow())
    return taken == 1


async def give_stock(connection: AsyncConnection, sku: str, quantity: int) -> None:
    await _GIVE_STOCK.rowcount(connection, of_sku=sku, given=quantity, now=utcnow())


async def reservation(connection: AsyncConnection, order_id: str) -> list[ReservationRow]:
    """The order's lines (its mark left out)."""
    rows = await _RESERVATION.rows(connection, order_id=order_id)
    return [row for row in rows if row.sku != ORDER_MARK]


async def mark_order(connection: AsyncConnection, order_id: str, state: str) -> bool:
    """Write the order's mark in `state`: False when a reserve or a release marked it before.
    On PostgreSQL a mark being written by another transaction is waited for, so the answer is
    the committed one: of a reserve and a release at once, exactly one marks the order."""
    statement = _MARK_ORDER[connection.dialect.name]
    return (
        await statement.rowcount(connection, of_order=order_id, mark_state=state, now=utcnow()) == 1
    )


async def record_reservation(
    connection: AsyncConnection, order_id: str, lines: dict[str, int]
) -> None:
    now = utcnow()
    await _RECORD_RESERVATION.many(
        connection,
        [
            {
                "order_id": order_id,
                "sku": sku,
                "quantity": quantity,
                "state": HELD,
                "updated_at": now,
            }
            for sku, quantity in lines.items()
        ],
    )


async def end_reservation(connection: AsyncConnection, order_id: str, state: str) -> dict[str, int]:
    """Move the order's held lines to `state` and return them: none when another call ended the
    reservation first. One statement, so two calls at once (a retried compensation arriving
    beside the first) cannot both find the lines held: the second waits on the rows' lock."""
    rows = await _END_RESERVATION.rows(connection, of_order=order_id, new_state=state, now=utcnow())
    return {row.sku: row.quantity for row in rows if row.sku != ORDER_MARK}
