"""Storefront rules: what a cart may hold, how carts merge on sign-in, and how the shop speaks to
a person about stock, money and orders. No I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cleave.errors import Unprocessable
from cleave.money import MINOR_UNITS

MAX_QUANTITY = 20  # of one product in one cart
MAX_LINES = 30  # different products in one cart (ordering takes up to 50 lines)
FEW_LEFT = 10  # at or below this, the product page says how many are left
SKU_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,63}$")


class SoldOut(Unprocessable):
    def __init__(self, sku: str) -> None:
        super().__init__(f"{sku} is sold out", code="sold-out", sku=sku)


class CartFull(Unprocessable):
    def __init__(self) -> None:
        super().__init__(f"a cart holds at most {MAX_LINES} different products", code="cart-full")


@dataclass(frozen=True)
class LineChange:
    """A cart line's quantity after a change, and whether the shopper asked for more than that."""

    quantity: int
    capped: bool = False


def checked_sku(sku: str) -> str:
    if not SKU_PATTERN.match(sku):
        raise Unprocessable(f"{sku!r} is not a product code", code="invalid-sku")
    return sku


def _cap(wanted: int, in_stock: int) -> LineChange:
    allowed = min(MAX_QUANTITY, in_stock)
    return LineChange(min(wanted, allowed), capped=wanted > allowed)


def add_line(cart: Mapping[str, int], sku: str, quantity: int, *, in_stock: int) -> LineChange:
    """Adding `quantity` of `sku`: the line grows, never past what is in stock or MAX_QUANTITY."""
    checked_sku(sku)
    if quantity < 1:
        raise Unprocessable("add at least one", code="invalid-quantity")
    if in_stock <= 0:
        raise SoldOut(sku)
    if sku not in cart and len(cart) >= MAX_LINES:
        raise CartFull()
    return _cap(cart.get(sku, 0) + quantity, in_stock)


def change_line(sku: str, quantity: int, *, in_stock: int) -> LineChange:
    """Setting a line's quantity; 0 removes the line, and more than is in stock is capped."""
    checked_sku(sku)
    if quantity < 0:
        raise Unprocessable("a quantity cannot be negative", code="invalid-quantity")
    if quantity == 0:
        return LineChange(0)
    if in_stock <= 0:
        raise SoldOut(sku)
    return _cap(quantity, in_stock)


def merge_carts(customer: Mapping[str, int], visitor: Mapping[str, int]) -> dict[str, int]:
    """The customer's cart after signing in with a visitor's cart: quantities of the same product
    add up (to MAX_QUANTITY at most), the customer's lines come first, and lines past MAX_LINES
    are left out. Stock is checked again at checkout, as prices are."""
    merged = dict(customer)
    for sku, quantity in visitor.items():
        if sku in merged:
            merged[sku] = min(MAX_QUANTITY, merged[sku] + quantity)
        elif len(merged) < MAX_LINES:
            merged[sku] = min(MAX_QUANTITY, quantity)
    return merged


# --- how the shop speaks ----------------------------------------------------------------------

_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}


def format_money(amount: int, currency: str) -> str:
    """An amount in minor units as a person reads it: 1999 EUR is €19.99; unknown codes lead."""
    exponent = MINOR_UNITS.get(currency, 2)
    sign = "-" if amount < 0 else ""
    whole, minor = divmod(abs(amount), 10**exponent)
    number = f"{whole:,}" + (f".{minor:0{exponent}d}" if exponent else "")
    symbol = _SYMBOLS.get(currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{currency} {number}"


@dataclass(frozen=True)
class StockStatus:
    level: str  # in-stock, few-left or sold-out: a CSS class and a test hook
    label: str
    can_buy: int  # the most one cart line may hold now


def stock_status(stock: int) -> StockStatus:
    if stock <= 0:
        return StockStatus("sold-out", "Sold out", 0)
    allowed = min(stock, MAX_QUANTITY)
    if stock <= FEW_LEFT:
        return StockStatus("few-left", f"Only {stock} left", allowed)
    return StockStatus("in-stock", "In stock", allowed)


@dataclass(frozen=True)
class DemoCard:
    token: str
    label: str


# The simulated card processor decides by token; the page offers each outcome by name.
DEMO_CARDS = (
    DemoCard("tok_approve", "Demo card that is approved"),
    DemoCard("tok_decline", "Demo card that is declined"),
    DemoCard("tok_insufficient_funds", "Demo card with insufficient funds"),
    DemoCard("tok_timeout", "Demo card whose bank never answers"),
)
DEMO_TOKENS = frozenset(card.token for card in DEMO_CARDS)


def card_label(hint: str) -> str:
    """The card an order names by its last characters (`…rove`), as the checkout offered it."""
    ending = hint.lstrip("…")
    for card in DEMO_CARDS:
        if ending and card.token.endswith(ending):
            return card.label[0].lower() + card.label[1:]
    return f"card ending {ending}"


@dataclass(frozen=True)
class Outcome:
    status: str
    title: str
    message: str
    final: bool


_REASONS = {
    "payment_declined": "Your card was declined, so nothing was charged. "
    "You can try again with another card.",
    "payment_insufficient_funds": "Your card has insufficient funds, so nothing was charged. "
    "You can try again with another card.",
    "payment_timeout": "The bank did not answer in time, so nothing was charged. "
    "Please try again in a moment.",
    "payment_unavailable": "Payments are unavailable right now, so nothing was charged. "
    "Please try again later.",
    "out_of_stock": "Sorry: some of these products sold out before we could set them aside for "
    "you. Nothing was charged.",
    "unknown_sku": "A product in this order is no longer sold. Nothing was charged.",
}


def order_outcome(status: str, reason: str | None) -> Outcome:
    """An order's state in a shopper's words, never a machine code."""
    if status == "pending":
        return Outcome(
            status, "Placing your order…", "We are checking stock and your payment.", False
        )
    if status == "confirmed":
        return Outcome(status, "Order confirmed", "Thank you! Your order is confirmed.", True)
    words = _REASONS.get(reason or "")
    if words is None:
        words = "Something went wrong on our side, so nothing was charged. Please try again."
    title = "Order not accepted" if status == "rejected" else "Order cancelled"
    return Outcome(status, title, words, True)


def safe_return_path(path: str | None, default: str = "/") -> str:
    """Only a path on this site: never another host (`//evil`, `https://…`, `/\\evil`)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return default
    if any(ord(character) < 32 for character in path):
        return default
    return path


@dataclass(frozen=True)
class ShippingAddress:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = None


def shipping_address(fields: Mapping[str, str]) -> tuple[ShippingAddress | None, dict[str, str]]:
    """A shipping address from a form, or what is wrong with each field, in words."""
    values = {key: (fields.get(key) or "").strip() for key in _ADDRESS_LIMITS}
    errors = {
        key: f"Enter {label}."
        for key, (label, _limit) in _ADDRESS_LIMITS.items()
        if key != "line2" and not values[key]
    }
    for key, (label, limit) in _ADDRESS_LIMITS.items():
        if len(values[key]) > limit:
            errors[key] = f"Shorten {label} to {limit} characters."
    values["country"] = values["country"].upper()
    if values["country"] and not re.fullmatch(r"[A-Z]{2}", values["country"]):
        errors["country"] = "Enter the two-letter country code, like NL or DE."
    if errors:
        return None, errors
    return ShippingAddress(
        name=values["name"],
        line1=values["line1"],
        line2=values["line2"] or None,
        city=values["city"],
        postal_code=values["postal_code"],
        country=values["country"],
    ), {}


_ADDRESS_LIMITS = {
    "name": ("the recipient's name", 200),
    "line1": ("the street and number", 200),
    "line2": ("the second address line", 200),
    "city": ("the city", 100),
    "postal_code": ("the postal code", 20),
    "country": ("the country", 2),
}
