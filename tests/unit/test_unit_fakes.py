"""A test's fake for a port, as a unit takes it in place of the real one: only a fake that its
callers could call as they call the Protocol, and only for a port the unit's services call."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cleave.config import SystemConfig
from cleave.errors import ConfigError
from cleave.money import Money
from cleave.runtime import Unit
from cleave.service.context import check_fake
from shop.catalog.contract import CatalogPort
from shop.payment.contract import PaymentFailed, PaymentOutcome, PaymentPort
from tests.conftest import suite_config


class DecliningPayments:
    """Every card declined: a PaymentPort in full."""

    async def authorise(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> PaymentOutcome:
        raise PaymentFailed("declined")

    async def capture(self, order_id: str) -> PaymentOutcome:
        raise AssertionError("nothing authorised, nothing to capture")

    async def void(self, order_id: str) -> PaymentOutcome | None:
        return None


class WithoutVoid:
    async def authorise(
        self, order_id: str, customer_id: str, amount: Money, card_token: str
    ) -> PaymentOutcome:
        raise PaymentFailed("declined")

    async def capture(self, order_id: str) -> PaymentOutcome:
        raise AssertionError("unused")


class SyncCapture(DecliningPayments):
    def capture(self, order_id: str) -> PaymentOutcome:  # type: ignore[override]
        raise AssertionError("unused")


class RenamedParameter(DecliningPayments):
    async def void(self, order: str) -> PaymentOutcome | None:
        return None


class ExtraRequiredParameter(DecliningPayments):
    async def void(self, order_id: str, why: str) -> PaymentOutcome | None:  # type: ignore[override]
        return None


@pytest.fixture
def config(tmp_path: Path) -> SystemConfig:
    return suite_config(tmp_path / "var")


def test_a_fake_with_every_method_of_the_protocol_passes() -> None:
    check_fake(PaymentPort, DecliningPayments())


@pytest.mark.parametrize(
    ("fake", "problem"),
    [
        (WithoutVoid(), "WithoutVoid is no PaymentPort: it has no method void"),
        (SyncCapture(), "its capture is not async"),
        (RenamedParameter(), "its void(order) is not void(order_id)"),
        (ExtraRequiredParameter(), "its void(order_id, why) is not void(order_id)"),
    ],
)
def test_a_fake_that_differs_from_the_protocol_is_refused_by_name(
    fake: object, problem: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        check_fake(PaymentPort, fake)


async def test_the_unit_hands_the_fake_to_its_callers(config: SystemConfig) -> None:
    fake = DecliningPayments()
    unit = Unit(config, fakes={PaymentPort: fake})
    try:
        assert unit.ports.get(PaymentPort) is fake
        assert unit.context("ordering").port(PaymentPort) is fake
        assert type(unit.ports.get(CatalogPort)).__name__ == "LocalCatalog"  # the rest is real
    finally:
        await unit.stop()


def test_the_unit_refuses_a_fake_that_misses_a_method(config: SystemConfig) -> None:
    with pytest.raises(ConfigError, match="it has no method void"):
        Unit(config, fakes={PaymentPort: WithoutVoid()})


def test_the_unit_refuses_a_fake_for_a_port_its_services_do_not_call(
    config: SystemConfig,
) -> None:
    split = config.with_topology("split")
    with pytest.raises(ConfigError, match="PaymentPort in unit 'catalog', whose services do not"):
        Unit(split, "catalog", fakes={PaymentPort: DecliningPayments()})
