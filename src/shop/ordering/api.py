"""Ordering's REST routes, under /api/ordering/v1. A customer sees only their own orders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from cleave.auth.tokens import Principal, scoped
from cleave.errors import NotFound, Problem
from cleave.money import Money
from cleave.service import ServiceContext
from cleave.service.api import Cursor, Limit, Page, context_of, decode_cursor, page_of
from shop.ordering import handlers, store
from shop.ordering.domain import PENDING, Line, is_retryable

router = APIRouter()
Context = Annotated[ServiceContext, Depends(context_of("ordering"))]
Reader = Annotated[Principal, Depends(scoped("orders:read"))]
Writer = Annotated[Principal, Depends(scoped("orders:write"))]


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64, examples=["MUG-CLASSIC"])
    quantity: int = Field(gt=0, le=1000)


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", examples=["NL"])


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[LineIn] = Field(min_length=1, max_length=50)
    card_token: str = Field(min_length=1, max_length=100, examples=["tok_approve"])
    shipping_address: Address


class LineOut(BaseModel):
    sku: str
    quantity: int
    name: str | None = Field(description="Known once catalog has priced the line.")
    unit_price: Money | None = Field(description="Known once catalog has priced the line.")


class OrderOut(BaseModel):
    id: str
    status: str = Field(description="pending, then exactly one of confirmed, rejected, cancelled.")
    reason: str | None = Field(
        description="Why an order was rejected or cancelled, machine-readable."
    )
    retryable: bool = Field(
        description="True when the order ended for a passing reason (a service was unavailable, "
        "the card processor did not answer): nothing was charged, and placing it again may "
        "succeed."
    )
    customer_id: str
    lines: list[LineOut]
    total: Money | None
    shipping_address: Address
    card: str = Field(description="The last four characters of the card token.")
    created_at: datetime
    updated_at: datetime


class OrderAccepted(BaseModel):
    id: str
    status: str


def _out(row: store.OrderRow, lines: list[store.OrderLineRow]) -> OrderOut:
    total = (
        Money(amount=row.total_amount, currency=row.currency)
        if row.currency and row.total_amount is not None  # catalog priced it: both set at once
        else None
    )
    return OrderOut(
        id=row.id,
        status=row.status,
        reason=row.reason,
        retryable=is_retryable(row.reason),
        customer_id=row.customer_id,
        lines=[
            LineOut(
                sku=x.sku,
                quantity=x.quantity,
                name=x.name,
                unit_price=None
                if x.unit_price is None or not row.currency
                else Money(amount=x.unit_price, currency=row.currency),
            )
            for x in lines
        ],
        total=total,
        shipping_address=Address.model_validate_json(row.shipping_address),
        card=f"…{row.card_hint}",
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.post(
    "/orders",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Place an order",
    description="Answers at once with the order `pending`; poll the order to see it end. "
    "The same `Idempotency-Key` returns the same order and creates no second one.",
)
async def place_order(
    context: Context,
    principal: Writer,
    body: OrderIn,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> OrderAccepted:
    placed = await handlers.place_order(
        context,
        handlers.PlaceOrder(
            customer_id=principal.subject,
            lines=[Line(line.sku, line.quantity) for line in body.lines],
            card_token=body.card_token,
            shipping_address=body.shipping_address.model_dump(),
            idempotency_key=idempotency_key,
        ),
    )
    response.headers["Location"] = f"/api/ordering/v1/orders/{placed.order_id}"
    if placed.created:
        # As accepted, not as it stands by now: its saga may have moved it on since the commit.
        return OrderAccepted(id=placed.order_id, status=PENDING)
    async with context.read() as connection:  # a replay: the earlier order as it stands
        row = await store.get_order(connection, placed.order_id)
    assert row is not None
    return OrderAccepted(id=row.id, status=row.status)


@router.get("/orders/{order_id}", summary="One of your orders")
async def get_order(
    context: Context, principal: Reader, order_id: Annotated[str, Path(max_length=64)]
) -> OrderOut:
    async with context.read() as connection:
        row = await store.get_order(connection, order_id)
        # Another customer's order is "not found": its existence is not ours to reveal.
        if row is None or (row.customer_id != principal.subject and not principal.is_admin):
            raise NotFound(f"no order {order_id}")
        lines = await store.get_lines(connection, [order_id])
    return _out(row, lines[order_id])


@router.get("/orders", summary="Your orders, newest first")
async def list_orders(
    context: Context, principal: Reader, limit: Limit = 20, cursor: Cursor = None
) -> Page[OrderOut]:
    position = decode_cursor(cursor)
    before = None
    if position is not None:
        try:
            before = (datetime.fromisoformat(position["at"]), str(position["id"]))
        except (KeyError, TypeError, ValueError):
            raise Problem(
                "the cursor is not one this API gave out", code="invalid-cursor"
            ) from None
    owner = None if principal.is_admin else principal.subject
    async with context.read() as connection:
        rows = await store.list_orders(
            connection, customer_id=owner, before=before, limit=limit + 1
        )
        lines = await store.get_lines(connection, [row.id for row in rows[:limit]])
    return page_of(
        rows,
        limit,
        lambda row: _out(row, lines[row.id]),
        lambda row: {"at": row.created_at.isoformat(), "id": row.id},
    )
