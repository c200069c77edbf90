"""Payment use cases, and the local implementation of its port.

The processor is never called inside a transaction. An authorisation is first recorded as
`authorizing`, then the processor is asked (the payment id is its idempotency key), then the answer
is recorded with a conditional update: a void that landed meanwhile wins, and the late hold is
released. Capture, void and refund change the payment first, under the same conditional rule, and
then tell the processor, whose operations are idempotent: a retry re-drives them safely.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.errors import NotFound
from cleave.money import Money
from cleave.service import ServiceContext
from shop.payment import domain, store
from shop.payment.contract import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentFailed,
    PaymentOutcome,
    PaymentRefunded,
    PaymentVoided,
)
from shop.payment.processor import CardProcessor, Declined, SimulatedProcessor


def amount_of(row: Row[Any]) -> Money:
    return Money(amount=row.amount, currency=row.currency)


def outcome(row: Row[Any]) -> PaymentOutcome:
    return PaymentOutcome(
        payment_id=row.id,
        order_id=row.order_id,
        status=row.status,
        amount=amount_of(row),
        reason=row.reason,
    )


def settled(row: Row[Any]) -> PaymentOutcome:
    """Answer as the payment stands: its outcome if the card holds the money, else PaymentFailed."""
    reason = domain.failure_reason(row.status, row.reason)
    if reason is not None:
        raise PaymentFailed(reason)
    return outcome(row)


async def _by_order(connection: AsyncConnection, order_id: str) -> Row[Any]:
    row = await store.by_order(connection, order_id)
    if row is None:
        raise NotFound(f"no payment for order {order_id}")
    return row


async def _reload(connection: AsyncConnection, payment_id: str) -> Row[Any]:
    row = await store.by_id(connection, payment_id)
    assert row is not None  # payments are never deleted
    return row


class LocalPayments:
    """The payment port, served in this process. It owns the processor it talks to."""

    def __init__(self, context: ServiceContext, processor: CardProcessor | None = None) -> None:
        self.context = context
        self.processor: CardProcessor = processor or SimulatedProcessor()
        self.processor_timeout = context.setting("processor_timeout_seconds", 2.0)

    async def authorise(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> PaymentOutcome:
        payment = await self._open(order_id, customer_id, amount, card_token)
        if payment.status != domain.AUTHORIZING:
            return settled(payment)  # asked before: the same answer, and no second charge
        # Also re-drives a payment left authorizing by a crash: the key makes it the same charge.
        try:
            async with asyncio.timeout(self.processor_timeout):
                # The amount recorded first: a re-drive never holds a different one.
                reference = await self.processor.authorize(
                    payment.id, card_token, amount_of(payment)
                )
        except Declined as declined:
            return await self._decline(payment, declined.reason)
        except TimeoutError:
            return await self._decline(payment, domain.PROCESSOR_TIMEOUT)
        return await self._record_authorized(payment, reference)

    async def _open(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> Row[Any]:
        """The order's one payment: found, or recorded as authorizing in a short transaction."""
        try:
            async with self.context.unit_of_work() as uow:
                existing = await store.by_order(uow.connection, order_id)
                if existing is not None:
                    return existing
                payment_id = uuid.uuid4().hex
                await store.insert(
                    uow.connection,
                    {
                        "id": payment_id,
                        "order_id": order_id,
                        "customer_id": customer_id,
                        "amount": amount.amount,
                        "currency": amount.currency,
                        "card_hint": domain.card_hint(card_token),
                        "status": domain.AUTHORIZING,
                    },
                )
                return await _reload(uow.connection, payment_id)
        except IntegrityError:
            pass  # a concurrent call for the same order inserted first: use its payment
        async with self.context.read() as connection:
            return await _by_order(connection, order_id)

    async def _decline(self, payment: Row[Any], reason: str) -> PaymentOutcome:
        async with self.context.unit_of_work() as uow:
            await store.transition(
                uow.connection,
                payment.id,
                from_=[domain.AUTHORIZING],
                status=domain.DECLINED,
                reason=reason,
            )
            current = await _reload(uow.connection, payment.id)
        if reason == domain.PROCESSOR_TIMEOUT and current.status in (
            domain.DECLINED,
            domain.VOIDED,
        ):
            await self._cancel_at_processor(payment.id)
        if current.status == domain.DECLINED:
            self.context.log.info("payment declined", order=payment.order_id, reason=reason)
        return settled(current)  # declined, or whatever a concurrent call or a void made of it

    async def _cancel_at_processor(self, payment_id: str) -> None:
        """Best effort: an answer that never came may still land at the processor later."""
        try:
            async with asyncio.timeout(self.processor_timeout):
                await self.processor.cancel(payment_id)
        except (Declined, TimeoutError) as error:
            self.context.log.warning(
                "could not cancel at the processor",
                payment=payment_id,
                error=str(error) or type(error).__name__,
            )

    async def _record_authorized(self, payment: Row[Any], reference: str) -> PaymentOutcome:
        async with self.context.unit_of_work() as uow:
            won = await store.transition(
                uow.connection,
                payment.id,
                from_=[domain.AUTHORIZING],
                status=domain.AUTHORIZED,
                processor_ref=reference,
            )
            if won:
                uow.publish(
                    PaymentAuthorized(
                        payment_id=payment.id,
                        order_id=payment.order_id,
                        amount=amount_of(payment),
                    ),
                    subject=payment.order_id,
                )
            current = await _reload(uow.connection, payment.id)
        if current.status == domain.VOIDED:
            await self.processor.void(reference)  # voided while the processor decided: release it
            raise PaymentFailed("voided", "the order was cancelled while the card was authorised")
        # Not won otherwise means a concurrent call for this order recorded the same answer first.
        return settled(current)

    async def capture(self, order_id: str) -> PaymentOutcome:
        async with self.context.unit_of_work() as uow:
            payment = await _by_order(uow.connection, order_id)
            if await store.transition(
                uow.connection, payment.id, from_=[domain.AUTHORIZED], status=domain.CAPTURED
            ):
                uow.publish(
                    PaymentCaptured(
                        payment_id=payment.id,
                        order_id=order_id,
                        amount=amount_of(payment),
                    ),
                    subject=order_id,
                )
            current = await _reload(uow.connection, payment.id)
            domain.require("capture", current.status)
        assert current.processor_ref is not None  # only an authorised payment gets captured
        await self.processor.capture(current.processor_ref)
        return outcome(current)

    async def void(self, order_id: str) -> PaymentOutcome | None:
        async with self.context.unit_of_work() as uow:
            payment = await store.by_order(uow.connection, order_id)
            if payment is None:
                return None
            if await store.transition(
                uow.connection,
                payment.id,
                from_=[domain.AUTHORIZING, domain.AUTHORIZED],
                status=domain.VOIDED,
            ):
                uow.publish(
                    PaymentVoided(payment_id=payment.id, order_id=order_id), subject=order_id
                )
            # Read after the change: a hold that landed meanwhile is released below, not leaked.
            current = await _reload(uow.connection, payment.id)
            domain.require("void", current.status)
        if current.status == domain.VOIDED:
            if current.processor_ref is not None:
                await self.processor.void(current.processor_ref)
            else:  # no answer yet: make sure none that lands later holds the money
                await self._cancel_at_processor(payment.id)
        return outcome(current)

    async def refund(self, payment_id: str) -> PaymentOutcome:
        """Give a captured payment back (an admin's decision, not a saga step). Idempotent."""
        async with self.context.unit_of_work() as uow:
            payment = await store.by_id(uow.connection, payment_id)
            if payment is None:
                raise NotFound(f"no payment {payment_id}")
            if await store.transition(
                uow.connection, payment.id, from_=[domain.CAPTURED], status=domain.REFUNDED
            ):
                uow.publish(
                    PaymentRefunded(
                        payment_id=payment.id,
                        order_id=payment.order_id,
                        amount=amount_of(payment),
                    ),
                    subject=payment.order_id,
                )
            current = await _reload(uow.connection, payment.id)
            domain.require("refund", current.status)
        assert current.processor_ref is not None  # only a captured payment gets refunded
        await self.processor.refund(current.processor_ref)
        return outcome(current)
