"""Customer's public face: the port other services call, and the events it publishes."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict

from cleave.events import Event


class CustomerInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    email: str
    name: str


class CustomerPort(Protocol):
    async def get_customer(self, customer_id: str) -> CustomerInfo | None:
        """The customer, or None when no such customer exists."""


class CustomerCreated(Event):
    event_type = "shop.customer.customer_created.v1"

    customer_id: str
    email: str
    name: str


__all__ = ["CustomerCreated", "CustomerInfo", "CustomerPort"]
