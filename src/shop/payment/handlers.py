"""Payment use cases, and the local implementation of its port.

The processor is called outside any transaction: a payment is first recorded as `authorizing`,
then the processor is asked, then the answer is recorded with a conditional update, so a void that
arrived meanwhile wins and the late authorisation is voided at the processor.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

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


def outcome(row: Any) -> PaymentOutcome:
    return PaymentOutcome(
        payment_id=row.id,
        order_id=row.order_id,
        status=row.status,
        amount=Money(amount=row.amount, currency=row.currency),
        reason=row.reason,
    )


class LocalPayments:
    """The payment port, served in this process."""

    def __init__(self, context: ServiceContext, processor: CardProcessor | None = None) -> None:
        self.context = context
        self.processor = processor or SimulatedProcessor()
        self.processor_timeout = context.setting("processor_timeout_seconds", 2.0)

    async def authorise(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> PaymentOutcome:
        payment = await self._existing_or_new(order_id, customer_id, amount, card_token)
        if payment.status != domain.AUTHORIZING:
            return self._settled(payment)
        try:
            async with asyncio.timeout(self.processor_timeout):
                reference = await self.processor.authorize(
                    payment.id, card_token, payment.amount, payment.currency
                )
        except Declined as declined:
            await self._decline(payment.id, declined.reason)
            raise PaymentFailed(declined.reason) from None
        except TimeoutError:
            await self._decline(payment.id, "processor_timeout")
            raise PaymentFailed(
                "processor_timeout", "the card processor did not answer in time"
            ) from None
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
                    PaymentAuthorized(payment_id=payment.id, order_id=order_id, amount=amount),
                    subject=order_id,
                )
        if not won:  # voided while the processor was deciding: give the hold back
            await self.processor.void(reference)
            raise PaymentFailed("voided", "the order was cancelled while the card was authorised")
        return await self._outcome(order_id)

    async def _existing_or_new(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> Any:
        async with self.context.read() as connection:
            existing = await store.by_order(connection, order_id)
        if existing is not None:
            return existing
        try:
            async with self.context.unit_of_work() as uow:
                await store.insert(
                    uow.connection,
                    {
                        "id": uuid.uuid4().hex,
                        "order_id": order_id,
                        "customer_id": customer_id,
                        "amount": amount.amount,
                        "currency": amount.currency,
                        "card_hint": domain.card_hint(card_token),
                        "status": domain.AUTHORIZING,
                    },
                )
        except IntegrityError:
            pass  # a concurrent call for the same order inserted first: use its payment
        async with self.context.read() as connection:
            return await store.by_order(connection, order_id)

    def _settled(self, payment: Any) -> PaymentOutcome:
        """A repeated authorise: answer as the first one did, charging nothing."""
        if payment.status in (domain.AUTHORIZED, domain.CAPTURED):
            return outcome(payment)
        if payment.status == domain.DECLINED:
            raise PaymentFailed(payment.reason or "declined")
        raise PaymentFailed(payment.status)

    async def _decline(self, payment_id: str, reason: str) -> None:
        async with self.context.unit_of_work() as uow:
            await store.transition(
                uow.connection,
                payment_id,
                from_=[domain.AUTHORIZING],
                status=domain.DECLINED,
                reason=reason,
            )

    async def _outcome(self, order_id: str) -> PaymentOutcome:
        async with self.context.read() as connection:
            row = await store.by_order(connection, order_id)
        if row is None:
            raise NotFound(f"no payment for order {order_id}")
        return outcome(row)

    async def capture(self, order_id: str) -> PaymentOutcome:
        current = await self._outcome(order_id)
        if current.status == domain.CAPTURED:
            return current
        domain.require("capture", current.status)
        async with self.context.read() as connection:
            row = await store.by_order(connection, order_id)
        assert row is not None
        assert row.processor_ref is not None  # authorised payments always have one
        await self.processor.capture(row.processor_ref)
        async with self.context.unit_of_work() as uow:
            if await store.transition(
                uow.connection, row.id, from_=[domain.AUTHORIZED], status=domain.CAPTURED
            ):
                uow.publish(
                    PaymentCaptured(payment_id=row.id, order_id=order_id, amount=current.amount),
                    subject=order_id,
                )
        return await self._check(order_id, domain.CAPTURED, "capture")

    async def void(self, order_id: str) -> PaymentOutcome | None:
        async with self.context.read() as connection:
            row = await store.by_order(connection, order_id)
        if row is None or row.status in (domain.VOIDED, domain.DECLINED):
            return None if row is None else outcome(row)
        domain.require("void", row.status)
        async with self.context.unit_of_work() as uow:
            if await store.transition(
                uow.connection,
                row.id,
                from_=[domain.AUTHORIZING, domain.AUTHORIZED],
                status=domain.VOIDED,
            ):
                uow.publish(PaymentVoided(payment_id=row.id, order_id=order_id), subject=order_id)
        if row.processor_ref is not None:
            await self.processor.void(row.processor_ref)
        return await self._check(order_id, domain.VOIDED, "void")

    async def refund(self, payment_id: str) -> PaymentOutcome:
        async with self.context.read() as connection:
            row = await store.by_id(connection, payment_id)
        if row is None:
            raise NotFound(f"no payment {payment_id}")
        if row.status == domain.REFUNDED:
            return outcome(row)
        domain.require("refund", row.status)
        await self.processor.refund(row.processor_ref)
        async with self.context.unit_of_work() as uow:
            if await store.transition(
                uow.connection, row.id, from_=[domain.CAPTURED], status=domain.REFUNDED
            ):
                amount = Money(amount=row.amount, currency=row.currency)
                uow.publish(
                    PaymentRefunded(payment_id=row.id, order_id=row.order_id, amount=amount),
                    subject=row.order_id,
                )
        return await self._check(row.order_id, domain.REFUNDED, "refund")

    async def _check(self, order_id: str, expected: str, command: str) -> PaymentOutcome:
        """After a conditional change, the payment is as asked, or another command won the race."""
        current = await self._outcome(order_id)
        if current.status != expected:
            domain.require(command, current.status)
        return current
