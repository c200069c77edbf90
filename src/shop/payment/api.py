"""Payment's REST routes, under /api/payment/v1. A customer sees only their own payments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from cleave.auth.tokens import AdminPrincipal, Principal, scoped
from cleave.errors import NotFound
from cleave.money import Money
from cleave.service import ServiceContext
from cleave.service.api import Cursor, Limit, Page, after_key, context_of, page_of
from shop.payment import handlers, store
from shop.payment.contract import PaymentStatus

router = APIRouter()
Context = Annotated[ServiceContext, Depends(context_of("payment"))]
Reader = Annotated[Principal, Depends(scoped("payments:read"))]
PaymentId = Annotated[str, Path(max_length=64)]


class PaymentOut(BaseModel):
    id: str
    order_id: str
    customer_id: str
    status: PaymentStatus
    reason: str | None = Field(description="Why it was declined, like insufficient_funds.")
    amount: Money
    card: str = Field(description="The last characters of the card token, never the token.")
    created_at: datetime
    updated_at: datetime


def _out(row: Any) -> PaymentOut:
    return PaymentOut(
        id=row.id,
        order_id=row.order_id,
        customer_id=row.customer_id,
        status=row.status,
        reason=row.reason,
        amount=Money(amount=row.amount, currency=row.currency),
        card=f"…{row.card_hint}",
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _visible(context: ServiceContext, principal: Principal, payment_id: str) -> Any:
    async with context.read() as connection:
        row = await store.by_id(connection, payment_id)
    # Another customer's payment is "not found": its existence is not the caller's to learn.
    if row is None or (row.customer_id != principal.subject and not principal.is_admin):
        raise NotFound(f"no payment {payment_id}")
    return row


@router.get("/payments", summary="Your payments (all of them for an admin)")
async def list_payments(
    context: Context, principal: Reader, limit: Limit = 20, cursor: Cursor = None
) -> Page[PaymentOut]:
    owner = None if principal.is_admin else principal.subject
    async with context.read() as connection:
        rows = await store.list_payments(
            connection, customer_id=owner, after=after_key(cursor), limit=limit + 1
        )
    return page_of(rows, limit, _out, lambda row: {"after": row.id})


@router.get("/payments/{payment_id}", summary="One of your payments")
async def get_payment(context: Context, principal: Reader, payment_id: PaymentId) -> PaymentOut:
    return _out(await _visible(context, principal, payment_id))


@router.post("/payments/{payment_id}/refund", summary="Refund a captured payment (admin)")
async def refund(context: Context, admin: AdminPrincipal, payment_id: PaymentId) -> PaymentOut:
    processor = handlers.own_port(context).processor_calls
    refunded = await handlers.refund(context, processor, payment_id)
    context.log.info("payment refunded", payment=payment_id, by=admin.subject)
    return _out(await _visible(context, admin, refunded.payment_id))
