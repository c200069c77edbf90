"""The identity service, declared once: the OpenID Connect provider."""

from __future__ import annotations

from pathlib import Path

from cleave.auth.revocation import REVOCATION_EVENTS
from cleave.service import Service
from shop.identity import api, handlers, pact_states, seed, store
from shop.identity.contract import UserRegistered

service = Service(
    name="identity",
    description="OpenID Connect provider: accounts, clients, tokens and signing keys.",
    metadata=store.metadata,
    migrations=Path(__file__).parent / "migrations",
    router=api.router,
    publishes=(UserRegistered, *REVOCATION_EVENTS),
    seed=seed.seed,
    welcome=seed.welcome,
    registers_clients=seed.register_client,
    lists_revocations=handlers.revocations_in_force,
    provider_states=pact_states.PROVIDER_STATES,
)
