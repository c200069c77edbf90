"""Money on the wire: an integer amount in minor units and an ISO 4217 currency code."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# The currencies the simulated world trades in, with their minor-unit exponent (ISO 4217).
MINOR_UNITS = {"EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "SEK": 2, "JPY": 0}

# The largest amount anywhere, in minor units: a 64-bit column holds it with room to spare, so
# no sum computed of bounded amounts can overflow a database integer.
MAX_AMOUNT = 10**15

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])]


class Money(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount: int = Field(ge=0, le=MAX_AMOUNT, description="In minor units: 1999 is 19.99 EUR.")
    currency: Currency


class MoneyIn(Money):
    """Money in a request body: nothing but the amount and currency is accepted."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def is_known_currency(code: str) -> bool:
    return code in MINOR_UNITS
