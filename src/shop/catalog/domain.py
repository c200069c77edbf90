"""Catalog rules: what a valid product is, and how stock may change. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cleave.errors import Conflict, Unprocessable
from cleave.money import is_known_currency

SKU_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9-]{1,63}")  # the whole SKU: matched with fullmatch
# A unit price at most this (a hundred million in a two-decimal currency): an order of at most
# 50 lines of 1000 then totals within MAX_AMOUNT, so no total can overflow.
MAX_PRICE = 10**10
# Stock at most a billion units: it fits a 32-bit column, and any sum of reservations of it too.
MAX_STOCK = 10**9


@dataclass(frozen=True)
class ProductDraft:
    sku: str
    name: str
    description: str
    price_amount: int
    currency: str
    stock: int


def validate_product(draft: ProductDraft) -> ProductDraft:
    if not SKU_PATTERN.fullmatch(draft.sku):
        raise Unprocessable(
            f"sku {draft.sku!r} must be 2-64 upper-case letters, digits or dashes",
            code="invalid-sku",
        )
    if not draft.name.strip():
        raise Unprocessable("a product needs a name", code="invalid-product")
    if not 0 <= draft.price_amount <= MAX_PRICE:
        raise Unprocessable(
            f"a price is between 0 and {MAX_PRICE} minor units", code="invalid-price"
        )
    if not is_known_currency(draft.currency):
        raise Unprocessable(f"unknown currency {draft.currency!r}", code="invalid-currency")
    if not 0 <= draft.stock <= MAX_STOCK:
        raise Unprocessable(f"stock is between 0 and {MAX_STOCK}", code="invalid-stock")
    return draft


def adjusted_stock(current: int, delta: int) -> int:
    """Stock after an adjustment; it never goes below zero."""
    if current + delta < 0:
        raise Conflict(
            f"cannot remove {-delta} units: only {current} in stock", code="stock-would-go-negative"
        )
    if current + delta > MAX_STOCK:
        raise Unprocessable(
            f"stock would be {current + delta}, above the most a product holds ({MAX_STOCK})",
            code="invalid-stock",
        )
    return current + delta


def merge_lines(lines: list[tuple[str, int]]) -> dict[str, int]:
    """Quantities per sku, so an order naming a sku twice reserves the sum once."""
    merged: dict[str, int] = {}
    for sku, quantity in lines:
        merged[sku] = merged.get(sku, 0) + quantity
    return merged
