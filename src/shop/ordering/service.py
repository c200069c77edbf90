"""The ordering service, declared once."""

from __future__ import annotations

from pathlib import Path

from cleave.service import Service
from shop.catalog.contract import CatalogPort
from shop.customer.contract import CustomerPort
from shop.ordering import api, saga, store
from shop.ordering.contract import OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected
from shop.payment.contract import PaymentPort

service = Service(
    name="ordering",
    description="Orders, and the saga that takes each one to confirmed, rejected or cancelled.",
    metadata=store.metadata,
    migrations=Path(__file__).parent / "migrations",
    router=api.router,
    publishes=(OrderPlaced, OrderConfirmed, OrderRejected, OrderCancelled),
    calls=(CatalogPort, CustomerPort, PaymentPort),
    workers=(saga.run,),
    ticks=(saga.run_due,),
)
