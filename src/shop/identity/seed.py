"""Development seed: demo users (the same ids as the demo customers) and demo clients, so the
flows work out of the box: `cleave-cli`, `cleave-admin` and the storefront's confidential web
client. Their secrets are generated here, never hard-coded, and kept only in
`var/dev-credentials.json` (owner-only) for `cleave token` and the storefront; the database keeps
hashes."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from cleave.auth.credentials import read_credentials, write_credentials
from cleave.clock import utcnow
from cleave.service import ServiceContext, UnitOfWork
from shop.identity import handlers, store, tokens
from shop.identity.domain import USER_SCOPES, Account, OAuthError
from shop.storefront import contract as storefront

DEMO_USERS = [
    ("alice", "alice@example.com", "Alice Example"),
    ("bob", "bob@example.com", "Bob Example"),
    ("carol", "carol@example.com", "Carol Example"),
]
CLI_CLIENT = "cleave-cli"
CLI_REDIRECT_URI = "http://127.0.0.1:8976/callback"
ADMIN_CLIENT = "cleave-admin"


async def seed(context: ServiceContext) -> int:
    var_dir = context.var_dir or Path("var")
    credentials = read_credentials(var_dir)
    added = 0
    async with context.unit_of_work() as uow:
        await tokens.ensure_signing_key(uow.connection, utcnow())
        for user_id, email, name in DEMO_USERS:
            if await store.one(uow.connection, store.users, id=user_id) is not None:
                continue
            password = credentials["users"].get(user_id, {}).get("password")
            password = password or secrets.token_urlsafe(12)
            await handlers.create_user(uow, Account(email, name, password), user_id=user_id)
            credentials["users"][user_id] = {"email": email, "password": password}
            added += 1
        if await store.one(uow.connection, store.clients, id=CLI_CLIENT) is None:
            await handlers.create_client(
                uow,
                CLI_CLIENT,
                name="Cleave command line (public, PKCE)",
                scopes=USER_SCOPES,
                redirect_uris=(CLI_REDIRECT_URI,),
                public=True,
            )
            credentials["clients"][CLI_CLIENT] = {"redirect_uri": CLI_REDIRECT_URI}
            added += 1
        if await store.one(uow.connection, store.clients, id=ADMIN_CLIENT) is None:
            secret = await handlers.create_client(
                uow, ADMIN_CLIENT, name="Cleave operator (admin)", scopes=frozenset({"admin"})
            )
            credentials["clients"][ADMIN_CLIENT] = {"secret": secret}
            added += 1
        added += await _seed_storefront_client(context, uow, credentials["clients"])
    if added:
        write_credentials(var_dir, credentials)
    return added


async def _seed_storefront_client(
    context: ServiceContext, uow: UnitOfWork, clients: dict[str, Any]
) -> int:
    """The storefront's client, with redirect URIs at this system's public URL (added when the
    system is served somewhere new) and a secret that the credentials file holds."""
    wanted = storefront.redirect_uris(context.public_url or "http://127.0.0.1:8000")
    kept = clients.get(storefront.CLIENT_ID, {})
    row = await store.one(uow.connection, store.clients, id=storefront.CLIENT_ID)
    try:
        if row is None:
            secret = await handlers.create_client(
                uow,
                storefront.CLIENT_ID,
                name=storefront.CLIENT_NAME,
                scopes=storefront.SCOPES,
                redirect_uris=wanted,
            )
        else:
            secret = kept.get("secret")
            if set(wanted) - set(row.redirect_uris.split()):
                await handlers.add_redirect_uris(uow, storefront.CLIENT_ID, wanted)
            elif secret:
                return 0
            secret = secret or await handlers.new_client_secret(uow, storefront.CLIENT_ID)
    except OAuthError as error:
        context.log.warning("the storefront cannot sign people in here", reason=error.description)
        return 0
    uris = sorted({*kept.get("redirect_uris", ()), *wanted})
    clients[storefront.CLIENT_ID] = {"secret": secret, "redirect_uris": uris}
    return 1
