"""Development seed: demo users (the same ids as the demo customers) and demo clients, so the
flows work out of the box: `cleave-cli`, `cleave-admin`, the API docs' client and the storefront's
confidential web client. Their secrets are generated here, never hard-coded, and kept only in
`var/<topology>/dev-credentials.json` (owner-only) for `cleave token` and the storefront; the
database keeps hashes. Each topology has its own file, so seeding one system never changes
another's secrets."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cleave.clock import utcnow
from cleave.files import private_dir
from cleave.service import ServiceContext, SystemFacts, UnitOfWork
from shop.identity import handlers, store, tokens
from shop.identity.contract.credentials import (
    ADMIN_CLIENT,
    CLI_CLIENT,
    CLI_REDIRECT_URI,
    CREDENTIALS_FILE,
    read_credentials,
)
from shop.identity.domain import ADMIN_SCOPE, USER_SCOPES, Account, OAuthError
from shop.identity.tokens import random_token
from shop.storefront import contract as storefront

DEMO_USERS = [
    ("alice", "alice@example.com", "Alice Example"),
    ("bob", "bob@example.com", "Bob Example"),
    ("carol", "carol@example.com", "Carol Example"),
]
# The demo administrator: signs in to the console and may hold the admin scope.
DEMO_ADMIN = ("admin", "admin@example.com", "Demo Admin")


def write_credentials(var_dir: Path, credentials: dict[str, Any]) -> None:
    private_dir(var_dir)
    path = var_dir / CREDENTIALS_FILE
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(credentials, handle, indent=2)
    temporary.replace(path)


def welcome(system: SystemFacts) -> str:
    names = ", ".join(user_id for user_id, _, _ in DEMO_USERS[:-1]) + f" and {DEMO_USERS[-1][0]}"
    return (
        f"Demo users {names}: their passwords are in {system.state_dir / CREDENTIALS_FILE}; "
        "`cleave token --customer alice` signs one in for curl. "
        f"The demo administrator {DEMO_ADMIN[1]} (password in the same file) signs in to "
        "the console wherever it asks for a sign-in (several units, or not on loopback)."
    )


# The secrets this seed is about to register, by the id of their user or client: each with its
# hash, made beforehand (one registered by someone else meanwhile is skipped, its hash unused).
Hashed = dict[str, tuple[str, str]]


async def seed(context: ServiceContext) -> int:
    var_dir = context.system.state_dir
    credentials = read_credentials(var_dir)
    hashed = await _hash_missing_secrets(context, credentials)
    added = 0
    async with context.unit_of_work() as uow:
        await tokens.ensure_signing_key(uow.connection, utcnow())
        for user_id, email, name in [*DEMO_USERS, DEMO_ADMIN]:
            if await store.user_by_id(uow.connection, user_id) is not None:
                continue
            password, password_hash = hashed.get(
                user_id, (_user_password(credentials, user_id), None)
            )
            admin = user_id == DEMO_ADMIN[0]
            account = Account(email, name, password)
            await handlers.create_user(
                uow, account, user_id=user_id, admin=admin, password_hash=password_hash
            )
            credentials["users"][user_id] = {"email": email, "password": password}
            added += 1
        if await store.client_by_id(uow.connection, CLI_CLIENT) is None:
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
        added += await _ensure_docs_client(uow, context.system)
        added += await _ensure_console_client(uow, context.system)
        if await store.client_by_id(uow.connection, ADMIN_CLIENT) is None:
            # A secret this system's seed wrote before is kept, never rotated behind its back.
            kept, kept_hash = hashed.get(
                ADMIN_CLIENT, (_client_secret(credentials, ADMIN_CLIENT), None)
            )
            secret = await handlers.create_client(
                uow,
                ADMIN_CLIENT,
                name="Cleave operator (admin)",
                scopes=frozenset({"admin"}),
                secret=kept,
                secret_hash=kept_hash,
            )
            credentials["clients"][ADMIN_CLIENT] = {"secret": secret}
            added += 1
        added += await _ensure_storefront_client(
            context, uow, credentials["clients"], hashed.get(storefront.CLIENT_ID)
        )
    if added:
        write_credentials(var_dir, credentials)
    return added


def _user_password(credentials: dict[str, Any], user_id: str) -> str:
    """A demo user's password: the one this system's seed wrote before, else a new one."""
    kept: str | None = credentials["users"].get(user_id, {}).get("password")
    return kept or secrets.token_urlsafe(12)


def _client_secret(credentials: dict[str, Any], client_id: str) -> str | None:
    """A secret this system's seed wrote before is kept, never rotated behind its back."""
    kept: str | None = credentials["clients"].get(client_id, {}).get("secret")
    return kept


async def _hash_missing_secrets(context: ServiceContext, credentials: dict[str, Any]) -> Hashed:
    """The password of each demo user and the secret of each confidential client that is about
    to be made, with its hash, by id. Made before the transaction, several at once: one Argon2
    hash is ~0.2 s of one core, and one after another the six of a first start took a second.
    An account that someone else makes meanwhile is found in the transaction and skipped."""
    wanted: dict[str, str] = {}
    async with context.read() as connection:
        for user_id, _, _ in [*DEMO_USERS, DEMO_ADMIN]:
            if await store.user_by_id(connection, user_id) is None:
                wanted[user_id] = _user_password(credentials, user_id)
        for client_id in (ADMIN_CLIENT, storefront.CLIENT_ID):
            if await store.client_by_id(connection, client_id) is None:
                wanted[client_id] = _client_secret(credentials, client_id) or random_token()
    # No more at once than there are cores: each also holds 64 MiB while it runs.
    cores = asyncio.Semaphore(os.cpu_count() or 1)

    async def hash_one(secret: str) -> str:
        async with cores:
            return await handlers.hash_password(secret)

    hashes = await asyncio.gather(*(hash_one(secret) for secret in wanted.values()))
    return {
        key: (secret, hash_) for (key, secret), hash_ in zip(wanted.items(), hashes, strict=True)
    }


async def register_client(
    context: ServiceContext, client_id: str, scopes: frozenset[str], secret: str
) -> bool:
    """One of the system's own confidential clients (a unit's, for its calls to other units), as
    the chassis asks for it: registered with this secret and only these scopes."""
    async with context.unit_of_work() as uow:
        row = await store.client_by_id(uow.connection, client_id)
        if row is None:
            name = f"Cleave unit {client_id} (calls between services)"
            await handlers.create_client(uow, client_id, name=name, scopes=scopes, secret=secret)
            return True
        changed = False
        if row.scopes.split() != sorted(scopes):
            scoped = " ".join(sorted(scopes))
            await store.set_client_scopes(uow.connection, client_id, scoped)
            changed = True
        if not (row.secret_hash and await handlers.password_matches(row.secret_hash, secret)):
            await handlers.new_client_secret(uow, client_id, secret)
            changed = True
        return changed


async def _ensure_docs_client(uow: UnitOfWork, system: SystemFacts) -> int:
    """The API docs page's public client, redirecting to wherever this system serves its docs
    now (an address it served from before stays registered: a port change breaks nothing)."""
    if not system.docs_client or not system.docs_redirect_uri:
        return 0
    row = await store.client_by_id(uow.connection, system.docs_client)
    if row is None:
        await handlers.create_client(
            uow,
            system.docs_client,
            name="API docs (public, PKCE)",
            scopes=USER_SCOPES,
            redirect_uris=(system.docs_redirect_uri,),
            public=True,
        )
        return 1
    known = row.redirect_uris.split()
    if system.docs_redirect_uri not in known:
        uris = " ".join([*known, system.docs_redirect_uri])
        await store.set_client_redirect_uris(uow.connection, system.docs_client, uris)
    return 0


async def _ensure_console_client(uow: UnitOfWork, system: SystemFacts) -> int:
    """The console's public client: it may ask for the admin scope (which the provider grants
    only to administrators) and for whom it signed in; redirecting to the console's callback at
    every address this system has served from."""
    if not system.console_client or not system.console_redirect_uri:
        return 0
    row = await store.client_by_id(uow.connection, system.console_client)
    uri = system.console_redirect_uri
    try:
        if row is None:
            await handlers.create_client(
                uow,
                system.console_client,
                name="Cleave console (public, PKCE)",
                scopes=frozenset({"openid", "email", ADMIN_SCOPE}),
                redirect_uris=(uri,),
                public=True,
            )
            return 1
        if uri not in row.redirect_uris.split():
            await handlers.add_redirect_uris(uow, system.console_client, (uri,))
    except OAuthError as error:  # a plain-http public URL off loopback: no redirect allowed
        uow.context.log.warning("the console cannot sign anyone in here", reason=error.description)
    return 0


async def _ensure_storefront_client(
    context: ServiceContext,
    uow: UnitOfWork,
    clients: dict[str, Any],
    prepared: tuple[str, str] | None,
) -> int:
    """The storefront's confidential client, with redirect URIs at this system's public URL (an
    address it served from before stays registered) and a secret the credentials file holds."""
    wanted = storefront.redirect_uris(context.system.public_url or "http://127.0.0.1:8000")
    kept = clients.get(storefront.CLIENT_ID, {})
    secret = kept.get("secret")
    row = await store.client_by_id(uow.connection, storefront.CLIENT_ID)
    try:
        if row is None:
            secret, secret_hash = prepared or (secret, None)
            secret = await handlers.create_client(
                uow,
                storefront.CLIENT_ID,
                name=storefront.CLIENT_NAME,
                scopes=storefront.SCOPES,
                redirect_uris=wanted,
                secret=secret,
                secret_hash=secret_hash,
            )
        else:
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
