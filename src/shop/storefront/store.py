"""The storefront's tables, and the queries on them: browser sessions, carts and checkouts.
Nothing outside the storefront touches these tables, and the storefront touches no other's."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.database import UtcDateTime

metadata = MetaData()

# A signed-in browser's session. The key is a hash of the cookie and the tokens are sealed with
# a key derived from the cookie, so the table alone opens no session and leaks no token.
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)
Index("ix_sessions_expires_at", sessions.c.expires_at)


# A session as `get_session` returns it: the table's columns in order (a unit test holds them
# equal), so mypy checks the names the handlers read.
class SessionRow(NamedTuple):
    id_hash: str
    sealed: bytes
    created_at: datetime
    expires_at: datetime


# A cart line; `owner` is `c:<customer id>` for a signed-in customer, `v:<session hash>` for a
# visitor who has not signed in.
cart_lines = Table(
    "cart_lines",
    metadata,
    Column("owner", String(80), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
    CheckConstraint("quantity > 0", name="ck_cart_lines_quantity_positive"),
)
Index("ix_cart_lines_added_at", cart_lines.c.added_at)

# Each checkout form carries a key; the order it placed, so a repeated submit finds it again.
checkouts = Table(
    "checkouts",
    metadata,
    Column("owner", String(80), primary_key=True),
    Column("idempotency_key", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)


# --- sessions ---------------------------------------------------------------------------------


async def get_session(connection: AsyncConnection, id_hash: str) -> SessionRow | None:
    statement = select(sessions).where(
        sessions.c.id_hash == id_hash, sessions.c.expires_at > utcnow()
    )
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else SessionRow._make(row)


async def put_session(
    connection: AsyncConnection, id_hash: str, sealed: bytes, expires_at: datetime
) -> None:
    changed = await connection.execute(
        update(sessions)
        .where(sessions.c.id_hash == id_hash)
        .values(sealed=sealed, expires_at=expires_at)
    )
    if changed.rowcount == 0:
        await connection.execute(
            sessions.insert().values(
                id_hash=id_hash, sealed=sealed, created_at=utcnow(), expires_at=expires_at
            )
        )


async def delete_session(connection: AsyncConnection, id_hash: str) -> None:
    await connection.execute(delete(sessions).where(sessions.c.id_hash == id_hash))


async def delete_expired(connection: AsyncConnection, *, visitors_before: datetime) -> None:
    """Sessions past their end, and visitors' carts untouched since `visitors_before`."""
    await connection.execute(delete(sessions).where(sessions.c.expires_at <= utcnow()))
    await connection.execute(
        delete(cart_lines).where(
            cart_lines.c.owner.like("v:%"), cart_lines.c.added_at < visitors_before
        )
    )


# --- carts ------------------------------------------------------------------------------------


async def cart(connection: AsyncConnection, owner: str) -> dict[str, int]:
    """The cart's lines, sku to quantity, in the order they were added."""
    rows = await connection.execute(
        select(cart_lines.c.sku, cart_lines.c.quantity)
        .where(cart_lines.c.owner == owner)
        .order_by(cart_lines.c.added_at, cart_lines.c.sku)
    )
    return {row.sku: row.quantity for row in rows}


async def cart_size(connection: AsyncConnection, owner: str) -> int:
    total = await connection.execute(
        select(func.coalesce(func.sum(cart_lines.c.quantity), 0)).where(cart_lines.c.owner == owner)
    )
    return int(total.scalar_one())


async def set_line(connection: AsyncConnection, owner: str, sku: str, quantity: int) -> None:
    """Set a line's quantity (0 removes it); a new line keeps its place at the end."""
    if quantity <= 0:
        await connection.execute(
            delete(cart_lines).where(cart_lines.c.owner == owner, cart_lines.c.sku == sku)
        )
        return
    changed = await connection.execute(
        update(cart_lines)
        .where(cart_lines.c.owner == owner, cart_lines.c.sku == sku)
        .values(quantity=quantity)
    )
    if changed.rowcount == 0:
        await connection.execute(
            cart_lines.insert().values(owner=owner, sku=sku, quantity=quantity, added_at=utcnow())
        )


async def clear_cart(connection: AsyncConnection, owner: str) -> None:
    await connection.execute(delete(cart_lines).where(cart_lines.c.owner == owner))


# --- checkouts --------------------------------------------------------------------------------


async def checkout(connection: AsyncConnection, owner: str, key: str) -> str | None:
    statement = select(checkouts.c.order_id).where(
        checkouts.c.owner == owner, checkouts.c.idempotency_key == key
    )
    return (await connection.execute(statement)).scalar_one_or_none()


async def record_checkout(connection: AsyncConnection, owner: str, key: str, order_id: str) -> None:
    await connection.execute(
        checkouts.insert().values(
            owner=owner, idempotency_key=key, order_id=order_id, created_at=utcnow()
        )
    )
