"""Catalog rules: what a valid product is, and how stock may change. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cleave.errors import Conflict, Unprocessable
from cleave.money import is_known_currency

SKU_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,63}$")


@dataclass(frozen=True)
class ProductDraft:
    sku: str
    name: str
    description: str
    price_amount: int
    currency: str
    stock: int


def validate_product(draft: ProductDraft) -> ProductDraft:
    if not SKU_PATTERN.match(draft.sku):
        raise Unprocessable(
            f"sku {draft.sku!r} must be 2-64 upper-case letters, digits or dashes",
            code="invalid-sku",
        )
    if not draft.name.strip():
        raise Unprocessable("a product needs a name", code="invalid-product")
    if draft.price_amount < 0:
        raise Unprocessable("a price cannot be negative", code="invalid-price")
    if not is_known_currency(draft.currency):
        raise Unprocessable(f"unknown currency {draft.currency!r}", code="invalid-currency")
    if draft.stock < 0:
        raise Unprocessable("stock cannot be negative", code="invalid-stock")
    return draft


def adjusted_stock(current: int, delta: int) -> int:
    """Stock after an adjustment; it never goes below zero."""
    if current + delta < 0:
        raise Conflict(
            f"cannot remove {-delta} units: only {current} in stock", code="stock-would-go-negative"
        )
    return current + delta


def merge_lines(lines: list[tuple[str, int]]) -> dict[str, int]:
    """Quantities per sku, so an order naming a sku twice reserves the sum once."""
    merged: dict[str, int] = {}
    for sku, quantity in lines:
        merged[sku] = merged.get(sku, 0) + quantity
    return merged
