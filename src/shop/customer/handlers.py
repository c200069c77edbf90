"""Customer use cases, event handlers and the local implementation of its port. Each takes the
unit of work its entry point opens: a route, or for an event the chassis, with the event's inbox
row (docs/handlers.md)."""

from __future__ import annotations

import uuid

from cleave.clock import utcnow
from cleave.errors import Conflict, NotFound
from cleave.service import ServiceContext, UnitOfWork
from shop.customer import store
from shop.customer.contract import CustomerCreated, CustomerInfo
from shop.customer.domain import Address, Profile, validate_address, validate_profile
from shop.identity.contract import UserRegistered
from shop.ordering.contract import OrderConfirmed


async def create_customer(uow: UnitOfWork, profile: Profile) -> str:
    profile = validate_profile(profile)
    if await store.get_customer(uow.connection, profile.id) is not None:
        raise Conflict(f"customer {profile.id} exists already", code="customer-exists")
    if await store.find_by_email(uow.connection, profile.email) is not None:
        raise Conflict("that email belongs to another customer", code="email-taken")
    await store.insert_customer(uow.connection, profile.id, profile.email, profile.name)
    uow.publish(
        CustomerCreated(customer_id=profile.id, email=profile.email, name=profile.name),
        subject=profile.id,
    )
    return profile.id


async def add_address(uow: UnitOfWork, customer_id: str, address: Address) -> str:
    address = validate_address(address)
    if await store.get_customer(uow.connection, customer_id) is None:
        raise NotFound(f"no customer {customer_id}")
    address_id = uuid.uuid4().hex
    await store.insert_address(
        uow.connection,
        store.AddressRow(
            id=address_id,
            customer_id=customer_id,
            label=address.label,
            line1=address.line1,
            line2=address.line2,
            city=address.city,
            postal_code=address.postal_code,
            country=address.country,
            created_at=utcnow(),
        ),
    )
    return address_id


async def on_user_registered(event: UserRegistered, uow: UnitOfWork) -> None:
    """A new account gets its customer profile, under the same id as the account's `sub`."""
    if await store.get_customer(uow.connection, event.user_id) is not None:
        return
    if await store.find_by_email(uow.connection, event.email.lower()) is not None:
        # Retrying cannot help: an operator must reconcile the two records.
        uow.context.log.warning("a registered email already has a profile", user=event.user_id)
        return
    await create_customer(uow, Profile(id=event.user_id, email=event.email, name=event.name))


async def on_order_confirmed(event: OrderConfirmed, uow: UnitOfWork) -> None:
    """A projection: how many orders each customer has had confirmed."""
    if not await store.count_confirmed_order(uow.connection, event.customer_id):
        uow.context.log.warning(
            "order confirmed for an unknown customer", customer=event.customer_id
        )


class LocalCustomers:
    """The customer port, served in this process."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context

    async def get_customer(self, customer_id: str) -> CustomerInfo | None:
        async with self.context.read() as connection:
            row = await store.get_customer(connection, customer_id)
        return None if row is None else CustomerInfo(id=row.id, email=row.email, name=row.name)
