"""The payment service on a real database, its port called as the saga calls it (over gRPC in
the split): one payment per order, never charged twice, a void that wins over a late answer,
and who may see or refund which payment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select

from cleave.auth.tokens import DevIssuer
from cleave.config import SystemConfig
from cleave.data.tables import outbox
from cleave.errors import Conflict, NotFound
from cleave.money import Money
from cleave.runtime import Unit
from shop.payment import store
from shop.payment.contract import (
    PaymentCaptured,
    PaymentFailed,
    PaymentPort,
    PaymentRefunded,
    PaymentVoided,
)
from shop.payment.handlers import LocalPayments
from shop.payment.processor import Declined, SimulatedProcessor
from tests.conftest import WiredShop, eventually

Headers = Callable[[str], dict[str, str]]
PAYMENTS = "/api/payment/v1/payments"
PROBLEM = "application/problem+json"
TWELVE_EUROS = Money(amount=1200, currency="EUR")


def saga_port(wired: WiredShop) -> PaymentPort:
    """Payment's port as the order saga calls it: in-process in the monolith, gRPC in the split."""
    return wired.unit_of("ordering").ports.get(PaymentPort)


def port_of(unit: Unit) -> LocalPayments:
    """Payment's own port, in the unit that holds the service."""
    port = unit.ports.get(PaymentPort)
    assert isinstance(port, LocalPayments)
    return port


def processor_of(unit: Unit) -> SimulatedProcessor:
    processor = port_of(unit).processor
    assert isinstance(processor, SimulatedProcessor)
    return processor


async def published(unit: Unit, event_type: str, order_id: str) -> int:
    async with unit.context("payment").read() as connection:
        rows = await connection.execute(
            select(outbox.c.envelope).where(outbox.c.type == event_type)
        )
        return sum(f'"order_id":"{order_id}"' in row.envelope for row in rows)


async def processor_ref(unit: Unit, order_id: str) -> str | None:
    async with unit.context("payment").read() as connection:
        row = await store.by_order(connection, order_id)
    assert row is not None
    return str(row.processor_ref) if row.processor_ref else None


async def test_an_approved_card_is_authorised_and_shown_to_its_owner(
    wired: WiredShop, client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    payment_unit = wired.unit_of("payment")
    authorised = await saga_port(wired).authorise("o-1", "alice", TWELVE_EUROS, "tok_visa")
    assert (authorised.order_id, authorised.status, authorised.amount) == (
        "o-1",
        "authorized",
        TWELVE_EUROS,
    )
    listed = (await client.get(PAYMENTS, headers=customer_headers("alice"))).json()
    [payment] = listed["items"]
    assert payment["id"] == authorised.payment_id
    assert payment["amount"] == {"amount": 1200, "currency": "EUR"}
    assert (payment["status"], payment["reason"], payment["card"]) == ("authorized", None, "…visa")
    assert "tok_visa" not in str(listed)
    assert processor_of(payment_unit).authorizations == 1


@pytest.mark.parametrize(
    ("card", "reason"),
    [
        ("tok_decline", "declined"),
        ("tok_insufficient_funds", "insufficient_funds"),
        ("tok_expired", "invalid_card"),
        ("tok_timeout", "processor_timeout"),
    ],
)
async def test_a_refused_card_fails_with_its_reason_and_charges_nothing(
    wired: WiredShop,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    card: str,
    reason: str,
) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    with pytest.raises(PaymentFailed) as failed:
        await port.authorise("o-2", "bob", TWELVE_EUROS, card)
    assert (failed.value.reason, failed.value.status, failed.value.code) == (
        reason,
        422,
        "payment-failed",
    )
    [payment] = (await client.get(PAYMENTS, headers=admin_headers)).json()["items"]
    assert (payment["status"], payment["reason"]) == ("declined", reason)
    assert processor_of(payment_unit).authorizations == 0


async def test_a_timeout_is_cut_at_the_configured_deadline_and_answered_at_once_after(
    wired: WiredShop,
) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    assert port_of(payment_unit).processor_timeout == pytest.approx(
        0.3
    )  # from the test configuration
    started = time.monotonic()
    with pytest.raises(PaymentFailed, match="processor_timeout"):
        await port.authorise("o-3", "carol", TWELVE_EUROS, "tok_timeout")
    assert 0.3 <= time.monotonic() - started < 2.0
    started = time.monotonic()
    with pytest.raises(PaymentFailed) as again:  # a redelivered command: the recorded answer
        await port.authorise("o-3", "carol", TWELVE_EUROS, "tok_timeout")
    assert again.value.reason == "processor_timeout"
    assert time.monotonic() - started < 0.25


async def test_asking_again_returns_the_same_payment_and_charges_once(wired: WiredShop) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    first = await port.authorise("o-4", "alice", TWELVE_EUROS, "tok_approve")
    again = await port.authorise("o-4", "alice", TWELVE_EUROS, "tok_approve")
    assert again == first
    assert processor_of(payment_unit).authorizations == 1


async def test_concurrent_authorises_for_one_order_make_one_payment_and_one_charge(
    wired: WiredShop, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    outcomes = await asyncio.gather(
        port.authorise("o-5", "alice", TWELVE_EUROS, "tok_approve"),
        port.authorise("o-5", "alice", TWELVE_EUROS, "tok_approve"),
    )
    assert outcomes[0] == outcomes[1]
    assert outcomes[0].status == "authorized"
    assert processor_of(payment_unit).authorizations == 1
    reference = await processor_ref(payment_unit, "o-5")
    assert reference is not None
    assert processor_of(payment_unit).state(reference) == "authorized"  # the loser released nothing
    listed = (await client.get(PAYMENTS, headers=admin_headers)).json()["items"]
    assert [p["order_id"] for p in listed] == ["o-5"]
    assert await published(payment_unit, "shop.payment.payment_authorized.v1", "o-5") == 1


async def test_concurrent_authorises_that_time_out_both_fail_and_record_one_payment(
    wired: WiredShop, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    port = saga_port(wired)
    results = await asyncio.gather(
        *(port.authorise("o-6", "bob", TWELVE_EUROS, "tok_timeout") for _ in range(3)),
        return_exceptions=True,
    )
    assert {getattr(r, "reason", r) for r in results} == {"processor_timeout"}
    listed = (await client.get(PAYMENTS, headers=admin_headers)).json()["items"]
    assert [(p["order_id"], p["status"]) for p in listed] == [("o-6", "declined")]


async def test_a_void_after_a_timeout_leaves_the_payment_declined(wired: WiredShop) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    with pytest.raises(PaymentFailed):
        await port.authorise("o-7", "carol", TWELVE_EUROS, "tok_timeout")
    voided = await port.void("o-7")
    assert voided is not None
    assert (voided.status, voided.reason) == ("declined", "processor_timeout")
    assert await published(payment_unit, PaymentVoided.event_type, "o-7") == 0
    with pytest.raises(Conflict):
        await port.capture("o-7")
    assert processor_of(payment_unit).authorizations == 0


class GatedProcessor(SimulatedProcessor):
    """The simulated processor, holding each answer until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()
        self.references: list[str] = []

    async def authorise(self, idempotency_key: str, card_token: str, amount: Money) -> str:
        reference = await super().authorise(idempotency_key, card_token, amount)
        self.references.append(reference)
        self.asked.set()
        await self.answer.wait()
        return reference


async def test_a_void_wins_over_an_approval_still_in_flight_and_releases_the_hold(
    wired: WiredShop,
) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    port_of(payment_unit).processor = processor = GatedProcessor()
    authorising = asyncio.create_task(port.authorise("o-8", "alice", TWELVE_EUROS, "tok_approve"))
    await processor.asked.wait()  # the processor approved; payment has not heard yet
    voided = await port.void("o-8")
    assert voided is not None
    assert voided.status == "voided"
    processor.answer.set()
    with pytest.raises(PaymentFailed) as failed:
        await authorising
    assert failed.value.reason == "voided"
    [reference] = processor.references
    assert processor.state(reference) == "voided"  # the late hold was given back
    assert await processor_ref(payment_unit, "o-8") is None
    assert (await port.void("o-8")) == voided
    with pytest.raises(PaymentFailed, match="voided"):
        await port.authorise("o-8", "alice", TWELVE_EUROS, "tok_approve")
    assert processor.authorizations == 1


async def test_a_void_releases_an_authorised_hold_once(wired: WiredShop) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    await port.authorise("o-9", "bob", TWELVE_EUROS, "tok_approve")
    first, second = await port.void("o-9"), await port.void("o-9")
    assert first is not None
    assert first == second
    assert first.status == "voided"
    reference = await processor_ref(payment_unit, "o-9")
    assert reference is not None
    assert processor_of(payment_unit).state(reference) == "voided"
    assert processor_of(payment_unit).voids == 1
    assert await published(payment_unit, PaymentVoided.event_type, "o-9") == 1
    assert await port.void("no-such-order") is None
    with pytest.raises(Conflict):
        await port.capture("o-9")


async def test_capture_takes_the_money_once_however_often_it_is_asked(wired: WiredShop) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    await port.authorise("o-10", "carol", TWELVE_EUROS, "tok_approve")
    captures = await asyncio.gather(port.capture("o-10"), port.capture("o-10"))
    assert await port.capture("o-10") == captures[0] == captures[1]
    assert captures[0].status == "captured"
    assert processor_of(payment_unit).captures == 1
    assert await published(payment_unit, PaymentCaptured.event_type, "o-10") == 1
    with pytest.raises(Conflict, match="refund"):
        await port.void("o-10")
    with pytest.raises(NotFound):
        await port.capture("no-such-order")


async def test_only_an_admin_refunds_and_only_a_captured_payment(
    wired: WiredShop,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    customer_headers: Headers,
) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    held = await port.authorise("o-11", "alice", TWELVE_EUROS, "tok_approve")
    not_yet = await client.post(f"{PAYMENTS}/{held.payment_id}/refund", headers=admin_headers)
    assert (not_yet.status_code, not_yet.json()["code"]) == (409, "cannot-refund")
    assert not_yet.headers["content-type"] == PROBLEM

    await port.capture("o-11")
    refund = f"{PAYMENTS}/{held.payment_id}/refund"
    refused = await client.post(refund, headers=customer_headers("alice"))
    assert refused.status_code == 403
    refunded = await client.post(refund, headers=admin_headers)
    assert refunded.status_code == 200
    assert refunded.json()["status"] == "refunded"
    assert (await client.post(refund, headers=admin_headers)).json()["status"] == "refunded"
    assert processor_of(payment_unit).refunds == 1
    assert await published(payment_unit, PaymentRefunded.event_type, "o-11") == 1
    unknown = await client.post(f"{PAYMENTS}/nope/refund", headers=admin_headers)
    assert unknown.status_code == 404


async def test_a_customer_sees_only_their_own_payments(
    wired: WiredShop,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    customer_headers: Headers,
    issuer: DevIssuer,
) -> None:
    port = saga_port(wired)
    alices = await port.authorise("o-12", "alice", TWELVE_EUROS, "tok_approve")
    bobs = await port.authorise("o-13", "bob", TWELVE_EUROS, "tok_approve")
    alice, bob = customer_headers("alice"), customer_headers("bob")
    own = await client.get(f"{PAYMENTS}/{alices.payment_id}", headers=alice)
    assert (own.status_code, own.json()["order_id"]) == (200, "o-12")
    hidden = await client.get(f"{PAYMENTS}/{alices.payment_id}", headers=bob)
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == PROBLEM
    assert "o-12" not in hidden.text
    assert [p["id"] for p in (await client.get(PAYMENTS, headers=bob)).json()["items"]] == [
        bobs.payment_id
    ]
    every = (await client.get(PAYMENTS, headers=admin_headers)).json()["items"]
    assert {p["id"] for p in every} == {alices.payment_id, bobs.payment_id}
    as_admin = await client.get(f"{PAYMENTS}/{bobs.payment_id}", headers=admin_headers)
    assert as_admin.json()["customer_id"] == "bob"
    narrow = {"Authorization": f"Bearer {issuer.issue('alice', ['profile'])}"}
    assert (await client.get(PAYMENTS, headers=narrow)).status_code == 403


async def test_payments_come_in_pages(
    wired: WiredShop, client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    port = saga_port(wired)
    made = {
        (await port.authorise(f"o-p{n}", "carol", TWELVE_EUROS, "tok_approve")).payment_id
        for n in range(5)
    }
    carol = customer_headers("carol")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(PAYMENTS, params=params, headers=carol)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert len(seen) == len(made)
    assert set(seen) == made


class AnswerLostProcessor(SimulatedProcessor):
    """The simulated processor on its file, which takes the money and then never answers: the
    payment unit is killed before it hears back."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.captured = asyncio.Event()

    async def capture(self, reference: str, *, idempotency_key: str) -> None:
        await super().capture(reference, idempotency_key=idempotency_key)
        self.captured.set()
        await asyncio.Event().wait()


def processor_file(unit: Unit) -> str:
    assert unit.config.var_dir is not None
    return str(unit.config.var_dir / "card-processor.db")


async def payment_status(unit: Unit, order_id: str) -> str:
    async with unit.context("payment").read() as connection:
        row = await store.by_order(connection, order_id)
    assert row is not None
    return str(row.status)


async def test_a_capture_is_committed_only_on_the_processors_answer_and_a_lost_one_is_asked_again(
    unit: Unit, config: SystemConfig
) -> None:
    """On the monolith only: a second unit holding payment starts beside the first, which in
    the split would take the first one's gRPC port."""
    port = port_of(unit)
    port.processor = lost = AnswerLostProcessor(processor_file(unit))
    await port.authorise("o-20", "alice", TWELVE_EUROS, "tok_approve")
    capturing = asyncio.create_task(port.capture("o-20"))
    await lost.captured.wait()  # the processor took the money; payment has not heard yet
    assert await payment_status(unit, "o-20") == "capturing"
    assert await published(unit, PaymentCaptured.event_type, "o-20") == 0
    capturing.cancel()  # killed: the answer is lost

    restarted = Unit(config)  # the payment unit again, on the same database and processor
    await restarted.start()
    try:

        async def captured() -> bool:
            return await payment_status(restarted, "o-20") == "captured"

        assert await eventually(captured)  # settled by asking the processor, with no saga
        assert await published(restarted, PaymentCaptured.event_type, "o-20") == 1
        processor = processor_of(restarted)
        reference = await processor_ref(restarted, "o-20")
        assert reference is not None
        assert (processor.state(reference), processor.captures) == ("captured", 1)
        assert (await port_of(restarted).capture("o-20")).status == "captured"
        assert processor.captures == 1
    finally:
        await restarted.stop()


async def test_a_capture_the_processor_refuses_voids_the_payment_and_is_a_conflict(
    wired: WiredShop,
) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    await port.authorise("o-22", "bob", TWELVE_EUROS, "tok_approve")
    reference = await processor_ref(payment_unit, "o-22")
    assert reference is not None
    await processor_of(payment_unit).void(reference)  # the hold expired at the processor
    with pytest.raises(Conflict, match="hold_voided") as refused:
        await port.capture("o-22")
    assert refused.value.code == "capture-refused"
    assert await payment_status(payment_unit, "o-22") == "voided"
    assert await published(payment_unit, PaymentCaptured.event_type, "o-22") == 0
    assert processor_of(payment_unit).captures == 0


class FlakyCancelProcessor(SimulatedProcessor):
    """Its first cancel does not get through, as when the processor is briefly unreachable."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 1

    async def cancel(self, idempotency_key: str) -> None:
        if self.refused:
            self.refused -= 1
            raise Declined("unreachable")
        await super().cancel(idempotency_key)


async def test_an_authorisation_that_timed_out_is_cancelled_at_the_processor_by_the_void(
    wired: WiredShop,
) -> None:
    payment_unit = wired.unit_of("payment")
    port = saga_port(wired)
    port_of(payment_unit).processor = processor = FlakyCancelProcessor()
    with pytest.raises(PaymentFailed, match="processor_timeout"):
        await port.authorise("o-21", "carol", TWELVE_EUROS, "tok_timeout")
    assert [state for _, state in processor.open_authorizations()] == ["pending"]
    voided = await port.void("o-21")  # the saga's compensation
    assert voided is not None
    assert voided.status == "declined"
    assert processor.open_authorizations() == []
