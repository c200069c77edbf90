"""The order saga when the services it calls fail: a timeout is never a verdict, a step past the
pivot that keeps failing is parked for a person (and resumed by one), an orchestrator killed inside
a step does not charge its own downtime to that step, and a failing compensation says why."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from cleave.config import SystemConfig
from cleave.errors import ServiceUnavailable
from cleave.money import Money
from cleave.runtime import Unit
from cleave.saga import NEEDS_ATTENTION, list_sagas, retry_saga, saga_history_of
from cleave.web.app import create_app
from shop.catalog.contract import CatalogPort
from shop.payment.contract import PaymentOutcome, PaymentPort
from shop.payment.handlers import LocalPayments
from tests.conftest import eventually, scrape
from tests.integration.test_order_saga import order, payments_of, place, settled, stock
from tests.integration.test_payment import AnswerLostProcessor, processor_file

Headers = Callable[[str], dict[str, str]]


@dataclass
class Shop:
    unit: Unit
    client: httpx.AsyncClient


def with_settings(config: SystemConfig, **ordering: float) -> SystemConfig:
    settings = {name: dict(values) for name, values in config.settings.items()}
    settings["ordering"].update(ordering)
    return replace(config, settings=settings)


@contextlib.asynccontextmanager
async def running(config: SystemConfig, *, fresh: bool = True) -> AsyncIterator[Shop]:
    unit = Unit(config)
    if fresh:
        await unit.migrate()
        await unit.seed()
    await unit.start()
    try:
        transport = httpx.ASGITransport(app=create_app(unit, start_unit=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
            yield Shop(unit, client)
    finally:
        await unit.stop()


def unavailable(service: str) -> Callable[..., Any]:
    async def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise ServiceUnavailable(f"{service} at 127.0.0.1:9002 is unavailable", service=service)

    return fail


async def hang(*_args: Any, **_kwargs: Any) -> Any:
    await asyncio.Event().wait()


@pytest.mark.parametrize(
    ("method", "behaviour"),
    [("price_lines", unavailable("catalog")), ("reserve_stock", hang)],
    ids=["price_lines-unavailable", "reserve_stock-hangs"],
)
async def test_a_catalog_that_does_not_answer_cancels_the_order_it_does_not_reject_it(
    base_config: SystemConfig,
    customer_headers: Headers,
    method: str,
    behaviour: Callable[..., Any],
) -> None:
    async with running(with_settings(base_config, step_deadline_seconds=1.5)) as shop:
        alice = customer_headers("alice")
        before = await stock(shop.client, "MUG-CLASSIC")
        catalog = shop.unit.ports.get(CatalogPort)
        real = getattr(catalog, method)
        setattr(catalog, method, behaviour)
        done = await settled(
            shop.client, alice, await place(shop.client, alice, order(("MUG-CLASSIC", 1)))
        )
        setattr(catalog, method, real)
        assert (done["status"], done["reason"], done["retryable"]) == (
            "cancelled",
            "catalog_unavailable",
            True,
        )
        assert await stock(shop.client, "MUG-CLASSIC") == before
        # What the shop decides is still a rejection, and not worth retrying.
        sold_out = await settled(
            shop.client, alice, await place(shop.client, alice, order(("SOLD-OUT-VINYL", 1)))
        )
        assert (sold_out["status"], sold_out["reason"], sold_out["retryable"]) == (
            "rejected",
            "out_of_stock",
            False,
        )


class PaymentOutage:
    """A PaymentPort whose service is down: nothing can be authorised or captured, and the void
    that compensates finds nothing to cancel."""

    async def authorise(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> PaymentOutcome:
        raise ServiceUnavailable("payment is unavailable", service="payment")

    async def capture(self, order_id: str) -> PaymentOutcome:
        raise ServiceUnavailable("payment is unavailable", service="payment")

    async def void(self, order_id: str) -> PaymentOutcome | None:
        return None


@pytest.mark.settings(ordering={"step_deadline_seconds": 1.5})
@pytest.mark.parametrize("fakes", [{PaymentPort: PaymentOutage()}], ids=["payment-outage"])
async def test_an_approved_card_caught_in_a_payment_outage_is_cancelled_as_worth_retrying(
    client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    bob = customer_headers("bob")
    before = await stock(client, "HOODIE-GREY")
    done = await settled(client, bob, await place(client, bob, order(("HOODIE-GREY", 1))))
    assert (done["status"], done["reason"], done["retryable"]) == (
        "cancelled",
        "payment_unavailable",
        True,
    )
    assert await stock(client, "HOODIE-GREY") == before


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition, whatever order its labels come in."""
    for found in re.finditer(rf"^{name}{{(.*?)}} (\S+)$", text, re.MULTILINE):
        if dict(re.findall(r'(\w+)="([^"]*)"', found.group(1))) == labels:
            return float(found.group(2))
    return 0.0


async def test_a_step_past_the_pivot_that_keeps_failing_is_parked_and_resumed_by_an_admin(
    base_config: SystemConfig, customer_headers: Headers, admin_headers: dict[str, str]
) -> None:
    config = with_settings(base_config, max_step_attempts=3, retry_seconds=0.01)
    async with running(config) as shop:
        carol = customer_headers("carol")
        payments = shop.unit.ports.get(PaymentPort)
        real = payments.capture
        payments.capture = unavailable("payment")  # type: ignore[method-assign]
        parked_before = metric(
            await scrape(shop.unit),
            "cleave_sagas_parked_total",
            service="ordering",
            saga="place_order",
            step="capture_payment",
        )
        order_id = await place(shop.client, carol, order(("PEN-BRASS", 1)))
        context = shop.unit.context("ordering")
        [parked] = await eventually(lambda: list_sagas(context, status=NEEDS_ATTENTION))
        assert parked.id == order_id
        assert parked.attempts == 3
        assert parked.last_error is not None
        assert "payment at 127.0.0.1:9002 is unavailable" in parked.last_error
        summary_and_history = await saga_history_of(context, order_id)
        assert summary_and_history is not None
        _, history = summary_and_history
        assert [event.event for event in history] == ["retry", "retry", "retry", NEEDS_ATTENTION]
        assert all(event.step == "capture_payment" for event in history)
        assert all("unavailable" in (event.detail or "") for event in history[:3])

        await asyncio.sleep(0.3)  # parked means no more attempts, however long it waits
        assert (await list_sagas(context, status=NEEDS_ATTENTION))[0].attempts == 3
        pending = await shop.client.get(f"/api/ordering/v1/orders/{order_id}", headers=carol)
        assert pending.json()["status"] == "pending"  # neither end: a person decides
        scraped = await scrape(shop.unit)
        assert metric(scraped, "cleave_sagas_needing_attention", service="ordering") == 1
        assert (
            metric(
                scraped,
                "cleave_sagas_parked_total",
                service="ordering",
                saga="place_order",
                step="capture_payment",
            )
            == parked_before + 1
        )

        payments.capture = real  # type: ignore[method-assign]  # the outage is over
        assert await retry_saga(context, order_id) == "running"
        done = await settled(shop.client, carol, order_id)
        assert done["status"] == "confirmed"
        [payment] = await payments_of(shop.client, carol)
        assert payment["status"] == "captured"
        summary_and_history = await saga_history_of(context, order_id)
        assert summary_and_history is not None
        assert summary_and_history[1][-1].event == "resumed"
        assert await list_sagas(context, status=NEEDS_ATTENTION) == []
        with pytest.raises(Exception, match="not needs_attention"):
            await retry_saga(context, order_id)


async def test_a_compensation_that_fails_says_why_in_the_sagas_history(
    base_config: SystemConfig, customer_headers: Headers
) -> None:
    async with running(with_settings(base_config, retry_seconds=0.01)) as shop:
        alice = customer_headers("alice")
        catalog = shop.unit.ports.get(CatalogPort)
        real = catalog.release_stock
        failures = iter([TimeoutError()])  # a bare TimeoutError: its message is empty

        async def release_once_failing(order_id: str) -> None:
            if (error := next(failures, None)) is not None:
                raise error
            await real(order_id)

        catalog.release_stock = release_once_failing  # type: ignore[method-assign]
        order_id = await place(shop.client, alice, order(("CAP-BLACK", 1), card="tok_decline"))
        done = await settled(shop.client, alice, order_id)
        assert (done["status"], done["reason"]) == ("cancelled", "payment_declined")
        found = await saga_history_of(shop.unit.context("ordering"), order_id)
        assert found is not None
        retries = [event for event in found[1] if event.event == "retry"]
        assert [(event.step, event.detail) for event in retries] == [
            ("reserve_stock", "attempt 1: TimeoutError")
        ]


async def test_an_orchestrator_killed_inside_a_step_resumes_it_without_charging_its_downtime(
    base_config: SystemConfig, customer_headers: Headers
) -> None:
    # The lease (how long a crashed orchestrator holds a saga) is longer than the step's deadline.
    config = with_settings(base_config, step_deadline_seconds=1.0, lease_seconds=2.0)
    alice = customer_headers("alice")
    async with running(config) as crashed:
        catalog = crashed.unit.ports.get(CatalogPort)
        inside = asyncio.Event()

        async def reserve_and_hang(*_args: Any) -> None:
            inside.set()
            await asyncio.Event().wait()

        catalog.reserve_stock = reserve_and_hang  # type: ignore[method-assign,assignment]
        order_id = await place(crashed.client, alice, order(("NOTEBOOK-A5", 1)))
        await asyncio.wait_for(inside.wait(), 5)
    # Killed inside reserve_stock: the saga's lease has to run out before anyone resumes it.
    async with running(config, fresh=False) as restarted:
        done = await settled(restarted.client, alice, order_id)
        assert (done["status"], done["reason"]) == ("confirmed", None)


async def test_a_shop_killed_while_the_processor_captures_confirms_the_order_once_on_restart(
    base_config: SystemConfig, customer_headers: Headers
) -> None:
    # A step deadline past any load: on a busy machine the suite's 3 s let reserve_stock run out
    # and the order end before it ever reached the capture this test is about.
    config = with_settings(base_config, lease_seconds=1.0, step_deadline_seconds=60.0)
    alice = customer_headers("alice")
    async with running(config) as crashed:
        payments = crashed.unit.ports.get(PaymentPort)
        assert isinstance(payments, LocalPayments)
        payments.processor = lost = AnswerLostProcessor(processor_file(crashed.unit))
        order_id = await place(crashed.client, alice, order(("TOTE-CANVAS", 1)))
        await asyncio.wait_for(lost.captured.wait(), 60)
    # Killed after the processor took the money and before payment heard: nothing says
    # "captured" yet, and the processor, an outside system, still knows what it did.
    async with running(config, fresh=False) as restarted:
        done = await settled(restarted.client, alice, order_id)
        assert (done["status"], done["reason"]) == ("confirmed", None)
        [payment] = await payments_of(restarted.client, alice)
        assert payment["status"] == "captured"
        processor = restarted.unit.ports.get(PaymentPort).processor  # type: ignore[attr-defined]
        assert processor.captures == 1


async def test_the_console_shows_a_parked_saga_with_its_history_and_resumes_it(
    base_config: SystemConfig, customer_headers: Headers
) -> None:
    config = with_settings(base_config, max_step_attempts=2, retry_seconds=0.01)
    async with running(config) as shop:
        alice = customer_headers("alice")
        catalog = shop.unit.ports.get(CatalogPort)
        real_commit = catalog.commit_stock
        catalog.commit_stock = unavailable("catalog")  # type: ignore[method-assign]
        order_id = await place(shop.client, alice, order(("STICKER-PACK", 1)))
        await eventually(lambda: list_sagas(shop.unit.context("ordering"), status=NEEDS_ATTENTION))
        app = create_app(shop.unit, start_unit=False, console=True, host="127.0.0.1")
        console = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=console, base_url="http://127.0.0.1") as web:
            overview = (await web.get("/console")).text
            assert f"/console/sagas/ordering/{order_id}" in overview
            page = (await web.get(f"/console/sagas/ordering/{order_id}")).text
            assert "needs_attention at commit_stock" in page
            assert page.count("catalog at 127.0.0.1:9002 is unavailable") >= 2
            catalog.commit_stock = real_commit  # type: ignore[method-assign]
            retry = f"/console/sagas/ordering/{order_id}/retry"
            assert (await web.post(retry)).status_code == 403  # the form's CSRF token is wanted
            csrf = re.search(r'name=csrf value="([^"]+)"', page)
            assert csrf is not None
            resumed = await web.post(retry, data={"csrf": csrf.group(1)})
            assert resumed.status_code == 303
        done = await settled(shop.client, alice, order_id)
        assert done["status"] == "confirmed"
