"""Units of one topology calling each other's ports over real gRPC on loopback, in one test
process: what only the split has (the subject a call acts for, a unit that goes down and comes
back); the rest of the integration suite runs under the split wiring too (`wired`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import replace

import httpx
import pytest

from cleave.auth.units import acting_for
from cleave.config import SystemConfig
from cleave.errors import Forbidden, ServiceUnavailable
from cleave.money import Money
from cleave.rpc.client import RemotePort
from cleave.runtime import Unit
from cleave.web.app import create_app
from shop.catalog.contract import CatalogPort
from shop.payment.contract import PaymentFailed, PaymentPort
from tests.conftest import eventually, in_process, running_unit, running_units
from tests.integration.test_order_saga import order, payments_of, place, settled, stock

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the split of this process runs on each service's SQLite file


@pytest.fixture
async def split(config: SystemConfig) -> AsyncIterator[dict[str, Unit]]:
    """The `split` topology: every service its own unit, each on its own gRPC port."""
    async with running_units(in_process(config, "split")) as shop:
        yield shop.units


def client(unit: Unit) -> httpx.AsyncClient:
    app = create_app(unit, start_unit=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.test")


async def test_an_order_placed_in_one_unit_is_priced_reserved_and_paid_in_others(
    split: dict[str, Unit], customer_headers: Headers
) -> None:
    ordering = split["ordering"]
    assert isinstance(ordering.ports.get(CatalogPort), RemotePort)
    assert isinstance(ordering.ports.get(PaymentPort), RemotePort)
    alice = customer_headers("alice")
    async with client(ordering) as shop, client(split["catalog"]) as catalog:
        before = await stock(catalog, "MUG-CLASSIC")
        order_id = await place(shop, alice, order(("MUG-CLASSIC", 2)))
        done = await settled(shop, alice, order_id)
        assert done["status"] == "confirmed", done
        assert done["total"] == {"amount": 2400, "currency": "EUR"}
        assert await stock(catalog, "MUG-CLASSIC") == before - 2
    async with client(split["payment"]) as payment:
        [paid] = [p for p in await payments_of(payment, alice) if p["order_id"] == order_id]
        assert paid["status"] == "captured"


async def test_failures_in_other_units_reach_the_saga_as_its_own_failures(
    split: dict[str, Unit], customer_headers: Headers
) -> None:
    bob = customer_headers("bob")
    async with client(split["ordering"]) as shop, client(split["catalog"]) as catalog:
        sold_out = await place(shop, bob, order(("SOLD-OUT-VINYL", 1)))
        unknown = await place(shop, bob, order(("NO-SUCH-THING", 1)))
        before = await stock(catalog, "MUG-CLASSIC")
        declined = await place(shop, bob, order(("MUG-CLASSIC", 1), card="tok_decline"))

        rejected = await settled(shop, bob, sold_out)
        assert (rejected["status"], rejected["reason"]) == ("rejected", "out_of_stock")
        assert (await settled(shop, bob, unknown))["reason"] == "unknown_sku"
        cancelled = await settled(shop, bob, declined)
        assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "payment_declined")
        assert await stock(catalog, "MUG-CLASSIC") == before  # released over gRPC too


async def test_a_call_acting_for_one_customer_cannot_charge_another(
    split: dict[str, Unit], customer_headers: Headers
) -> None:
    """Ownership holds across units: the subject the call acts for travels with it."""
    payments = split["ordering"].ports.get(PaymentPort)
    amount = Money(amount=4242, currency="EUR")
    with acting_for("bob"), pytest.raises(Forbidden, match="acting for bob"):
        await payments.authorise("o-bob-1", "alice", amount, "tok_approve")
    async with client(split["payment"]) as payment:
        assert all(
            p["order_id"] != "o-bob-1"
            for p in await payments_of(payment, customer_headers("alice"))
        )


async def test_the_monolith_calls_its_ports_directly_and_serves_no_grpc(unit: Unit) -> None:
    assert unit.rpc_server is None
    assert unit.remote_ports == []
    assert type(unit.ports.get(PaymentPort)).__name__ == "LocalPayments"


async def test_a_unit_that_is_down_fails_its_callers_fast_and_serves_them_again_when_back(
    base_config: SystemConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`payments-out`, with the addresses Kubernetes would set in the environment."""
    monkeypatch.setenv("CLEAVE_ADDRESS_CORE", "127.0.0.1:0:0")
    monkeypatch.setenv("CLEAVE_ADDRESS_PAYMENTS", "127.0.0.1:0:0")
    config = in_process(base_config, "payments-out")
    config = replace(config, topology=replace(config.topology, addresses={}))
    async with AsyncExitStack() as stack:
        payments = await running_unit(stack, config, "payments")
        assert payments.rpc_server is not None
        port = payments.rpc_server.port
        monkeypatch.setenv("CLEAVE_ADDRESS_PAYMENTS", f"127.0.0.1:0:{port}")
        core = await running_unit(stack, config, "core")
        remote = core.ports.get(PaymentPort)
        with pytest.raises(PaymentFailed) as declined:
            await remote.authorise("o-1", "alice", Money(amount=5, currency="EUR"), "tok_decline")
        assert declined.value.reason == "declined"

        await payments.stop()
        for _ in range(6):  # the breaker opens after five failures in a row
            with pytest.raises(ServiceUnavailable) as down:
                await remote.capture("o-1")
        assert f"payment.capture at 127.0.0.1:{port}" in str(down.value)
        assert down.value.code == "circuit-open"

        back = await running_unit(stack, config, "payments")
        assert back.rpc_server is not None
        assert back.rpc_server.port == port

        async def voided() -> bool:
            try:
                return await remote.void("o-1") is not None
            except ServiceUnavailable:
                return False

        assert await eventually(voided, within=15, interval=0.2)
