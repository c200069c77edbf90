"""TLS on gRPC between units: certificates from `cleave certs`, mutual TLS on real servers, a
plaintext or foreign-CA caller turned away before any token is read, and a topology whose units
talk over it."""

from __future__ import annotations

import stat
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from cleave.config import SystemConfig
from cleave.errors import ServiceUnavailable
from cleave.money import Money
from cleave.rpc.contract import RpcContract
from cleave.rpc.server import RpcServer, ServedPort
from cleave.rpc.tls import UnitTls, make_development_certificates
from shop.payment.contract import PaymentFailed, PaymentPort, payment_pb2
from tests.conftest import in_process, running_unit
from tests.integration.callers import CALLER, VERIFIER, remote_port
from tests.integration.test_rpc_auth import RecordingPayments
from tests.unit.test_deploy import cleave

AMOUNT = Money(amount=1250, currency="EUR")


async def test_units_with_certificates_call_each_other_and_nobody_else_gets_through(
    tmp_path: Path,
) -> None:
    certs = tmp_path / "certs"
    make_development_certificates(certs, {"payments": ["127.0.0.1"], "core": ["127.0.0.1"]})
    assert stat.S_IMODE((certs / "payments.key").stat().st_mode) == 0o600
    make_development_certificates(tmp_path / "other", {"core": []})  # a CA nobody trusts

    payments = RecordingPayments()
    contract = RpcContract.of(PaymentPort, payment_pb2)
    server = RpcServer(
        "127.0.0.1:0",
        [ServedPort("payment", contract, payments, callers=frozenset({CALLER}))],
        verifier=VERIFIER,
        tls=UnitTls.load(certs, "payments"),
    )
    await server.start()
    target = f"127.0.0.1:{server.port}"
    try:
        secure = remote_port(
            PaymentPort, target, payment_pb2, service="payment", tls=UnitTls.load(certs, "core")
        )
        outcome = await secure.authorise("o-1", "alice", AMOUNT, "tok")
        assert outcome.status == "authorized"
        await secure.close()

        for stranger in (
            remote_port(PaymentPort, target, payment_pb2, service="payment", attempts=1),
            remote_port(
                PaymentPort,
                target,
                payment_pb2,
                service="payment",
                tls=UnitTls.load(tmp_path / "other", "core"),
            ),
        ):
            with pytest.raises(ServiceUnavailable):
                await stranger.authorise("o-2", "alice", AMOUNT, "tok")
            await stranger.close()
        assert [order for order, _ in payments.calls] == ["o-1"]
    finally:
        await server.stop(grace=0.1)


async def test_a_topology_with_grpc_tls_runs_its_calls_over_it(
    base_config: SystemConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`payments-out` with `grpc_tls` set: the core unit reaches payment over mutual TLS."""
    certs = tmp_path / "certs"
    make_development_certificates(certs, {"core": [], "payments": []})
    monkeypatch.setenv("CLEAVE_ADDRESS_CORE", "127.0.0.1:0:0")
    monkeypatch.setenv("CLEAVE_ADDRESS_PAYMENTS", "127.0.0.1:0:0")
    config = in_process(base_config, "payments-out")
    config = replace(config, topology=replace(config.topology, addresses={}, grpc_tls=str(certs)))
    async with AsyncExitStack() as stack:
        payments = await running_unit(stack, config, "payments")
        assert payments.rpc_server is not None
        assert payments.rpc_server.tls is not None
        monkeypatch.setenv("CLEAVE_ADDRESS_PAYMENTS", f"127.0.0.1:0:{payments.rpc_server.port}")
        core = await running_unit(stack, config, "core")
        remote = core.ports.get(PaymentPort)
        with pytest.raises(PaymentFailed) as declined:
            await remote.authorise("o-1", "alice", AMOUNT, "tok_decline")
        assert declined.value.reason == "declined"

        address = f"127.0.0.1:{payments.rpc_server.port}"
        async with grpc.aio.insecure_channel(address) as plain:
            check: Any = plain.unary_unary("/grpc.health.v1.Health/Check")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await check(b"", timeout=3)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


def test_cleave_certs_makes_a_ca_and_one_certificate_per_unit_once(tmp_path: Path) -> None:
    made = cleave("certs", "-t", "split", CLEAVE_VAR=str(tmp_path))
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "split" / "certs"
    assert "6 units have certificates in" in made.stdout
    assert 'grpc_tls = "{var}/certs" in [topology.split]' in made.stdout
    for unit in ("identity", "catalog", "customer", "ordering", "payment", "storefront"):
        UnitTls.load(folder, unit)
    again = cleave("certs", "-t", "split", CLEAVE_VAR=str(tmp_path))
    assert "wrote" not in again.stdout  # nothing replaced: running units keep theirs
    one_unit = cleave("certs", "-t", "monolith", CLEAVE_VAR=str(tmp_path))
    assert (one_unit.returncode, one_unit.stderr.strip()) == (
        1,
        "error: topology 'monolith' is one unit: it serves no gRPC",
    )
