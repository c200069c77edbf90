"""Ordering's pacts as a consumer: every port call its saga and its API make of catalog, customer
and payment (V4 synchronous messages, the JSON of each call as the port's signature encodes it),
with the answers the saga branches on. Each answer is decoded the way ordering decodes it, into
the port's own return type or the Problem it raises, and checked for what ordering reads."""

from __future__ import annotations

from typing import Any

import pytest
from pact import Pact, match

from cleave.contracts.messages import port_methods, read_answer
from cleave.errors import Conflict
from cleave.money import Money
from shop.catalog.contract import CatalogPort, OrderLine, OutOfStock, PricedLine, UnknownProducts
from shop.customer.contract import CustomerInfo, CustomerPort
from shop.payment.contract import PaymentFailed, PaymentOutcome, PaymentPort
from tests.contract.pactfiles import Call, answers, expect_call, write_pact

ORDER = "o-pact-1"
MUG = OrderLine(sku="MUG-CLASSIC", quantity=2)
TEN_EUROS = Money(amount=1000, currency="EUR")


def problem(kind: type, code: str, status: int, **extensions: Any) -> dict[str, Any]:
    return {
        "problem": {
            "type": kind.problem_type(),  # type: ignore[attr-defined]
            "code": code,
            "status": status,
            "extensions": extensions,
        }
    }


def outcome(status: str, order_id: str = ORDER) -> dict[str, Any]:
    return {
        "result": {
            "payment_id": match.str("p-1"),
            "order_id": order_id,
            "status": status,
            "amount": {"amount": match.int(1000), "currency": match.str("EUR")},
        }
    }


def _pact(consumer: str, provider: str, protocol: type, calls: list[Call]) -> Pact:
    pact = Pact(consumer, provider)
    for call in calls:
        expect_call(pact, protocol, call)
    return pact


def _decoded(pact: Pact, protocol: type, call: Call) -> Any:
    """The answer as ordering gets it from the port: its value, or the Problem it raises."""
    answer = answers(pact)[f"{call.method} {call.scenario}"]
    try:
        return read_answer(protocol, call.method, answer)
    except Exception as error:
        return error


CATALOG = [
    Call(
        "of known products",
        "price_lines",
        {"lines": [MUG]},
        {
            "result": match.each_like(
                {
                    "sku": "MUG-CLASSIC",
                    "name": match.str("Classic mug"),
                    "quantity": 2,
                    "unit_price": match.int(1200),
                    "currency": match.str("EUR"),
                },
                min=1,
            )
        },
    ),
    Call(
        "of an unknown product",
        "price_lines",
        {"lines": [OrderLine(sku="NO-SUCH-SKU", quantity=1)]},
        problem(UnknownProducts, "unknown-sku", 422, skus=["NO-SUCH-SKU"]),
    ),
    Call("in stock", "reserve_stock", {"order_id": ORDER, "lines": [MUG]}, {"result": None}),
    Call(
        "beyond the stock",
        "reserve_stock",
        {"order_id": "o-pact-2", "lines": [OrderLine(sku="SOLD-OUT-VINYL", quantity=1)]},
        problem(OutOfStock, "out-of-stock", 422, skus=["SOLD-OUT-VINYL"]),
    ),
    Call(
        "of a reservation",
        "release_stock",
        {"order_id": ORDER},
        {"result": None},
        after=(("reserve_stock", {"order_id": ORDER, "lines": [MUG]}),),
    ),
    Call(
        "of a reservation",
        "commit_stock",
        {"order_id": ORDER},
        {"result": None},
        after=(("reserve_stock", {"order_id": ORDER, "lines": [MUG]}),),
    ),
]

CUSTOMER = [
    Call(
        "who exists",
        "get_customer",
        {"customer_id": "alice"},
        {"result": {"id": "alice", "email": match.str("alice@example.com"), "name": match.str()}},
    ),
    Call("who does not exist", "get_customer", {"customer_id": "nobody"}, {"result": None}),
]

AUTHORISED = (
    (
        "authorise",
        {"order_id": ORDER, "customer_id": "alice", "amount": TEN_EUROS, "card_token": "tok_visa"},
    ),
)
PAYMENT = [
    Call("with an approving card", "authorise", dict(AUTHORISED[0][1]), outcome("authorized")),
    Call(
        "with a declined card",
        "authorise",
        {**AUTHORISED[0][1], "order_id": "o-pact-2", "card_token": "tok_decline"},
        problem(PaymentFailed, "payment-failed", 422, reason="declined"),
    ),
    Call("of an authorisation", "capture", {"order_id": ORDER}, outcome("captured"), AUTHORISED),
    Call(
        "of an authorisation",
        "void",
        {"order_id": "o-pact-3"},
        outcome("voided", "o-pact-3"),
        ((AUTHORISED[0][0], {**AUTHORISED[0][1], "order_id": "o-pact-3"}),),
    ),
]


def test_ordering_calls_catalog() -> None:
    pact = _pact("ordering", "catalog", CatalogPort, CATALOG)
    priced, unknown, reserved, out_of_stock, released, committed = (
        _decoded(pact, CatalogPort, call) for call in CATALOG
    )
    # What the saga reads of a priced line: the currency, the unit price and the quantity.
    assert all(isinstance(line, PricedLine) for line in priced)
    assert {line.currency for line in priced} == {"EUR"}
    assert sum(line.unit_price * line.quantity for line in priced) == 2400
    assert isinstance(unknown, UnknownProducts)
    assert unknown.skus == ["NO-SUCH-SKU"]
    assert isinstance(out_of_stock, OutOfStock)
    assert (reserved, released, committed) == (None, None, None)
    write_pact(pact)


def test_ordering_calls_customer() -> None:
    pact = _pact("ordering", "customer", CustomerPort, CUSTOMER)
    known, unknown = (_decoded(pact, CustomerPort, call) for call in CUSTOMER)
    assert isinstance(known, CustomerInfo)
    assert known.id == "alice"
    assert unknown is None  # ordering refuses an order for a customer who does not exist
    write_pact(pact)


def test_ordering_calls_payment() -> None:
    pact = _pact("ordering", "payment", PaymentPort, PAYMENT)
    authorised, declined, captured, voided = (_decoded(pact, PaymentPort, c) for c in PAYMENT)
    assert isinstance(authorised, PaymentOutcome)
    assert isinstance(declined, PaymentFailed)
    assert declined.reason == "declined"  # the saga's rejection reason: payment_declined
    assert not isinstance(captured, Conflict)
    assert isinstance(captured, PaymentOutcome)
    assert isinstance(voided, PaymentOutcome)
    assert (captured.status, voided.status) == ("captured", "voided")
    write_pact(pact)


@pytest.mark.parametrize(
    ("protocol", "calls"),
    [(CatalogPort, CATALOG), (CustomerPort, CUSTOMER), (PaymentPort, PAYMENT)],
)
def test_every_port_method_has_a_pact(protocol: type, calls: list[Call]) -> None:
    assert {call.method for call in calls} == set(port_methods(protocol))
