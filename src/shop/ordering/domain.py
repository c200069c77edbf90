"""Ordering rules: what a valid order is, and how its saga's outcome becomes its final state."""

from __future__ import annotations

from dataclasses import dataclass

from cleave.errors import Unprocessable

PENDING, CONFIRMED, REJECTED, CANCELLED = "pending", "confirmed", "rejected", "cancelled"
TERMINAL = frozenset({CONFIRMED, REJECTED, CANCELLED})
MAX_LINES = 50

# Steps whose failure means the order could never be served as asked: rejected, not cancelled.
_REJECTING_STEPS = frozenset({"price_lines", "reserve_stock"})

# Saga reasons spelled for clients: stable, machine-readable, free of step names where clearer.
_REASONS = {
    "authorise_payment_timeout": "payment_timeout",
    "payment_processor_timeout": "payment_timeout",
}


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


def validate_lines(lines: list[Line]) -> list[Line]:
    """Non-empty, at most MAX_LINES, and one line per sku (repeated skus are summed)."""
    if not lines:
        raise Unprocessable("an order needs at least one line", code="empty-order")
    merged: dict[str, int] = {}
    for line in lines:
        if line.quantity <= 0:
            raise Unprocessable(f"quantity of {line.sku} must be positive", code="invalid-quantity")
        merged[line.sku] = merged.get(line.sku, 0) + line.quantity
    if len(merged) > MAX_LINES:
        raise Unprocessable(f"an order has at most {MAX_LINES} lines", code="too-many-lines")
    return [Line(sku, quantity) for sku, quantity in merged.items()]


def outcome_of_failure(failed_step: str | None, reason: str | None) -> tuple[str, str]:
    """The terminal status and client-facing reason of an order whose saga failed."""
    status = REJECTED if failed_step in _REJECTING_STEPS else CANCELLED
    spelled = reason or "unknown"
    return status, _REASONS.get(spelled, spelled)


def card_hint(card_token: str) -> str:
    """What an order keeps of the card: never the token itself."""
    return card_token[-4:] if len(card_token) >= 4 else "****"
