"""Every pact under contracts/pacts/, verified against its provider's real code: what `make
test` runs so that a change to an event, a port or an API learns which consumer it breaks."""

from __future__ import annotations

import pytest

from cleave.auth.revocation import REVOCATION_EVENTS
from cleave.config import SystemConfig
from cleave.contracts.messages import port_methods
from cleave.contracts.pacts import PactFile, pact_dir, read_pacts, verify_pact
from cleave.runtime import load_services
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
        ("storefront", "customer"),
        ("storefront", "ordering"),
        ("storefront", "identity"),
        ("cleave-unit-client", "identity"),
        ("cleave-unit-revocations", "identity"),
    } <= pairs


def test_every_subscription_and_port_call_has_a_pact() -> None:
    """A new subscription, or a new port a service calls, fails here until its consumer writes
    the pact; so does an event type or a method the pact no longer covers."""
    config = suite_config(ROOT / "var")
    services = load_services(config)
    described = {
        (pact.consumer, pact.provider): {str(i["description"]) for i in pact.interactions}
        for pact in PACTS
    }
    expected: set[tuple[str, str, str]] = set()
    for name, service in services.items():
        for subscription in service.subscriptions:
            event_type = subscription.event.event_type
            [provider] = [n for n, s in services.items() if subscription.event in s.publishes]
            expected.add((name, provider, event_type))
        for protocol in service.calls:
            [provider] = [n for n, s in services.items() if s.port and s.port.protocol is protocol]
            expected |= {(name, provider, method) for method in port_methods(protocol)}
    provider = config.auth.provider
    expected |= {("cleave-unit-revocations", provider, e.event_type) for e in REVOCATION_EVENTS}
    missing = {
        (consumer, provider, what)
        for consumer, provider, what in expected
        if not any(
            d == what or d.startswith(f"{what} ") for d in described.get((consumer, provider), ())
        )
    }
    assert not missing, f"no pact covers (consumer, provider, event or method): {sorted(missing)}"


@pytest.mark.parametrize("pact", PACTS, ids=lambda pact: f"{pact.consumer}-{pact.provider}")
def test_provider_satisfies_pact(base_config: SystemConfig, pact: PactFile) -> None:
    assert verify_pact(base_config, pact) == []
