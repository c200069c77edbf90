"""No port answers a caller that cannot say who it is: real gRPC servers on loopback, probed as an
outsider would (no token, an expired one, a person's, another unit's) and called as the unit that
declared the call; the end user a call acts for reaches the far side; in-process, a service that
uses a port it did not declare fails the same way."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from joserfc import jwt

import cleave.rpc.server as rpc_server
from cleave.auth.client import fetch_client_credentials
from cleave.auth.revocation import Revocation, RevocationList
from cleave.auth.tokens import DevIssuer, TokenVerifier
from cleave.auth.units import (
    SECRETS_FILE,
    UNIT_SCOPE,
    acting_for,
    client_credentials,
    is_unit,
    on_behalf_of,
    unit_client_id,
    unit_secret,
)
from cleave.clock import utcnow
from cleave.config import SELF_ISSUER, SystemConfig
from cleave.errors import CleaveError, ConfigError, RemoteFailure
from cleave.money import Money
from cleave.rpc.contract import RpcContract
from cleave.rpc.server import RpcServer, ServedPort
from cleave.runtime import Unit
from cleave.web.app import create_app
from shop.catalog.contract import CatalogPort
from shop.customer.contract import CustomerPort
from shop.identity.contract import client_secret
from shop.identity.domain import USER_SCOPES
from shop.payment.contract import PaymentOutcome, PaymentPort, payment_pb2
from tests.integration.callers import CALLER, ISSUER, VERIFIER, remote_port, unit_token

SQLITE = "sqlite+aiosqlite:///{var}/{service}.db"
AUTHORISE = RpcContract.of(PaymentPort, payment_pb2).methods["authorise"]
ALICE_PAYS = AUTHORISE.encode_call(("o-1", "alice", Money(amount=4242, currency="EUR"), "tok"), {})


class RecordingPayments:
    """A payment port that notes each call it answers and whom it acted for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    async def authorise(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> PaymentOutcome:
        self.calls.append((order_id, on_behalf_of()))
        return PaymentOutcome(
            payment_id=f"pay-{order_id}", order_id=order_id, status="authorized", amount=amount
        )

    async def capture(self, order_id: str) -> PaymentOutcome:
        raise NotImplementedError

    async def void(self, order_id: str) -> PaymentOutcome | None:
        return None


class Recorder:
    def __init__(self) -> None:
        self.warnings: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append({"event": event, **fields})

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@pytest.fixture
def payments() -> RecordingPayments:
    return RecordingPayments()


@pytest.fixture
async def target(payments: RecordingPayments) -> AsyncIterator[str]:
    contract = RpcContract.of(PaymentPort, payment_pb2)
    port = ServedPort("payment", contract, payments, callers=frozenset({CALLER}))
    server = RpcServer("127.0.0.1:0", [port], verifier=VERIFIER)
    await server.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(grace=0.1)


async def probe(target: str, token: str | None) -> grpc.aio.AioRpcError:
    """Payment.Authorise for alice straight on the unit, as the outside probe of the issue did."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with grpc.aio.insecure_channel(target) as channel:
        call: Any = channel.unary_unary(AUTHORISE.path)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(ALICE_PAYS, metadata=metadata, timeout=5)
    return refused.value


async def test_a_call_with_no_token_or_an_expired_or_forged_one_is_unauthenticated(
    target: str, payments: RecordingPayments, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = Recorder()
    monkeypatch.setattr(rpc_server, "log", log)
    forger = DevIssuer.load_or_create(tmp_path, ISSUER.issuer, ISSUER.audience)  # another key
    forged = forger.issue(CALLER, [UNIT_SCOPE], client_id=CALLER)
    for token in (None, "not-a-jwt", unit_token(ttl_seconds=-120), forged):
        refused = await probe(target, token)
        assert refused.code() is grpc.StatusCode.UNAUTHENTICATED, (token, refused.details())
    assert "expired" in str((await probe(target, unit_token(ttl_seconds=-120))).details())
    assert payments.calls == []  # nothing ran
    assert {entry["code"] for entry in log.warnings} == {"UNAUTHENTICATED"}
    assert all(entry["event"] == "rpc refused" for entry in log.warnings)


async def test_a_person_or_a_unit_that_did_not_declare_the_call_is_permission_denied(
    target: str, payments: RecordingPayments, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Recorder()
    monkeypatch.setattr(rpc_server, "log", log)
    alice = ISSUER.issue("alice", sorted(USER_SCOPES), client_id="storefront")
    # A person whose id looks like a unit's still signed in through some client: not a unit.
    lookalike = ISSUER.issue(CALLER, sorted(USER_SCOPES), client_id="cleave-cli")
    other_unit = unit_token("catalog")
    for token in (alice, lookalike, other_unit):
        refused = await probe(target, token)
        assert refused.code() is grpc.StatusCode.PERMISSION_DENIED, refused.details()
    denied = str((await probe(target, other_unit)).details())
    assert "unit-catalog runs no service that declares calls to PaymentPort" in denied
    assert payments.calls == []
    callers = [entry["caller"] for entry in log.warnings[:3]]
    assert callers == ["storefront", "cleave-cli", unit_client_id("catalog")]


async def test_the_declared_caller_is_answered_and_says_whom_it_acts_for(
    target: str, payments: RecordingPayments
) -> None:
    remote = remote_port(PaymentPort, target, payment_pb2, service="payment")
    amount = Money(amount=4242, currency="EUR")
    try:
        outcome = await remote.authorise("o-1", "alice", amount, "tok")
        with acting_for("alice"):
            await remote.authorise("o-2", "alice", amount, "tok")
        assert outcome.status == "authorized"
        assert payments.calls == [("o-1", None), ("o-2", "alice")]

        anonymous = remote_port(PaymentPort, target, payment_pb2, service="payment", tokens=None)
        with pytest.raises(RemoteFailure, match="UNAUTHENTICATED"):
            await anonymous.authorise("o-3", "alice", amount, "tok")
        await anonymous.close()
    finally:
        await remote.close()


async def test_a_split_unit_lets_in_exactly_the_units_whose_services_declare_its_port(
    base_config: SystemConfig,
) -> None:
    split = base_config.with_topology("split")
    payment = Unit(split, "payment")
    assert payment._callers(PaymentPort) == {"unit-ordering"}
    catalog = Unit(split, "catalog")
    assert catalog._callers(CatalogPort) == {"unit-ordering"}
    out = base_config.with_topology("payments-out")
    assert Unit(out, "payments")._callers(PaymentPort) == {"unit-core"}


async def test_in_the_monolith_a_service_using_a_port_it_did_not_declare_fails_there(
    base_config: SystemConfig,
) -> None:
    unit = Unit(base_config)
    assert unit.context("ordering").port(PaymentPort) is unit.ports.get(PaymentPort)
    assert unit.context("payment").port(PaymentPort) is not None  # its own port
    with pytest.raises(ConfigError, match="catalog calls PaymentPort without declaring it"):
        unit.context("catalog").port(PaymentPort)
    with pytest.raises(ConfigError, match="storefront calls CustomerPort without declaring it"):
        unit.context("storefront").port(CustomerPort)


async def test_the_provider_unit_registers_every_unit_and_each_gets_a_token_only_it_can(
    base_config: SystemConfig,
) -> None:
    """The split's identity unit, on SQLite: at start it registers `unit-<unit>` for every unit,
    whose client-credentials token then passes the gRPC caller check; a person's client cannot
    ask for that scope."""
    split = base_config.with_topology("split")
    config = replace(
        split,
        auth=replace(split.auth, issuer=SELF_ISSUER),
        topology=replace(split.topology, broker="memory", database=SQLITE),
    )
    unit = Unit(config, "identity")
    await unit.migrate()
    await unit.seed()
    await unit.start()
    try:
        app = create_app(unit, start_unit=False)
        transport = httpx.ASGITransport(app=app)
        assert stat.S_IMODE((config.var_dir / SECRETS_FILE).stat().st_mode) == 0o600
        fetch = client_credentials(
            config.issuer,
            "unit-ordering",
            lambda: unit_secret(config.var_dir, "ordering"),
            transport=transport,
        )
        token, lifetime = await fetch()
        assert lifetime > 60
        principal = await app.state.verifier.verify(token)
        assert is_unit(principal.subject, principal.client_id, principal.scopes)
        assert principal.subject == "unit-ordering"
        assert await unit.register_unit_clients() == 0  # a restart changes nothing

        storefront_secret = client_secret(config.var_dir, "storefront")
        assert storefront_secret is not None
        with pytest.raises(CleaveError, match="may not ask for those scopes"):
            await fetch_client_credentials(
                config.issuer, "storefront", storefront_secret, [UNIT_SCOPE], transport=transport
            )
        wrong = client_credentials(
            config.issuer, "unit-ordering", lambda: "guess", transport=transport
        )
        with pytest.raises(CleaveError, match="client authentication failed"):
            await wrong()
    finally:
        await unit.stop()


async def test_a_caller_whose_token_was_revoked_is_unauthenticated(
    payments: RecordingPayments,
) -> None:
    revocations = RevocationList()
    verifier = TokenVerifier(ISSUER.issuer, ISSUER.audience, ISSUER, revocations=revocations)
    contract = RpcContract.of(PaymentPort, payment_pb2)
    port = ServedPort("payment", contract, payments, callers=frozenset({CALLER}))
    server = RpcServer("127.0.0.1:0", [port], verifier=verifier)
    await server.start()
    try:
        kept, revoked = unit_token(), unit_token()
        jti = jwt.decode(revoked, await ISSUER.key_set(None)).claims["jti"]
        revocations.add(Revocation(kind="token", value=jti, until=utcnow() + timedelta(minutes=10)))
        target = f"127.0.0.1:{server.port}"
        refused = await probe(target, revoked)
        assert refused.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in str(refused.details())
        assert payments.calls == []
        async with grpc.aio.insecure_channel(target) as channel:
            call: Any = channel.unary_unary(AUTHORISE.path)
            await call(ALICE_PAYS, metadata=(("authorization", f"Bearer {kept}"),), timeout=5)
        assert len(payments.calls) == 1  # only that token: the unit's next one is answered
    finally:
        await server.stop(grace=0.1)
