"""The place-order saga: price, reserve stock, authorise, capture, commit; compensate on failure.

It is orchestrated by ordering and persisted in ordering's database (the chassis saga log). Every
call goes through the other service's port, so it is the same code whether catalog and payment run
in this process or in another one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cleave.errors import Conflict
from cleave.money import MAX_AMOUNT, Money
from cleave.saga import SagaDefinition, SagaRunner, SagaState, Step, StepFailed
from cleave.service import ServiceContext, UnitOfWork
from shop.catalog.contract import CatalogPort, OrderLine, OutOfStock, UnknownProducts
from shop.ordering import store
from shop.ordering.contract import OrderCancelled, OrderConfirmed, OrderRejected
from shop.ordering.domain import CONFIRMED, REJECTED, outcome_of_failure
from shop.payment.contract import PaymentFailed, PaymentPort

NAME = "place_order"


def _lines(state: SagaState) -> list[OrderLine]:
    return [OrderLine(sku=sku, quantity=quantity) for sku, quantity in state.data["lines"].items()]


def definition(context: ServiceContext) -> SagaDefinition:
    catalog = context.port(CatalogPort)
    payments = context.port(PaymentPort)

    async def price_lines(state: SagaState) -> Mapping[str, Any]:
        try:
            priced = await catalog.price_lines(_lines(state))
        except UnknownProducts as error:
            raise StepFailed("unknown_sku") from error
        currencies = {line.currency for line in priced}
        if len(currencies) != 1:
            raise StepFailed("mixed_currencies")
        total = sum(line.unit_price * line.quantity for line in priced)
        if total > MAX_AMOUNT:  # catalog's price bound keeps this from happening; never stored
            raise StepFailed("total_too_large")
        return {
            "priced": [line.model_dump() for line in priced],
            "total": total,
            "currency": currencies.pop(),
        }

    async def reserve_stock(state: SagaState) -> None:
        try:
            await catalog.reserve_stock(state.id, _lines(state))
        except OutOfStock as error:
            raise StepFailed("out_of_stock") from error
        except UnknownProducts as error:
            raise StepFailed("unknown_sku") from error

    async def release_stock(state: SagaState) -> None:
        await catalog.release_stock(state.id)

    async def authorise_payment(state: SagaState) -> Mapping[str, Any]:
        amount = Money(amount=state.data["total"], currency=state.data["currency"])
        try:
            await payments.authorise(
                state.id, state.data["customer_id"], amount, state.data["card_token"]
            )
        except PaymentFailed as error:
            raise StepFailed(f"payment_{error.reason}") from error
        return {"card_token": None}  # authorised: the saga no longer needs, so no longer keeps, it

    async def void_payment(state: SagaState) -> None:
        await payments.void(state.id)

    async def capture_payment(state: SagaState) -> None:
        try:
            await payments.capture(state.id)
        except Conflict as error:
            raise StepFailed("payment_capture_refused") from error

    async def commit_stock(state: SagaState) -> None:
        await catalog.commit_stock(state.id)

    async def on_progress(uow: UnitOfWork, state: SagaState) -> None:
        if "priced" in state.data and not state.data.get("prices_recorded"):
            await store.set_priced(
                uow.connection,
                state.id,
                [
                    store.LinePrice(line["sku"], line["name"], line["unit_price"])
                    for line in state.data["priced"]
                ],
                state.data["total"],
                state.data["currency"],
            )
            state.data["prices_recorded"] = True

    async def on_completed(uow: UnitOfWork, state: SagaState) -> None:
        if await store.finish(uow.connection, state.id, CONFIRMED, None):
            total = Money(amount=state.data["total"], currency=state.data["currency"])
            uow.publish(
                OrderConfirmed(
                    order_id=state.id, customer_id=state.data["customer_id"], total=total
                ),
                subject=state.id,
            )

    async def on_failed(uow: UnitOfWork, state: SagaState) -> None:
        status, reason = outcome_of_failure(state.failed_step, state.reason)
        if await store.finish(uow.connection, state.id, status, reason):
            event = OrderRejected if status == REJECTED else OrderCancelled
            uow.publish(
                event(order_id=state.id, customer_id=state.data["customer_id"], reason=reason),
                subject=state.id,
            )

    deadline = context.setting("step_deadline_seconds", 5.0)
    return SagaDefinition(
        name=NAME,
        steps=[
            Step("price_lines", price_lines, deadline_seconds=deadline),
            Step("reserve_stock", reserve_stock, release_stock, deadline_seconds=deadline),
            Step("authorise_payment", authorise_payment, void_payment, deadline_seconds=deadline),
            # The pivot: once the money is taken the saga only goes forward.
            Step("capture_payment", capture_payment, deadline_seconds=deadline, retriable=True),
            Step("commit_stock", commit_stock, deadline_seconds=deadline, retriable=True),
        ],
        on_completed=on_completed,
        on_failed=on_failed,
        on_progress=on_progress,
        forward_only=frozenset({"card_token"}),  # a declined or failed order keeps no token
    )


def runner(context: ServiceContext, saga: SagaDefinition | None = None) -> SagaRunner:
    """The order saga's runner (of `saga`, by default this release's), with the settings."""
    lease = context.settings.get("lease_seconds")
    return SagaRunner(
        context,
        saga or definition(context),
        deadline_seconds=context.setting("step_deadline_seconds", 5.0),
        retry_seconds=context.setting("retry_seconds", 0.2),
        max_retry_seconds=context.setting("max_retry_seconds", 10.0),
        max_attempts=int(context.setting("max_step_attempts", 10)),
        lease_seconds=float(lease) if lease is not None else None,
    )


async def run(context: ServiceContext) -> None:
    """The saga worker: advances every pending order until the service stops."""
    await runner(context).run()


async def run_due(context: ServiceContext) -> None:
    """One tick of the saga worker: advances every order due now, then returns."""
    await runner(context).run_due()
