"""Payment's tables and queries. Nothing outside payment touches these tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    Index,
    MetaData,
    String,
    Table,
    Update,
    bindparam,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.database import BigInt, UtcDateTime
from cleave.data.statements import Prepared, by_shape
from shop.payment import domain
from shop.payment.contract import PaymentStatus

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


class Payment(NamedTuple):
    """A row of `payments`, its fields the table's columns in order."""

    id: str
    order_id: str
    customer_id: str
    amount: int
    currency: str
    card_hint: str
    status: PaymentStatus
    reason: str | None
    processor_ref: str | None
    created_at: datetime
    updated_at: datetime


_BY_ORDER = Prepared(select(payments).where(payments.c.order_id == bindparam("order_id")), Payment)
_BY_ID = Prepared(select(payments).where(payments.c.id == bindparam("payment_id")), Payment)
_INSERT = Prepared(
    payments.insert()
    .values({column.key: bindparam(column.key, type_=column.type) for column in payments.c})
    .returning(*payments.c),
    Payment,
)


def _transition(from_count: int, columns: tuple[str, ...]) -> Update:
    leaving = (payments.c.status == bindparam(f"from_{i}") for i in range(from_count))
    return (
        update(payments)
        .where(payments.c.id == bindparam("payment_id"), or_(*leaving))
        .values(
            {
                **{c: bindparam(f"new_{c}", type_=payments.c[c].type) for c in columns},
                "updated_at": bindparam("now", type_=UtcDateTime),
            }
        )
        .returning(*payments.c)
    )


_TRANSITION = by_shape(_transition, Payment)


async def by_order(connection: AsyncConnection, order_id: str) -> Payment | None:
    """The order's payment row, or None."""
    return await _BY_ORDER.one_or_none(connection, order_id=order_id)


async def by_id(connection: AsyncConnection, payment_id: str) -> Payment | None:
    return await _BY_ID.one_or_none(connection, payment_id=payment_id)


async def insert(connection: AsyncConnection, payment: Payment) -> Payment:
    """Record a payment; the row as stored."""
    stored = await _INSERT.one_or_none(connection, **payment._asdict())
    assert stored is not None  # an INSERT … RETURNING returns the row it inserted
    return stored


async def transition(
    connection: AsyncConnection, payment_id: str, *, from_: Sequence[str], **values: Any
) -> tuple[bool, Payment]:
    """Change a payment only if still in one of `from_`: where a race with a void is decided.
    Whether this call changed it, and the payment as it now stands (one statement if it did)."""
    changed = await _TRANSITION(len(from_), tuple(sorted(values))).one_or_none(
        connection,
        payment_id=payment_id,
        now=utcnow(),
        **{f"from_{index}": status for index, status in enumerate(from_)},
        **{f"new_{column}": value for column, value in values.items()},
    )
    if changed is not None:
        return True, changed
    current = await by_id(connection, payment_id)
    assert current is not None  # payments are never deleted
    return False, current


async def list_payments(
    connection: AsyncConnection, *, customer_id: str | None, after: str | None, limit: int
) -> list[Payment]:
    statement = select(payments).order_by(payments.c.id).limit(limit)
    if customer_id is not None:
        statement = statement.where(payments.c.customer_id == customer_id)
    if after is not None:
        statement = statement.where(payments.c.id > after)
    return [Payment._make(row) for row in await connection.execute(statement)]


async def in_doubt(connection: AsyncConnection, since: datetime) -> list[Payment]:
    """Payments left `capturing` since before `since` (a crash, a lost answer)."""
    statement = select(payments).where(
        payments.c.status == domain.CAPTURING, payments.c.updated_at < since
    )
    return [Payment._make(row) for row in await connection.execute(statement)]
