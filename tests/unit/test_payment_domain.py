"""Payment rules and the simulated card processor, with no database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cleave.errors import Conflict
from cleave.money import Money
from shop.payment import domain
from shop.payment.contract import card_hint
from shop.payment.processor import Declined, SimulatedProcessor

TEN_EUROS = Money(amount=1000, currency="EUR")


@pytest.mark.parametrize(
    ("command", "status"),
    [
        ("capture", "authorized"),
        ("capture", "captured"),
        ("void", "authorizing"),
        ("void", "authorized"),
        ("void", "voided"),
        ("void", "declined"),
        ("refund", "captured"),
        ("refund", "refunded"),
    ],
)
def test_a_command_may_start_or_repeat(command: str, status: str) -> None:
    domain.require(command, status)


@pytest.mark.parametrize(
    ("command", "status"),
    [
        ("capture", "authorizing"),
        ("capture", "declined"),
        ("capture", "voided"),
        ("capture", "refunded"),
        ("void", "captured"),
        ("void", "refunded"),
        ("refund", "authorized"),
        ("refund", "declined"),
        ("refund", "voided"),
    ],
)
def test_a_command_out_of_turn_is_a_conflict(command: str, status: str) -> None:
    with pytest.raises(Conflict) as refused:
        domain.require(command, status)
    assert refused.value.code == f"cannot-{command}"
    assert refused.value.extensions["payment_status"] == status


def test_voiding_a_captured_payment_points_to_a_refund() -> None:
    with pytest.raises(Conflict, match="refund it instead"):
        domain.require("void", "captured")


@pytest.mark.parametrize(
    ("status", "reason", "failure"),
    [
        ("authorized", None, None),
        ("captured", None, None),
        ("declined", "insufficient_funds", "insufficient_funds"),
        ("declined", None, "declined"),
        ("voided", None, "voided"),
    ],
)
def test_a_settled_payment_answers_a_repeated_authorise_the_same_way(
    status: str, reason: str | None, failure: str | None
) -> None:
    assert domain.failure_reason(status, reason) == failure


@pytest.mark.parametrize(
    ("token", "hint"),
    [
        ("tok_visa", "visa"),
        ("tok_approve", "rove"),
        ("1234", "****"),
        ("tok", "****"),
        ("", "****"),
    ],
)
def test_orders_and_payments_keep_one_hint_of_the_card_never_the_token(
    token: str, hint: str
) -> None:
    assert card_hint(token) == hint


# --- the simulated processor -----------------------------------------------------------------


@pytest.mark.parametrize("token", ["tok_approve", "tok_visa"])
async def test_approving_tokens_hold_the_money(token: str) -> None:
    processor = SimulatedProcessor()
    reference = await processor.authorise("pay-1", token, TEN_EUROS)
    assert processor.state(reference) == "authorized"
    assert processor.authorizations == 1


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("tok_decline", "declined"),
        ("tok_insufficient_funds", "insufficient_funds"),
        ("tok_stolen", "invalid_card"),
        ("", "invalid_card"),
    ],
)
async def test_declining_tokens_say_why_and_hold_nothing(token: str, reason: str) -> None:
    processor = SimulatedProcessor()
    with pytest.raises(Declined) as declined:
        await processor.authorise("pay-1", token, TEN_EUROS)
    assert declined.value.reason == reason
    assert processor.authorizations == 0


async def test_the_timeout_token_never_answers() -> None:
    processor = SimulatedProcessor()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await processor.authorise("pay-1", "tok_timeout", TEN_EUROS)
    assert processor.authorizations == 0


async def test_the_same_key_is_the_same_charge_even_when_asked_at_once() -> None:
    processor = SimulatedProcessor()
    references = await asyncio.gather(
        *(processor.authorise("pay-1", "tok_approve", TEN_EUROS) for _ in range(5))
    )
    assert await processor.authorise("pay-1", "tok_approve", TEN_EUROS) == references[0]
    assert set(references) == {references[0]}
    assert processor.authorizations == 1
    other = await processor.authorise("pay-2", "tok_approve", TEN_EUROS)
    assert other != references[0]
    assert processor.authorizations == 2


async def test_the_first_answer_for_a_key_stands() -> None:
    processor = SimulatedProcessor()
    with pytest.raises(Declined):
        await processor.authorise("pay-1", "tok_decline", TEN_EUROS)
    with pytest.raises(Declined, match="declined"):
        await processor.authorise("pay-1", "tok_approve", TEN_EUROS)
    assert processor.authorizations == 0


async def test_capture_void_and_refund_count_once_and_follow_the_hold() -> None:
    processor = SimulatedProcessor()
    kept = await processor.authorise("pay-1", "tok_approve", TEN_EUROS)
    released = await processor.authorise("pay-2", "tok_approve", TEN_EUROS)
    for _ in range(2):
        await processor.capture(kept, idempotency_key="capture-1")
        await processor.void(released)
    assert (processor.captures, processor.voids) == (1, 1)
    with pytest.raises(Declined):
        await processor.void(kept)  # captured money comes back by refund only
    with pytest.raises(Declined, match="hold_voided"):
        await processor.capture(released, idempotency_key="capture-2")
    await processor.refund(kept)
    await processor.refund(kept)
    assert processor.refunds == 1
    assert (processor.state(kept), processor.state(released)) == ("refunded", "voided")


async def test_cancel_releases_an_answer_that_landed_and_refuses_one_still_to_come() -> None:
    processor = SimulatedProcessor()
    landed = await processor.authorise("pay-1", "tok_approve", TEN_EUROS)
    await processor.cancel("pay-1")
    assert processor.state(landed) == "voided"
    await processor.cancel("pay-2")
    with pytest.raises(Declined, match="cancelled"):
        await processor.authorise("pay-2", "tok_approve", TEN_EUROS)
    assert processor.authorizations == 1


async def test_a_processor_restarted_on_its_file_remembers_holds_and_answers_a_capture_again(
    tmp_path: Path,
) -> None:
    before = SimulatedProcessor(tmp_path / "processor.db")
    reference = await before.authorise("pay-1", "tok_approve", TEN_EUROS)
    await before.capture(reference, idempotency_key="capture-pay-1")  # its answer got lost
    refused = await before.authorise("pay-2", "tok_approve", TEN_EUROS)
    await before.void(refused)
    with pytest.raises(Declined, match="hold_voided"):
        await before.capture(refused, idempotency_key="capture-pay-2")
    before.close()

    after = SimulatedProcessor(tmp_path / "processor.db")
    await after.capture(reference, idempotency_key="capture-pay-1")  # asked again: the same capture
    assert (after.state(reference), after.captures, after.authorizations) == ("captured", 1, 2)
    assert await after.authorise("pay-1", "tok_approve", TEN_EUROS) == reference
    with pytest.raises(Declined, match="hold_voided"):
        await after.capture(refused, idempotency_key="capture-pay-2")  # the same refusal
    assert after.open_authorizations() == []


async def test_an_authorisation_that_never_answered_stays_open_until_cancelled() -> None:
    processor = SimulatedProcessor()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await processor.authorise("pay-1", "tok_timeout", TEN_EUROS)
    approved = await processor.authorise("pay-2", "tok_approve", TEN_EUROS)
    assert processor.open_authorizations() == [("pay-1", "pending"), ("pay-2", "authorized")]
    await processor.cancel("pay-1")
    await processor.void(approved)
    assert processor.open_authorizations() == []
    with pytest.raises(Declined, match="cancelled"):
        await processor.authorise("pay-1", "tok_timeout", TEN_EUROS)
