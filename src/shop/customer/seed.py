"""Demo customers with fixed ids, so the README's `cleave token --customer alice` just works."""

from __future__ import annotations

from cleave.service import ServiceContext
from shop.customer import handlers, store
from shop.customer.domain import Address, Profile

DEMO_CUSTOMERS = [
    (
        Profile("alice", "alice@example.com", "Alice Example"),
        Address("home", "1 Main St", None, "Utrecht", "3511", "NL"),
    ),
    (
        Profile("bob", "bob@example.com", "Bob Example"),
        Address("home", "2 Canal Rd", None, "Amsterdam", "1012", "NL"),
    ),
    (
        Profile("carol", "carol@example.com", "Carol Example"),
        Address("work", "3 Quay", "Floor 2", "Rotterdam", "3011", "NL"),
    ),
]


async def seed(context: ServiceContext) -> int:
    added = 0
    async with context.unit_of_work() as uow:
        for profile, address in DEMO_CUSTOMERS:
            if await store.get_customer(uow.connection, profile.id) is None:
                await handlers.create_customer(uow, profile)
                await handlers.add_address(uow, profile.id, address)
                added += 1
    return added
