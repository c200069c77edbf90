"""The storefront service, declared once: the shop's web site, at the root of the public address.

A backend-for-frontend. It renders pages on the server, keeps its own tables (browser sessions,
carts, checkouts) and reaches the other services only through their public REST API, as the
signed-in person (see `upstream` for why REST rather than ports). It runs in the monolith, as its
own unit in `split`, and beside the others in `payments-out`, with no code change.
"""

from __future__ import annotations

from pathlib import Path

from cleave.service import Service, SystemFacts
from shop.storefront import pages, store


def welcome(system: SystemFacts) -> str:
    return f"The shop is at {system.public_url}/: create an account there and buy something."


service = Service(
    name="storefront",
    description="The shop's web site: pages, carts, sign-in and checkout, on the services' API.",
    metadata=store.metadata,
    migrations=Path(__file__).parent / "migrations",
    pages=pages.router,
    welcome=welcome,
)
