"""The identity service, declared once: the OpenID Connect provider."""

from __future__ import annotations

from pathlib import Path

from cleave.service import Service
from shop.identity import api, seed, store
from shop.identity.contract import UserRegistered

service = Service(
    name="identity",
    description="OpenID Connect provider: accounts, clients, tokens and signing keys.",
    metadata=store.metadata,
    migrations=Path(__file__).parent / "migrations",
    router=api.router,
    publishes=(UserRegistered,),
    seed=seed.seed,
    welcome=seed.welcome,
    registers_clients=seed.register_client,
)
