"""The chassis's gRPC over real servers on loopback: ports served and called with fakes that
implement the same Protocols, Problems across the wire, deadlines, retries, the circuit breaker,
health and reflection."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cleave.errors import Conflict, NotFound, Problem, ServiceUnavailable, Unprocessable
from cleave.money import Money
from cleave.rpc.client import CircuitBreaker
from cleave.rpc.contract import RpcContract
from cleave.rpc.protogen import generate
from cleave.rpc.server import RpcServer, ServedPort
from shop.catalog.contract import (
    CatalogPort,
    OrderLine,
    OutOfStock,
    PricedLine,
    UnknownProducts,
    catalog_pb2,
)
from shop.payment.contract import PaymentFailed, PaymentOutcome, PaymentPort, payment_pb2
from tests.conftest import eventually
from tests.integration.callers import CALLER, VERIFIER, remote_port

PROTOS = Path(__file__).parent / "protos"


class CounterPort(Protocol):
    async def add(self, amount: int) -> int: ...

    async def total(self) -> int: ...

    async def pause(self, seconds: float) -> None: ...


class FakeCounter:
    """Counts every call it receives; fails the next `failing` calls as a busy service would."""

    def __init__(self) -> None:
        self.value = 0
        self.calls: Counter[str] = Counter()
        self.failing = 0
        self.pauses_finished = 0

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        if self.failing:
            self.failing -= 1
            raise ServiceUnavailable("busy, try again")

    async def add(self, amount: int) -> int:
        self._enter("add")
        self.value += amount
        return self.value

    async def total(self) -> int:
        self._enter("total")
        return self.value

    async def pause(self, seconds: float) -> None:
        self._enter("pause")
        await asyncio.sleep(seconds)
        self.pauses_finished += 1


class FakeCatalog:
    """The catalog port with fixed answers: MUG is known and has stock, nothing else is."""

    async def price_lines(self, lines: list[OrderLine]) -> list[PricedLine]:
        if unknown := [line.sku for line in lines if line.sku != "MUG"]:
            raise UnknownProducts(unknown)
        return [
            PricedLine(
                sku="MUG", name="Mug", quantity=line.quantity, unit_price=1250, currency="EUR"
            )
            for line in lines
        ]

    async def reserve_stock(self, order_id: str, lines: list[OrderLine]) -> None:
        raise OutOfStock([line.sku for line in lines])

    async def release_stock(self, order_id: str) -> None:
        raise NotFound(f"no reservation for {order_id}", code="no-reservation", order=order_id)

    async def commit_stock(self, order_id: str) -> None:
        raise Conflict("already committed", code="stock-committed")


class FakePayments:
    async def authorise(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> PaymentOutcome:
        if card_token == "tok_decline":
            raise PaymentFailed("declined")
        return PaymentOutcome(
            payment_id=f"pay-{order_id}", order_id=order_id, status="authorized", amount=amount
        )

    async def capture(self, order_id: str) -> PaymentOutcome:
        raise PaymentFailed("voided", "the order was cancelled meanwhile")

    async def void(self, order_id: str) -> PaymentOutcome | None:
        return None


@pytest.fixture(scope="session")
def counter_pb2(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The test port's generated code, made by protoc now, as a contract's would be."""
    out = tmp_path_factory.mktemp("generated")
    generate(out, PROTOS, [Path("counter.proto")])
    spec = importlib.util.spec_from_file_location("counter_pb2", out / "counter_pb2.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def counter() -> FakeCounter:
    return FakeCounter()


def serving(counter: FakeCounter, counter_pb2: ModuleType) -> list[ServedPort]:
    return [
        ServedPort("counter", RpcContract.of(CounterPort, counter_pb2), counter, CALLERS),
        ServedPort("catalog", RpcContract.of(CatalogPort, catalog_pb2), FakeCatalog(), CALLERS),
        ServedPort("payment", RpcContract.of(PaymentPort, payment_pb2), FakePayments(), CALLERS),
    ]


CALLERS = frozenset({CALLER})


@pytest.fixture
async def server(counter: FakeCounter, counter_pb2: ModuleType) -> AsyncIterator[RpcServer]:
    running = RpcServer("127.0.0.1:0", serving(counter, counter_pb2), verifier=VERIFIER)
    await running.start()
    try:
        yield running
    finally:
        await running.stop(grace=0.1)


def target(server: RpcServer) -> str:
    return f"127.0.0.1:{server.port}"


async def test_a_remote_port_returns_equal_models_and_plain_values(
    server: RpcServer, counter_pb2: ModuleType
) -> None:
    catalog = remote_port(CatalogPort, target(server), catalog_pb2, service="catalog")
    lines = [OrderLine(sku="MUG", quantity=2), OrderLine(sku="MUG", quantity=1)]
    assert await catalog.price_lines(lines) == await FakeCatalog().price_lines(lines)

    payments = remote_port(PaymentPort, target(server), payment_pb2, service="payment")
    amount = Money(amount=2_000_000_000_000, currency="EUR")  # past 32 bits: int64 on the wire
    outcome = await payments.authorise("o-1", "alice", amount, card_token="tok_approve")
    assert outcome == PaymentOutcome(
        payment_id="pay-o-1", order_id="o-1", status="authorized", amount=amount
    )
    assert await payments.void("o-1") is None

    counter = remote_port(CounterPort, target(server), counter_pb2, service="counter")
    assert await counter.add(5) == 5
    assert await counter.add(amount=-2) == 3
    assert await counter.total() == 3


async def test_problems_arrive_as_the_same_classes_with_their_attributes(
    server: RpcServer,
) -> None:
    catalog = remote_port(CatalogPort, target(server), catalog_pb2, service="catalog")
    with pytest.raises(OutOfStock) as out_of_stock:
        await catalog.reserve_stock("o-1", [OrderLine(sku="MUG", quantity=1)])
    assert out_of_stock.value.skus == ["MUG"]
    assert (out_of_stock.value.status, out_of_stock.value.code) == (422, "out-of-stock")
    assert out_of_stock.value.detail == "not enough stock for: MUG"

    with pytest.raises(UnknownProducts) as unknown:
        await catalog.price_lines(
            [OrderLine(sku="LAMP", quantity=1), OrderLine(sku="MUG", quantity=1)]
        )
    assert unknown.value.skus == ["LAMP"]

    with pytest.raises(NotFound) as not_found:
        await catalog.release_stock("o-2")
    assert not_found.value.code == "no-reservation"
    assert not_found.value.extensions == {"order": "o-2"}

    with pytest.raises(Conflict, match="already committed"):
        await catalog.commit_stock("o-1")

    payments = remote_port(PaymentPort, target(server), payment_pb2, service="payment")
    with pytest.raises(PaymentFailed) as declined:
        await payments.authorise("o-3", "bob", Money(amount=1, currency="EUR"), "tok_decline")
    assert declined.value.reason == "declined"
    with pytest.raises(PaymentFailed) as voided:
        await payments.capture("o-3")
    assert (voided.value.reason, voided.value.detail) == (
        "voided",
        "the order was cancelled meanwhile",
    )


async def test_idempotent_methods_are_retried_and_the_others_never(
    server: RpcServer, counter: FakeCounter, counter_pb2: ModuleType
) -> None:
    remote = remote_port(CounterPort, target(server), counter_pb2, service="counter")
    counter.failing = 2
    assert await remote.total() == 0  # NO_SIDE_EFFECTS: third attempt answers
    assert counter.calls["total"] == 3

    counter.failing = 1
    with pytest.raises(ServiceUnavailable, match="busy, try again"):
        await remote.add(1)  # no idempotency level: a retry could count twice
    assert counter.calls["add"] == 1
    assert counter.value == 0

    counter.failing = 5
    with pytest.raises(ServiceUnavailable):
        await remote.pause(0)  # IDEMPOTENT, but three attempts is all it gets
    assert counter.calls["pause"] == 3


async def test_a_call_past_its_deadline_fails_fast_as_unavailable(
    server: RpcServer, counter: FakeCounter, counter_pb2: ModuleType
) -> None:
    remote = remote_port(CounterPort, target(server), counter_pb2, service="counter", deadline=0.3)
    started = time.monotonic()
    with pytest.raises(
        ServiceUnavailable,
        match=r"counter\.pause at 127\.0\.0\.1:\d+ is unavailable: no answer within",
    ):
        await remote.pause(30)
    assert time.monotonic() - started < 10  # the servicer is still sleeping its 30 s
    assert counter.calls["pause"] == 1


async def test_a_call_its_caller_gave_up_on_still_runs_to_its_end_on_the_far_side(
    server: RpcServer, counter: FakeCounter, counter_pb2: ModuleType
) -> None:
    remote = remote_port(CounterPort, target(server), counter_pb2, service="counter", deadline=0.1)
    with pytest.raises(ServiceUnavailable):
        await remote.pause(0.5)
    assert counter.pauses_finished == 0

    async def finished() -> bool:
        return counter.pauses_finished == 1

    assert await eventually(finished)


async def test_arguments_the_contract_refuses_are_a_problem_not_a_crash(server: RpcServer) -> None:
    catalog = remote_port(CatalogPort, target(server), catalog_pb2, service="catalog")
    with pytest.raises(
        Unprocessable,
        match=r"^catalog\.price_lines: lines\.0\.quantity: Input should be greater than 0$",
    ):
        await catalog.price_lines([OrderLine.model_construct(sku="MUG", quantity=0)])


async def test_a_stopped_unit_trips_the_breaker_and_is_called_again_once_back(
    counter: FakeCounter, counter_pb2: ModuleType
) -> None:
    first = RpcServer("127.0.0.1:0", serving(counter, counter_pb2), verifier=VERIFIER)
    port = await first.start()
    breaker = CircuitBreaker(threshold=3, cool_down=0.5)
    remote = remote_port(
        CounterPort, f"127.0.0.1:{port}", counter_pb2, service="counter", breaker=breaker
    )
    assert await remote.add(1) == 1
    await first.stop(grace=0.1)

    errors: list[ServiceUnavailable] = []
    for _ in range(4):
        with pytest.raises(ServiceUnavailable) as failure:
            await remote.total()
        errors.append(failure.value)
    assert "counter.total at 127.0.0.1" in str(errors[0])
    assert errors[-1].code == "circuit-open"
    assert "circuit open after 3 failures" in errors[-1].detail

    again = RpcServer(f"127.0.0.1:{port}", serving(counter, counter_pb2), verifier=VERIFIER)
    await again.start()
    try:

        async def answers() -> bool:
            try:
                return bool(await remote.total() == 1)
            except ServiceUnavailable:
                return False

        assert await eventually(answers, within=15, interval=0.1)
        assert breaker.state == "closed"
    finally:
        await again.stop(grace=0.1)


async def test_health_answers_serving_for_the_unit_and_each_service(server: RpcServer) -> None:
    async with grpc.aio.insecure_channel(target(server)) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)  # the stubs type the sync channel
        for name in ("", "catalog", "shop.catalog.v1.Catalog", "payment", "counter"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, name
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health.Check(health_pb2.HealthCheckRequest(service="ordering"))
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND


async def list_services(address: str) -> list[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = [answer async for answer in stub.ServerReflectionInfo(iter([request]))]
    return [service.name for service in answers[0].list_services_response.service]


async def test_reflection_is_off_unless_asked_for(
    server: RpcServer,
    counter: FakeCounter,
    counter_pb2: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as off:
        await list_services(target(server))
    assert off.value.code() is grpc.StatusCode.UNIMPLEMENTED

    monkeypatch.setenv("CLEAVE_GRPC_REFLECTION", "1")
    reflecting = RpcServer("127.0.0.1:0", serving(counter, counter_pb2), verifier=VERIFIER)
    await reflecting.start()
    try:
        assert "shop.catalog.v1.Catalog" in await list_services(target(reflecting))
    finally:
        await reflecting.stop(grace=0.1)


async def test_a_port_already_taken_is_a_clear_error(
    server: RpcServer, counter: FakeCounter, counter_pb2: ModuleType
) -> None:
    clash = RpcServer(target(server), serving(counter, counter_pb2), verifier=VERIFIER)
    with pytest.raises(Exception, match=f"cannot serve gRPC on {target(server)}"):
        await clash.start()


def test_a_problem_of_a_class_this_process_does_not_know_comes_back_as_its_chassis_kind() -> None:
    restored = Problem.restore("elsewhere.Gone", "it left", "gone", 404, {"sku": "MUG"})
    assert type(restored) is NotFound
    assert (restored.detail, restored.code, restored.extensions) == (
        "it left",
        "gone",
        {"sku": "MUG"},
    )
    teapot = Problem.restore("elsewhere.Teapot", "short and stout", "teapot", 418, {})
    assert type(teapot) is Problem
    assert teapot.status == 418
