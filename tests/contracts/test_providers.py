"""Every pact under contracts/pacts/, verified against its provider's real code: what `make
test` runs so that a change to an event, a port or an API learns which consumer it breaks."""

from __future__ import annotations

import pytest

from cleave.config import SystemConfig
from cleave.contracts.pacts import PactFile, pact_dir, read_pacts, verify_pact
from tests.conftest import ROOT, suite_config

PACTS = read_pacts(pact_dir(suite_config(ROOT / "var")))


def test_every_pact_pair_is_checked_in() -> None:
    pairs = {(pact.consumer, pact.provider) for pact in PACTS}
    assert {
        ("customer", "identity"),
        ("customer", "ordering"),
        ("ordering", "catalog"),
        ("ordering", "customer"),
        ("ordering", "payment"),
        ("storefront", "catalog"),
        ("cleave-unit-client", "identity"),
    } <= pairs


@pytest.mark.parametrize("pact", PACTS, ids=lambda pact: f"{pact.consumer}-{pact.provider}")
def test_provider_satisfies_pact(base_config: SystemConfig, pact: PactFile) -> None:
    assert verify_pact(base_config, pact) == []
