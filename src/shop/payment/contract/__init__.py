"""Payment's public face: the port the order saga calls, and the events payment publishes.

Every command names its order, and an order has exactly one payment: a command that is redelivered
or retried returns the payment's current outcome and never charges twice.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from cleave.errors import Unprocessable
from cleave.events import Event
from cleave.money import Money

PaymentStatus = Literal[
    "authorizing", "authorized", "declined", "capturing", "captured", "voided", "refunded"
]


def card_hint(card_token: str) -> str:
    """What any service may keep of a card token: its last four characters, and nothing at all
    of a token so short that those would be the whole of it."""
    return card_token[-4:] if len(card_token) > 4 else "****"


class PaymentOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    payment_id: str
    order_id: str
    status: PaymentStatus
    amount: Money
    reason: str | None = None


class PaymentFailed(Unprocessable):
    """The card was not charged. `reason` is machine-readable: declined, insufficient_funds,
    invalid_card, processor_timeout, or voided (the order was cancelled meanwhile)."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(
            detail or f"payment failed: {reason}", code="payment-failed", reason=reason
        )
        self.reason = reason


class PaymentPort(Protocol):
    async def authorise(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> PaymentOutcome:
        """Hold `amount` on the card; PaymentFailed when the processor says no or times out."""

    async def capture(self, order_id: str) -> PaymentOutcome:
        """Take the authorised amount. Idempotent. `captured` is answered only once the
        processor has taken the money; Conflict when it refused (the hold is gone, nothing was
        taken), ServiceUnavailable when it did not answer (ask again: the same capture)."""

    async def void(self, order_id: str) -> PaymentOutcome | None:
        """Cancel an authorisation (a compensation). Idempotent; None if the order has no payment.

        A void also wins over an authorisation still in flight: it is then voided when it lands."""


class PaymentAuthorized(Event):
    event_type = "shop.payment.payment_authorized.v1"

    payment_id: str
    order_id: str
    amount: Money


class PaymentCaptured(Event):
    event_type = "shop.payment.payment_captured.v1"

    payment_id: str
    order_id: str
    amount: Money


class PaymentVoided(Event):
    event_type = "shop.payment.payment_voided.v1"

    payment_id: str
    order_id: str


class PaymentRefunded(Event):
    event_type = "shop.payment.payment_refunded.v1"

    payment_id: str
    order_id: str
    amount: Money


__all__ = [
    "PaymentAuthorized",
    "PaymentCaptured",
    "PaymentFailed",
    "PaymentOutcome",
    "PaymentPort",
    "PaymentRefunded",
    "PaymentStatus",
    "PaymentVoided",
]
