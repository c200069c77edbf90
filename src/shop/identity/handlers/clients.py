"""OAuth clients: registering them, their redirect URIs and secrets, and how a client proves
who it is at the token endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.errors import Conflict, NotFound
from cleave.service import UnitOfWork
from shop.identity import store
from shop.identity.domain import GRANT_TYPES, OAuthError, validate_client_id
from shop.identity.handlers.accounts import ensure_id_is_free
from shop.identity.handlers.passwords import hash_password, password_matches
from shop.identity.tokens import random_token


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    public: bool
    redirect_uris: tuple[str, ...]
    scopes: frozenset[str]
    grant_types: frozenset[str]


def _client(row: store.ClientRow) -> Client:
    return Client(
        id=row.id,
        name=row.name,
        public=row.secret_hash is None,
        redirect_uris=tuple(row.redirect_uris.split()),
        scopes=frozenset(row.scopes.split()),
        grant_types=frozenset(row.grant_types.split()),
    )


async def create_client(
    uow: UnitOfWork,
    client_id: str,
    *,
    name: str,
    scopes: frozenset[str],
    redirect_uris: tuple[str, ...] = (),
    public: bool = False,
    secret: str | None = None,
    secret_hash: str | None = None,
) -> str | None:
    """Register a client; returns its generated secret (shown once), or None for a public one.
    `secret_hash` is `hash_password(secret)` made beforehand, out of the transaction."""
    if secret_hash is not None and secret is None:
        raise ValueError("a secret's hash comes with the secret it is the hash of")
    validate_client_id(client_id)
    if await store.client_by_id(uow.connection, client_id) is not None:
        raise Conflict(f"client {client_id} exists already", code="client-exists")
    await ensure_id_is_free(uow.connection, client_id)
    for uri in redirect_uris:
        _check_redirect_uri(uri)
    grant_types = {"authorization_code", "refresh_token"} if redirect_uris else set()
    if not public:
        grant_types.add("client_credentials")
        secret = secret or random_token()
    await store.insert_client(
        uow.connection,
        store.ClientRow(
            id=client_id,
            name=name,
            secret_hash=None if public else secret_hash or await hash_password(secret or ""),
            redirect_uris=" ".join(redirect_uris),
            scopes=" ".join(sorted(scopes)),
            grant_types=" ".join(sorted(grant_types & GRANT_TYPES)),
            created_at=utcnow(),
        ),
    )
    return None if public else secret


async def add_redirect_uris(uow: UnitOfWork, client_id: str, uris: tuple[str, ...]) -> None:
    """Register more exact redirect URIs for a client (as when the system moves address)."""
    row = await store.client_by_id(uow.connection, client_id)
    if row is None:
        raise NotFound(f"no client {client_id}")
    for uri in uris:
        _check_redirect_uri(uri)
    known = row.redirect_uris.split()
    merged = known + [uri for uri in uris if uri not in known]
    await store.set_client_redirect_uris(uow.connection, client_id, " ".join(merged))


async def new_client_secret(uow: UnitOfWork, client_id: str, secret: str | None = None) -> str:
    """Replace a confidential client's secret (with `secret`, or a new one, returned once); it is
    kept hashed."""
    secret = secret or random_token()
    if not await store.set_client_secret_hash(
        uow.connection, client_id, await hash_password(secret)
    ):
        raise NotFound(f"no client {client_id}")
    return secret


def _check_redirect_uri(uri: str) -> None:
    if not uri.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise OAuthError("invalid_redirect_uri", f"{uri} must be https or a loopback URL")


async def find_client(connection: AsyncConnection, client_id: str) -> Client | None:
    row = await store.client_by_id(connection, client_id)
    return None if row is None else _client(row)


async def authenticate_client(
    connection: AsyncConnection, client_id: str | None, secret: str | None
) -> Client:
    """A confidential client proves its secret; a public client only names itself."""
    row = await store.client_by_id(connection, client_id) if client_id else None
    if row is None:
        raise OAuthError("invalid_client", "unknown client", status=401)
    if row.secret_hash is not None and not (
        secret and await password_matches(row.secret_hash, secret)
    ):
        raise OAuthError("invalid_client", "client authentication failed", status=401)
    if row.secret_hash is None and secret:
        raise OAuthError("invalid_client", "a public client has no secret", status=401)
    return _client(row)
