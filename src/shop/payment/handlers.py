"""Payment use cases, and the local implementation of its port (docs/handlers.md).

The processor is never called inside a transaction, so every use case that asks it spans several
transactions and takes the context; each transaction is a step that takes the unit of work
(`_existing_or_new`, the `_mark_*` steps). An authorisation is first recorded as `authorizing`, then
the processor is asked (the payment id is its idempotency key), then the answer is recorded with a
conditional update: a void that landed meanwhile wins, and the late hold is released. A capture is
the same: recorded as `capturing`, then the processor is asked (with a key derived from the
payment), and `captured` (with its event) is committed only on its answer; a payment found
`capturing` later (a crash, a lost answer) is settled by asking again with that key. Void and refund
change the payment first, under the same conditional rule, and then tell the processor, whose
operations are idempotent: a retry re-drives them safely."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.auth.units import on_behalf_of
from cleave.clock import utcnow
from cleave.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from cleave.events import Event
from cleave.money import Money
from cleave.service import ServiceContext, UnitOfWork
from shop.payment import domain, store
from shop.payment.contract import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentFailed,
    PaymentOutcome,
    PaymentPort,
    PaymentRefunded,
    PaymentVoided,
    card_hint,
)
from shop.payment.processor import CardProcessor, Declined, SimulatedProcessor


@dataclass(frozen=True)
class ProcessorCalls:
    """How the use cases reach the card processor: which one, and how long an answer may take."""

    client: CardProcessor
    timeout: float


def amount_of(row: store.Payment) -> Money:
    return Money(amount=row.amount, currency=row.currency)


def outcome(row: store.Payment) -> PaymentOutcome:
    return PaymentOutcome(
        payment_id=row.id,
        order_id=row.order_id,
        status=row.status,
        amount=amount_of(row),
        reason=row.reason,
    )


def settled(row: store.Payment) -> PaymentOutcome:
    """Answer as the payment stands: its outcome if the card holds the money, else PaymentFailed."""
    reason = domain.failure_reason(row.status, row.reason)
    if reason is not None:
        raise PaymentFailed(reason)
    return outcome(row)


async def _move(
    uow: UnitOfWork, payment: store.Payment, event: Event, *, from_: list[str], **values: Any
) -> store.Payment:
    """Change the payment if it is still in one of `from_`, and publish `event` only if this
    call changed it (a void or a concurrent call may have won); the payment as it now stands."""
    won, current = await store.transition(uow.connection, payment.id, from_=from_, **values)
    if won:
        uow.publish(event, subject=payment.order_id)
    return current


async def _by_order(connection: AsyncConnection, order_id: str) -> store.Payment:
    row = await store.by_order(connection, order_id)
    if row is None:
        raise NotFound(f"no payment for order {order_id}")
    return row


# --- authorise -------------------------------------------------------------------------------


async def authorise(
    context: ServiceContext,
    processor: ProcessorCalls,
    order_id: str,
    customer_id: str,
    amount: Money,
    card_token: str,
) -> PaymentOutcome:
    acting = on_behalf_of()
    if acting is not None and acting != customer_id:  # a unit may charge only its user
        raise Forbidden(f"a call acting for {acting} cannot charge another customer")
    payment = await _open(context, order_id, customer_id, amount, card_token)
    if payment.status != domain.AUTHORIZING:
        return settled(payment)  # asked before: the same answer, and no second charge
    # Also re-drives a payment left authorizing by a crash: the key makes it the same charge.
    try:
        async with asyncio.timeout(processor.timeout):
            # The amount recorded first: a re-drive never holds a different one.
            reference = await processor.client.authorise(payment.id, card_token, amount_of(payment))
    except Declined as declined:
        return await _decline(context, processor, payment, declined.reason)
    except TimeoutError:
        return await _decline(context, processor, payment, domain.PROCESSOR_TIMEOUT)
    return await _record_authorized(context, processor, payment, reference)


async def _open(
    context: ServiceContext, order_id: str, customer_id: str, amount: Money, card_token: str
) -> store.Payment:
    """The order's one payment: found, or recorded as authorizing in a short transaction."""
    try:
        async with context.unit_of_work() as uow:
            return await _existing_or_new(uow, order_id, customer_id, amount, card_token)
    except IntegrityError:
        pass  # a concurrent call for the same order inserted first: use its payment
    async with context.read() as connection:
        return await _by_order(connection, order_id)


async def _existing_or_new(
    uow: UnitOfWork, order_id: str, customer_id: str, amount: Money, card_token: str
) -> store.Payment:
    existing = await store.by_order(uow.connection, order_id)
    if existing is not None:
        return existing
    now = utcnow()
    return await store.insert(
        uow.connection,
        store.Payment(
            id=uuid.uuid4().hex,
            order_id=order_id,
            customer_id=customer_id,
            amount=amount.amount,
            currency=amount.currency,
            card_hint=card_hint(card_token),
            status=domain.AUTHORIZING,
            reason=None,
            processor_ref=None,
            created_at=now,
            updated_at=now,
        ),
    )


async def _decline(
    context: ServiceContext, processor: ProcessorCalls, payment: store.Payment, reason: str
) -> PaymentOutcome:
    async with context.unit_of_work() as uow:
        current = await _mark_declined(uow, payment, reason)
    if reason == domain.PROCESSOR_TIMEOUT and current.status in (
        domain.DECLINED,
        domain.VOIDED,
    ):
        await _cancel_at_processor(context, processor, payment.id)
    if current.status == domain.DECLINED:
        context.log.info("payment declined", order=payment.order_id, reason=reason)
    return settled(current)  # declined, or whatever a concurrent call or a void made of it


async def _mark_declined(uow: UnitOfWork, payment: store.Payment, reason: str) -> store.Payment:
    _, current = await store.transition(
        uow.connection,
        payment.id,
        from_=[domain.AUTHORIZING],
        status=domain.DECLINED,
        reason=reason,
    )
    return current


async def _cancel_at_processor(
    context: ServiceContext, processor: ProcessorCalls, payment_id: str, *, strict: bool = False
) -> None:
    """An answer that never came may still land at the processor later: cancel it. Best
    effort unless `strict` (a void, which its caller retries until it succeeds)."""
    try:
        async with asyncio.timeout(processor.timeout):
            await processor.client.cancel(payment_id)
    except (Declined, TimeoutError) as error:
        context.log.warning(
            "could not cancel at the processor",
            payment=payment_id,
            error=str(error) or type(error).__name__,
        )
        if strict:
            raise ServiceUnavailable(
                f"the card processor did not confirm cancelling payment {payment_id}",
                service="payment",
            ) from None


async def _record_authorized(
    context: ServiceContext, processor: ProcessorCalls, payment: store.Payment, reference: str
) -> PaymentOutcome:
    async with context.unit_of_work() as uow:
        current = await _mark_authorized(uow, payment, reference)
    if current.status == domain.VOIDED:
        await processor.client.void(reference)  # voided while the processor decided: release it
        raise PaymentFailed("voided", "the order was cancelled while the card was authorised")
    return settled(current)


async def _mark_authorized(
    uow: UnitOfWork, payment: store.Payment, reference: str
) -> store.Payment:
    # Not won means a void landed meanwhile, or a concurrent call for this order recorded the
    # same answer first.
    return await _move(
        uow,
        payment,
        PaymentAuthorized(
            payment_id=payment.id, order_id=payment.order_id, amount=amount_of(payment)
        ),
        from_=[domain.AUTHORIZING],
        status=domain.AUTHORIZED,
        processor_ref=reference,
    )


# --- capture ---------------------------------------------------------------------------------


async def capture(
    context: ServiceContext, processor: ProcessorCalls, order_id: str
) -> PaymentOutcome:
    async with context.unit_of_work() as uow:
        current = await _mark_capturing(uow, order_id)
    if current.status != domain.CAPTURING:
        return outcome(current)  # captured before: the same answer
    return await _settle_capture(context, processor, current)


async def _mark_capturing(uow: UnitOfWork, order_id: str) -> store.Payment:
    payment = await _by_order(uow.connection, order_id)
    _, current = await store.transition(
        uow.connection, payment.id, from_=[domain.AUTHORIZED], status=domain.CAPTURING
    )
    domain.require("capture", current.status)
    return current


async def _settle_capture(
    context: ServiceContext, processor: ProcessorCalls, payment: store.Payment
) -> PaymentOutcome:
    """Ask the processor to take the money of a `capturing` payment, and record its answer.
    The key makes asking again (after a crash, a timeout) the same capture, never a second."""
    assert payment.processor_ref is not None  # only an authorised payment gets captured
    try:
        async with asyncio.timeout(processor.timeout):
            await processor.client.capture(
                payment.processor_ref, idempotency_key=domain.capture_key(payment.id)
            )
    except Declined as refused:
        return await _capture_refused(context, payment, refused.reason)
    except TimeoutError:
        raise ServiceUnavailable(
            f"the card processor did not answer the capture of payment {payment.id} in time; "
            "asking again is the same capture",
            service="payment",
        ) from None
    async with context.unit_of_work() as uow:
        current = await _mark_captured(uow, payment)
    return outcome(current)


async def _mark_captured(uow: UnitOfWork, payment: store.Payment) -> store.Payment:
    return await _move(
        uow,
        payment,
        PaymentCaptured(
            payment_id=payment.id, order_id=payment.order_id, amount=amount_of(payment)
        ),
        from_=[domain.CAPTURING],
        status=domain.CAPTURED,
    )


async def _capture_refused(
    context: ServiceContext, payment: store.Payment, reason: str
) -> PaymentOutcome:
    """The processor no longer holds the money (voided, expired): nothing was taken. The
    Conflict is raised once the void is committed, never inside its transaction."""
    async with context.unit_of_work() as uow:
        current = await _mark_capture_refused(uow, payment, reason)
    if current.status == domain.CAPTURED:
        return outcome(current)  # a concurrent re-drive heard the capture first
    context.log.warning("the processor refused a capture", order=payment.order_id, reason=reason)
    raise Conflict(
        f"the card processor refused to capture payment {payment.id}: {reason}",
        code="capture-refused",
        reason=reason,
    )


async def _mark_capture_refused(
    uow: UnitOfWork, payment: store.Payment, reason: str
) -> store.Payment:
    return await _move(
        uow,
        payment,
        PaymentVoided(payment_id=payment.id, order_id=payment.order_id),
        from_=[domain.CAPTURING],
        status=domain.VOIDED,
        reason=f"capture_{reason}",
    )


async def settle_in_doubt(
    context: ServiceContext, processor: ProcessorCalls, older_than_seconds: float
) -> int:
    """Settle every payment left `capturing` (by a crash or a lost answer) by asking the
    processor again; returns how many were settled."""
    since = utcnow() - timedelta(seconds=older_than_seconds)
    async with context.read() as connection:
        rows = await store.in_doubt(connection, since)
    settled_now = 0
    for row in rows:
        try:
            await _settle_capture(context, processor, row)
            settled_now += 1
        except Conflict:
            settled_now += 1  # refused: settled as voided, the saga learns it when it asks
        except ServiceUnavailable as error:
            context.log.warning("capture still in doubt", order=row.order_id, error=str(error))
    return settled_now


# --- void and refund -------------------------------------------------------------------------


async def void(
    context: ServiceContext, processor: ProcessorCalls, order_id: str
) -> PaymentOutcome | None:
    async with context.unit_of_work() as uow:
        current = await _mark_voided(uow, order_id)
    if current is None:
        return None
    if current.status == domain.VOIDED:
        if current.processor_ref is not None:
            await processor.client.void(current.processor_ref)
        else:  # no answer yet: make sure none that lands later holds the money
            await _cancel_at_processor(context, processor, current.id, strict=True)
    elif current.status == domain.DECLINED and current.reason == domain.PROCESSOR_TIMEOUT:
        # The answer that never came may still hold the money: a compensation is the last
        # chance to say so, so a failure here fails the void and it is retried.
        await _cancel_at_processor(context, processor, current.id, strict=True)
    return outcome(current)


async def _mark_voided(uow: UnitOfWork, order_id: str) -> store.Payment | None:
    """The order's payment voided if it still may be, None if it has none. As it stands after
    the change: a hold that landed meanwhile is for the caller to release."""
    payment = await store.by_order(uow.connection, order_id)
    if payment is None:
        return None
    current = await _move(
        uow,
        payment,
        PaymentVoided(payment_id=payment.id, order_id=order_id),
        from_=[domain.AUTHORIZING, domain.AUTHORIZED],
        status=domain.VOIDED,
    )
    domain.require("void", current.status)
    return current


async def refund(
    context: ServiceContext, processor: ProcessorCalls, payment_id: str
) -> PaymentOutcome:
    """Give a captured payment back (an admin's decision, not a saga step). Idempotent."""
    async with context.unit_of_work() as uow:
        current = await _mark_refunded(uow, payment_id)
    assert current.processor_ref is not None  # only a captured payment gets refunded
    await processor.client.refund(current.processor_ref)
    return outcome(current)


async def _mark_refunded(uow: UnitOfWork, payment_id: str) -> store.Payment:
    payment = await store.by_id(uow.connection, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    current = await _move(
        uow,
        payment,
        PaymentRefunded(
            payment_id=payment.id, order_id=payment.order_id, amount=amount_of(payment)
        ),
        from_=[domain.CAPTURED],
        status=domain.REFUNDED,
    )
    domain.require("refund", current.status)
    return current


# --- entry points ----------------------------------------------------------------------------


class LocalPayments:
    """The payment port, served in this process: an entry point to the use cases above. It owns
    the processor it talks to (a test may swap `processor` for one of its own)."""

    def __init__(self, context: ServiceContext, processor: CardProcessor | None = None) -> None:
        self.context = context
        self.processor: CardProcessor = processor or SimulatedProcessor(_processor_file(context))
        self.processor_timeout = context.setting("processor_timeout_seconds", 2.0)

    @property
    def processor_calls(self) -> ProcessorCalls:
        return ProcessorCalls(self.processor, self.processor_timeout)

    async def authorise(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> PaymentOutcome:
        return await authorise(
            self.context, self.processor_calls, order_id, customer_id, amount, card_token
        )

    async def capture(self, order_id: str) -> PaymentOutcome:
        return await capture(self.context, self.processor_calls, order_id)

    async def void(self, order_id: str) -> PaymentOutcome | None:
        return await void(self.context, self.processor_calls, order_id)


def own_port(context: ServiceContext) -> LocalPayments:
    """Payment's own port, with the processor it owns: for payment's routes and worker."""
    payments = context.port(PaymentPort)
    assert isinstance(payments, LocalPayments)  # a service's own port is always served locally
    return payments


def _processor_file(context: ServiceContext) -> Path:
    """Where the simulated processor keeps its state: a file of its own beside the system's
    data, never the payment database (it stands for a system outside the shop)."""
    configured = context.settings.get("processor_state")
    if configured:
        return Path(str(configured))
    return context.system.state_dir / "card-processor.db"


async def settle_captures_in_doubt_once(context: ServiceContext) -> None:
    """One round of the worker below, for a unit with no background work (a function's tick)."""
    payments = own_port(context)
    await settle_in_doubt(
        context, payments.processor_calls, older_than_seconds=2 * payments.processor_timeout
    )


async def settle_captures_in_doubt(context: ServiceContext) -> None:
    """Payment's worker: a capture left without an answer (the unit was killed while the
    processor decided) is settled by asking the processor again, at start and then now and then,
    whether or not the saga that asked for it is still there to ask again."""
    payments = own_port(context)
    grace = 2 * payments.processor_timeout  # longer than any capture that is still running
    while True:
        await asyncio.sleep(grace)
        try:
            await settle_in_doubt(context, payments.processor_calls, older_than_seconds=grace)
        except Exception as error:  # the database is away: try at the next round
            context.log.warning("cannot settle captures in doubt", error=str(error))
        await asyncio.sleep(context.setting("settle_seconds", 5.0))
