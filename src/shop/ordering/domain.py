"""Ordering rules: what a valid order is, and how its saga's outcome becomes its final state."""

from __future__ import annotations

from dataclasses import dataclass

from cleave.errors import Unprocessable

PENDING, CONFIRMED, REJECTED, CANCELLED = "pending", "confirmed", "rejected", "cancelled"
TERMINAL = frozenset({CONFIRMED, REJECTED, CANCELLED})
MAX_LINES = 50

# What the shop decided: the order could never be served as asked, so it is rejected. Anything
# else that stops an order (a card refused, a service that did not answer) cancels it.
_VERDICTS = frozenset({"unknown_sku", "out_of_stock", "mixed_currencies", "total_too_large"})

# Saga reasons spelled for clients: stable, machine-readable, free of step names where clearer.
# A step that timed out or could not reach its service is never a verdict on the order.
_REASONS = {
    "price_lines_timeout": "catalog_unavailable",
    "price_lines_unavailable": "catalog_unavailable",
    "reserve_stock_timeout": "catalog_unavailable",
    "reserve_stock_unavailable": "catalog_unavailable",
    "authorise_payment_timeout": "payment_timeout",
    "authorise_payment_unavailable": "payment_unavailable",
    "payment_processor_timeout": "payment_timeout",
}
# Reasons that say nothing about the order itself: placing it again may well succeed.
RETRYABLE = frozenset({"catalog_unavailable", "payment_unavailable", "payment_timeout"})


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
    spelled = reason or "unknown"
    status = REJECTED if spelled in _VERDICTS else CANCELLED
    return status, _REASONS.get(spelled, spelled)


def is_retryable(reason: str | None) -> bool:
    """Whether an order ended for a passing reason, so the customer may simply place it again."""
    return reason in RETRYABLE
