"""The next release of ordering, as a team would ship it, for the rolling upgrade (F10).

Two changes the contract gates call compatible: `order_confirmed.v1` gains an optional field
(`items`, the number of items ordered), and a `.v2` of the event, where `items` is required, is
published beside `.v1` until no consumer reads `.v1` any more. Consumers still at the current
release (customer reads `.v1` and ignores fields it does not know) must keep working through the
upgrade and the rollback. Not a service of `cleave.toml`: the fault run points `ordering` at it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from cleave.money import Money
from cleave.saga import SagaDefinition, SagaState
from cleave.service import ServiceContext, UnitOfWork
from shop.ordering import saga, store
from shop.ordering.contract import OrderConfirmed
from shop.ordering.domain import CONFIRMED
from shop.ordering.service import service as current

IMPORT_PATH = "bench.faults.next_release:service"


class OrderConfirmedWithItems(OrderConfirmed):
    """`.v1` as the next release publishes it: one new optional field."""

    event_type: ClassVar[str] = OrderConfirmed.event_type

    items: int | None = None


class OrderConfirmedV2(OrderConfirmed):
    event_type: ClassVar[str] = "shop.ordering.order_confirmed.v2"

    items: int


def definition(context: ServiceContext) -> SagaDefinition:
    async def on_completed(uow: UnitOfWork, state: SagaState) -> None:
        if await store.finish(uow.connection, state.id, CONFIRMED, None):
            fields = {
                "order_id": state.id,
                "customer_id": state.data["customer_id"],
                "total": Money(amount=state.data["total"], currency=state.data["currency"]),
                "items": sum(state.data["lines"].values()),
            }
            uow.publish(OrderConfirmedWithItems(**fields), subject=state.id)
            uow.publish(OrderConfirmedV2(**fields), subject=state.id)

    return replace(saga.definition(context), on_completed=on_completed)


async def run(context: ServiceContext) -> None:
    await saga.runner(context, definition(context)).run()


async def run_due(context: ServiceContext) -> None:
    await saga.runner(context, definition(context)).run_due()


service = replace(
    current,
    publishes=(*current.publishes, OrderConfirmedV2),
    workers=(run,),
    ticks=(run_due,),
)
