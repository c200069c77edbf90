"""The payment service, declared once."""

from __future__ import annotations

from pathlib import Path

from cleave.service import PortBinding, Service
from shop.payment import api, handlers, store
from shop.payment.contract import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentPort,
    PaymentRefunded,
    PaymentVoided,
    payment_pb2,
)

service = Service(
    name="payment",
    description="Card payments against a simulated processor; one payment per order.",
    metadata=store.metadata,
    migrations=Path(__file__).parent / "migrations",
    router=api.router,
    publishes=(PaymentAuthorized, PaymentCaptured, PaymentVoided, PaymentRefunded),
    port=PortBinding(PaymentPort, handlers.LocalPayments, rpc=payment_pb2),
    workers=(handlers.settle_captures_in_doubt,),
    ticks=(handlers.settle_captures_in_doubt_once,),
)
