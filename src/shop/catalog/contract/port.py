"""The catalog port: what other services may ask of the catalog, local or remote alike.

Every command is idempotent per order, so a caller that retries or resumes after a crash never
reserves twice.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from cleave.errors import Unprocessable


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=1000)


class PricedLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    name: str
    quantity: int
    unit_price: int
    currency: str


class UnknownProducts(Unprocessable):
    def __init__(self, skus: list[str]) -> None:
        super().__init__(f"unknown products: {', '.join(skus)}", code="unknown-sku", skus=skus)
        self.skus = skus


class OutOfStock(Unprocessable):
    def __init__(self, skus: list[str]) -> None:
        super().__init__(f"not enough stock for: {', '.join(skus)}", code="out-of-stock", skus=skus)
        self.skus = skus


class CatalogPort(Protocol):
    async def price_lines(self, lines: list[OrderLine]) -> list[PricedLine]:
        """Current prices; raises UnknownProducts naming every sku the catalog does not know."""

    async def reserve_stock(self, order_id: str, lines: list[OrderLine]) -> None:
        """Take stock for an order, all lines or none; raises OutOfStock or UnknownProducts."""

    async def release_stock(self, order_id: str) -> None:
        """Give an order's reserved stock back (a compensation); a no-op if nothing is held."""

    async def commit_stock(self, order_id: str) -> None:
        """Make an order's reservation final: the goods are sold."""
