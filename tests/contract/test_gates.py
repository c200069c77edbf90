"""The pact gates bite: a provider that drops or renames a field a consumer's pact relies on,
or stops publishing the event type it reads, fails verification with a line naming the consumer
and the field; a compatible change (a new optional field) passes. And `can_i_deploy` answers no
when a consumer running in the environment would lose a field, yes otherwise."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cleave.config import SystemConfig
from cleave.contracts.matrix import Matrix, can_i_deploy, matrix_path, record_deployment
from cleave.contracts.pacts import PACT_DIR, PactFile, pact_dir, read_pacts, verify_pact
from cleave.events import Event
from cleave.money import Money
from shop.customer import handlers as customer_handlers
from shop.customer import service as customer_service
from shop.identity.handlers import grants as identity_grants
from shop.ordering import service as ordering_service
from shop.ordering.contract import OrderConfirmed
from tests.conftest import ROOT


def _pact(config: SystemConfig, consumer: str, provider: str) -> PactFile:
    [pact] = [
        p for p in read_pacts(pact_dir(config)) if (p.consumer, p.provider) == (consumer, provider)
    ]
    return pact


def _ordering_publishing(monkeypatch: pytest.MonkeyPatch, event: type[Event]) -> None:
    """Ordering as a changed version would be: its confirmation event model replaced."""
    published = tuple(e for e in ordering_service.service.publishes if e is not OrderConfirmed)
    changed = replace(ordering_service.service, publishes=(*published, event))
    monkeypatch.setattr(ordering_service, "service", changed)


class WithoutCustomer(Event):
    event_type = "shop.ordering.order_confirmed.v1"

    order_id: str
    total: Money


class RenamedCustomer(Event):
    event_type = "shop.ordering.order_confirmed.v1"

    order_id: str
    client_id: str
    total: Money


class WithCoupon(Event):
    event_type = "shop.ordering.order_confirmed.v1"

    order_id: str
    customer_id: str
    total: Money
    coupon: str | None = None


class OnlyV2(Event):
    event_type = "shop.ordering.order_confirmed.v2"

    order_id: str
    customer_id: str
    total: Money


@pytest.mark.parametrize("event", [WithoutCustomer, RenamedCustomer])
def test_a_dropped_or_renamed_event_field_fails_naming_consumer_and_field(
    base_config: SystemConfig, monkeypatch: pytest.MonkeyPatch, event: type[Event]
) -> None:
    _ordering_publishing(monkeypatch, event)
    problems = verify_pact(base_config, _pact(base_config, "customer", "ordering"))
    assert problems
    assert all(
        line.startswith("customer <- ordering: shop.ordering.order_confirmed.v1")
        for line in problems
    )
    assert any("customer_id" in line for line in problems), problems


def test_an_event_type_no_longer_published_fails(
    base_config: SystemConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ordering_publishing(monkeypatch, OnlyV2)
    problems = verify_pact(base_config, _pact(base_config, "customer", "ordering"))
    assert problems == [
        "customer <- ordering: shop.ordering.order_confirmed.v1: "
        "ordering does not publish shop.ordering.order_confirmed.v1"
    ]


def test_a_new_optional_event_field_passes(
    base_config: SystemConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ordering_publishing(monkeypatch, WithCoupon)
    assert verify_pact(base_config, _pact(base_config, "customer", "ordering")) == []


class RenamedInfo(BaseModel):
    id: str
    email: str
    full_name: str


class RenamingCustomers(customer_handlers.LocalCustomers):
    """Customer's port as a changed version would answer: `name` renamed `full_name`."""

    async def get_customer(self, customer_id: str) -> RenamedInfo | None:  # type: ignore[override]
        info = await super().get_customer(customer_id)
        return (
            None if info is None else RenamedInfo(id=info.id, email=info.email, full_name=info.name)
        )


def test_a_renamed_port_response_field_fails_naming_consumer_and_field(
    base_config: SystemConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = replace(customer_service.service.port, factory=RenamingCustomers)  # type: ignore[type-var]
    monkeypatch.setattr(customer_service, "service", replace(customer_service.service, port=port))
    problems = verify_pact(base_config, _pact(base_config, "ordering", "customer"))
    assert problems
    assert all(
        line.startswith("ordering <- customer: get_customer who exists") for line in problems
    )
    assert any("name" in line for line in problems), problems


def _tree(base_config: SystemConfig, tmp_path: Path) -> SystemConfig:
    """The system in a folder of its own: its pacts copied, its matrix empty."""
    shutil.copytree(ROOT / PACT_DIR, tmp_path / PACT_DIR)
    return replace(base_config, root=tmp_path)


def test_can_i_deploy_refuses_a_provider_that_breaks_a_deployed_consumer(
    base_config: SystemConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _tree(base_config, tmp_path)
    assert record_deployment(config, "customer", "1.0.0", "production") == []
    assert record_deployment(config, "ordering", "1.0.0", "production") == []

    compatible = can_i_deploy(config, "ordering", "1.1.0", "production")
    assert compatible.deployable, compatible.reasons
    assert "ordering 1.1.0 satisfies the pact of customer 1.0.0 in production" in compatible.reasons

    _ordering_publishing(monkeypatch, WithoutCustomer)
    breaking = can_i_deploy(config, "ordering", "1.2.0", "production")
    assert not breaking.deployable
    assert "ordering 1.2.0 breaks the pact of customer 1.0.0 in production:" in breaking.reasons
    assert any("customer <- ordering" in r and "customer_id" in r for r in breaking.reasons)
    # Elsewhere no customer runs: nothing there reads the field.
    assert can_i_deploy(config, "ordering", "1.2.0", "staging").deployable


def test_the_matrix_keeps_the_brokers_records(base_config: SystemConfig, tmp_path: Path) -> None:
    config = _tree(base_config, tmp_path)
    record_deployment(config, "customer", "1.0.0", "production")
    record_deployment(config, "customer", "1.0.1", "production")
    matrix = Matrix.load(matrix_path(config))
    assert matrix.deployed("customer", "production") == "1.0.1"
    assert {(p["consumer"], p["consumerVersion"], p["provider"]) for p in matrix.pacts} >= {
        ("customer", "1.0.1", "ordering"),
        ("customer", "1.0.1", "identity"),
    }
    # Customer provides for ordering's and the storefront's pacts: verified by each version.
    assert {(v["providerVersion"], v["consumer"], v["success"]) for v in matrix.verifications} == {
        (version, consumer, True)
        for version in ("1.0.0", "1.0.1")
        for consumer in ("ordering", "storefront")
    }


def test_a_rest_field_the_provider_does_not_send_fails_naming_consumer_and_field(
    base_config: SystemConfig,
) -> None:
    pact = _pact(base_config, "storefront", "catalog")
    content = json.loads(json.dumps(pact.content))
    [one] = [i for i in content["interactions"] if i["description"] == "one product"]
    one["response"]["body"]["content"]["weight_grams"] = 330
    problems = verify_pact(base_config, PactFile("storefront", "catalog", content))
    assert problems
    assert all(line.startswith("storefront <- catalog: one product") for line in problems)
    assert any("weight_grams" in line for line in problems), problems


def test_a_token_field_the_storefront_reads_and_identity_drops_fails_naming_both(
    base_config: SystemConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Identity as a changed version would be: its code exchange answers without the ID token
    the storefront signs a person in with."""
    issue = identity_grants._user_tokens

    async def without_id_token(*args: Any, **kwargs: Any) -> dict[str, Any]:
        issued = await issue(*args, **kwargs)
        issued.pop("id_token", None)
        return issued

    monkeypatch.setattr(identity_grants, "_user_tokens", without_id_token)
    problems = verify_pact(base_config, _pact(base_config, "storefront", "identity"))
    assert problems
    assert all(
        line.startswith("storefront <- identity: an authorization code grant") for line in problems
    )
    assert any("id_token" in line for line in problems), problems
