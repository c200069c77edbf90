"""The customer service, declared once."""

from __future__ import annotations

from pathlib import Path

from cleave.service import PortBinding, Service, Subscription
from shop.customer import api, handlers, seed, store
from shop.customer.contract import CustomerCreated, CustomerPort, customer_pb2
from shop.identity.contract import UserRegistered
from shop.ordering.contract import OrderConfirmed

service = Service(
    name="customer",
    description="Customer profiles and shipping addresses.",
    metadata=store.metadata,
    migrations=Path(__file__).parent / "migrations",
    router=api.router,
    publishes=(CustomerCreated,),
    subscriptions=(
        Subscription(OrderConfirmed, handlers.on_order_confirmed, name="on_order_confirmed"),
        Subscription(UserRegistered, handlers.on_user_registered, name="on_user_registered"),
    ),
    port=PortBinding(CustomerPort, handlers.LocalCustomers, rpc=customer_pb2),
    seed=seed.seed,
)
