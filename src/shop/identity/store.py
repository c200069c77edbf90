"""Identity's tables and queries. Secrets are stored only as hashes (Argon2 for passwords,
SHA-256 for high-entropy random tokens); nothing outside identity touches these tables."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    false,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.auth.revocation import Kind
from cleave.clock import utcnow
from cleave.data.database import UtcDateTime

metadata = MetaData()

# Each table is followed by the type its rows are read as: its fields are the table's columns in
# order (a unit test holds them equal), so mypy checks every column name the handlers read.

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    # An administrator's tokens may carry the admin scope, when the client may ask for it.
    Column("admin", Boolean, nullable=False, default=False, server_default=false()),
)


class UserRow(NamedTuple):
    id: str
    email: str
    name: str
    password_hash: str
    disabled: bool
    created_at: datetime
    admin: bool


clients = Table(
    "clients",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(200), nullable=True),  # None: a public client (PKCE only)
    Column("redirect_uris", Text, nullable=False),  # space-separated, matched exactly
    Column("scopes", Text, nullable=False),  # space-separated: the most it may ask for
    Column("grant_types", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)


class ClientRow(NamedTuple):
    id: str
    name: str
    secret_hash: str | None
    redirect_uris: str
    scopes: str
    grant_types: str
    created_at: datetime


authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("grant_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("nonce", String(255), nullable=True),
    Column("auth_time", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)


class AuthorizationCodeRow(NamedTuple):
    code_hash: str
    grant_id: str
    client_id: str
    user_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    nonce: str | None
    auth_time: datetime
    expires_at: datetime
    used_at: datetime | None


# A grant is one sign-in's family of tokens: its refresh tokens rotate, and revoking it ends all.
grants = Table(
    "grants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("auth_time", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)


class GrantRow(NamedTuple):
    id: str
    client_id: str
    user_id: str
    scope: str
    auth_time: datetime
    created_at: datetime
    revoked_at: datetime | None


refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("grant_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)
Index("ix_refresh_tokens_grant", refresh_tokens.c.grant_id)


class RefreshTokenRow(NamedTuple):
    token_hash: str
    grant_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


revoked_access_tokens = Table(
    "revoked_access_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
)


class RevokedAccessTokenRow(NamedTuple):
    jti: str
    expires_at: datetime


# What every unit must refuse until `until` (cleave.auth.revocation): kind is subject, token or
# session; kept here so a unit that starts later reads it too.
revocations = Table(
    "revocations",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("value", String(255), primary_key=True),
    Column("until", UtcDateTime, nullable=False),
)


class RevocationRow(NamedTuple):
    kind: Kind
    value: str
    until: datetime


signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_jwk", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("activates_at", UtcDateTime, nullable=False),  # published before it signs
    Column("retires_at", UtcDateTime, nullable=True),  # stops signing
    Column("expires_at", UtcDateTime, nullable=True),  # unpublished: its last token has expired
)


class SigningKeyRow(NamedTuple):
    kid: str
    private_jwk: str
    created_at: datetime
    activates_at: datetime
    retires_at: datetime | None
    expires_at: datetime | None


sign_in_attempts = Table(
    "sign_in_attempts",
    metadata,
    Column("key", String(400), primary_key=True),  # "account:<email>" or "address:<ip>"
    Column("failures", Integer, nullable=False),
    Column("first_failure_at", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
)


class SignInAttemptsRow(NamedTuple):
    key: str
    failures: int
    first_failure_at: datetime
    locked_until: datetime | None


sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)


class SessionRow(NamedTuple):
    id_hash: str
    user_id: str
    created_at: datetime
    expires_at: datetime


# --- users ------------------------------------------------------------------------------------


async def user_by_id(connection: AsyncConnection, user_id: str) -> UserRow | None:
    row = (await connection.execute(select(users).where(users.c.id == user_id))).one_or_none()
    return None if row is None else UserRow._make(row)


async def user_by_email(connection: AsyncConnection, email: str) -> UserRow | None:
    row = (await connection.execute(select(users).where(users.c.email == email))).one_or_none()
    return None if row is None else UserRow._make(row)


async def all_users(connection: AsyncConnection) -> list[UserRow]:
    """Every account, by email."""
    rows = await connection.execute(select(users).order_by(users.c.email))
    return [UserRow._make(row) for row in rows]


async def insert_user(connection: AsyncConnection, user: UserRow) -> None:
    await connection.execute(users.insert().values(user._asdict()))


async def disable_user(connection: AsyncConnection, user_id: str) -> None:
    await connection.execute(update(users).where(users.c.id == user_id).values(disabled=True))


# --- clients ----------------------------------------------------------------------------------


async def client_by_id(connection: AsyncConnection, client_id: str) -> ClientRow | None:
    statement = select(clients).where(clients.c.id == client_id)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else ClientRow._make(row)


async def all_clients(connection: AsyncConnection) -> list[ClientRow]:
    """Every client, by id."""
    rows = await connection.execute(select(clients).order_by(clients.c.id))
    return [ClientRow._make(row) for row in rows]


async def insert_client(connection: AsyncConnection, client: ClientRow) -> None:
    await connection.execute(clients.insert().values(client._asdict()))


async def set_client_scopes(connection: AsyncConnection, client_id: str, scopes: str) -> None:
    await connection.execute(update(clients).where(clients.c.id == client_id).values(scopes=scopes))


async def set_client_redirect_uris(
    connection: AsyncConnection, client_id: str, redirect_uris: str
) -> None:
    await connection.execute(
        update(clients).where(clients.c.id == client_id).values(redirect_uris=redirect_uris)
    )


async def set_client_secret_hash(
    connection: AsyncConnection, client_id: str, secret_hash: str
) -> bool:
    """False when there is no such client."""
    changed = await connection.execute(
        update(clients).where(clients.c.id == client_id).values(secret_hash=secret_hash)
    )
    return changed.rowcount == 1


async def delete_client(connection: AsyncConnection, client_id: str) -> bool:
    """False when there was no such client."""
    deleted = await connection.execute(delete(clients).where(clients.c.id == client_id))
    return deleted.rowcount == 1


# --- authorization codes, grants and refresh tokens -------------------------------------------


async def code_by_hash(connection: AsyncConnection, code_hash: str) -> AuthorizationCodeRow | None:
    statement = select(authorization_codes).where(authorization_codes.c.code_hash == code_hash)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else AuthorizationCodeRow._make(row)


async def insert_code(connection: AsyncConnection, code: AuthorizationCodeRow) -> None:
    await connection.execute(authorization_codes.insert().values(code._asdict()))


async def grant_by_id(connection: AsyncConnection, grant_id: str) -> GrantRow | None:
    row = (await connection.execute(select(grants).where(grants.c.id == grant_id))).one_or_none()
    return None if row is None else GrantRow._make(row)


async def grants_of(connection: AsyncConnection, subject: str) -> list[GrantRow]:
    """The grants of a user, or those made through a client, by id."""
    statement = (
        select(grants)
        .where((grants.c.user_id == subject) | (grants.c.client_id == subject))
        .order_by(grants.c.id)
    )
    return [GrantRow._make(row) for row in await connection.execute(statement)]


async def insert_grant(connection: AsyncConnection, grant: GrantRow) -> None:
    await connection.execute(grants.insert().values(grant._asdict()))


async def refresh_token_by_hash(
    connection: AsyncConnection, token_hash: str
) -> RefreshTokenRow | None:
    statement = select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else RefreshTokenRow._make(row)


async def insert_refresh_token(connection: AsyncConnection, token: RefreshTokenRow) -> None:
    await connection.execute(refresh_tokens.insert().values(token._asdict()))


async def revoked_access_token(
    connection: AsyncConnection, jti: str
) -> RevokedAccessTokenRow | None:
    statement = select(revoked_access_tokens).where(revoked_access_tokens.c.jti == jti)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else RevokedAccessTokenRow._make(row)


async def insert_revoked_access_token(
    connection: AsyncConnection, revoked: RevokedAccessTokenRow
) -> None:
    await connection.execute(revoked_access_tokens.insert().values(revoked._asdict()))


async def claim_code(connection: AsyncConnection, code_hash: str, now: datetime) -> bool:
    """Mark a code used; False when it was used before (one conditional UPDATE, race-free)."""
    result = await connection.execute(
        update(authorization_codes)
        .where(authorization_codes.c.code_hash == code_hash)
        .where(authorization_codes.c.used_at.is_(None))
        .values(used_at=now)
    )
    return result.rowcount == 1


async def claim_refresh_token(connection: AsyncConnection, token_hash: str, now: datetime) -> bool:
    result = await connection.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.token_hash == token_hash)
        .where(refresh_tokens.c.used_at.is_(None))
        .values(used_at=now)
    )
    return result.rowcount == 1


async def revoke_grant(connection: AsyncConnection, grant_id: str) -> None:
    await connection.execute(
        update(grants)
        .where(grants.c.id == grant_id)
        .where(grants.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


# --- signing keys -----------------------------------------------------------------------------


async def insert_signing_key(connection: AsyncConnection, key: SigningKeyRow) -> None:
    await connection.execute(signing_keys.insert().values(key._asdict()))


async def retire_signing_key(
    connection: AsyncConnection, kid: str, *, retires_at: datetime, expires_at: datetime
) -> None:
    await connection.execute(
        update(signing_keys)
        .where(signing_keys.c.kid == kid)
        .values(retires_at=retires_at, expires_at=expires_at)
    )


async def published_keys(connection: AsyncConnection, now: datetime) -> list[SigningKeyRow]:
    statement = (
        select(signing_keys)
        .where((signing_keys.c.expires_at.is_(None)) | (signing_keys.c.expires_at > now))
        .order_by(signing_keys.c.activates_at.desc())
    )
    return [SigningKeyRow(*row) for row in await connection.execute(statement)]


# --- sign-in attempts and sessions ------------------------------------------------------------


async def attempts_by_key(connection: AsyncConnection, key: str) -> SignInAttemptsRow | None:
    statement = select(sign_in_attempts).where(sign_in_attempts.c.key == key)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else SignInAttemptsRow._make(row)


async def insert_attempts(connection: AsyncConnection, attempts: SignInAttemptsRow) -> None:
    await connection.execute(sign_in_attempts.insert().values(attempts._asdict()))


async def update_attempts(connection: AsyncConnection, attempts: SignInAttemptsRow) -> None:
    await connection.execute(
        update(sign_in_attempts)
        .where(sign_in_attempts.c.key == attempts.key)
        .values(attempts._asdict())
    )


async def clear_attempts(connection: AsyncConnection, key: str) -> None:
    await connection.execute(delete(sign_in_attempts).where(sign_in_attempts.c.key == key))


async def session_by_hash(connection: AsyncConnection, id_hash: str) -> SessionRow | None:
    statement = select(sessions).where(sessions.c.id_hash == id_hash)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else SessionRow._make(row)


async def insert_session(connection: AsyncConnection, session: SessionRow) -> None:
    await connection.execute(sessions.insert().values(session._asdict()))


async def delete_session(connection: AsyncConnection, id_hash: str) -> None:
    await connection.execute(delete(sessions).where(sessions.c.id_hash == id_hash))


async def delete_sessions_of(connection: AsyncConnection, user_id: str) -> None:
    await connection.execute(delete(sessions).where(sessions.c.user_id == user_id))


# --- revocations every unit refuses ---------------------------------------------------------


async def record_revocation(
    connection: AsyncConnection, kind: Kind, value: str, until: datetime
) -> datetime:
    """Keep a revocation, at the later `until` if it was kept before; returns the `until` kept.
    Rows past their `until` are removed here: nothing is refused after it."""
    await connection.execute(delete(revocations).where(revocations.c.until <= utcnow()))
    this = (revocations.c.kind == kind) & (revocations.c.value == value)
    found = await connection.execute(select(revocations.c.until).where(this))
    kept: datetime | None = found.scalar_one_or_none()
    if kept is None:
        await connection.execute(revocations.insert().values(kind=kind, value=value, until=until))
        return until
    if kept >= until:
        return kept
    await connection.execute(update(revocations).where(this).values(until=until))
    return until


async def revocations_in_force(connection: AsyncConnection, now: datetime) -> list[RevocationRow]:
    statement = select(revocations).where(revocations.c.until > now).order_by(revocations.c.until)
    return [RevocationRow(*row) for row in await connection.execute(statement)]
