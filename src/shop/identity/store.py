"""Identity's tables and queries. Secrets are stored only as hashes (Argon2 for passwords,
SHA-256 for high-entropy random tokens); nothing outside identity touches these tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, TypeVar

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


Stored = TypeVar("Stored", bound=tuple[Any, ...])
TABLE_OF: dict[type[tuple[Any, ...]], Table] = {
    UserRow: users,
    ClientRow: clients,
    AuthorizationCodeRow: authorization_codes,
    GrantRow: grants,
    RefreshTokenRow: refresh_tokens,
    RevokedAccessTokenRow: revoked_access_tokens,
    RevocationRow: revocations,
    SigningKeyRow: signing_keys,
    SignInAttemptsRow: sign_in_attempts,
    SessionRow: sessions,
}


async def one(
    connection: AsyncConnection, row_type: type[Stored], /, **where: Any
) -> Stored | None:
    """The row of `row_type`'s table matching every `column=value` given, or None."""
    table = TABLE_OF[row_type]
    statement = select(table)
    for column, value in where.items():
        statement = statement.where(table.c[column] == value)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else row_type(*row)


async def insert(connection: AsyncConnection, table: Table, **values: Any) -> None:
    await connection.execute(table.insert().values(**values))


async def set_values(
    connection: AsyncConnection, table: Table, where: dict[str, Any], **values: Any
) -> int:
    statement = update(table).values(**values)
    for column, value in where.items():
        statement = statement.where(table.c[column] == value)
    return (await connection.execute(statement)).rowcount


async def remove(connection: AsyncConnection, table: Table, **where: Any) -> int:
    statement = delete(table)
    for column, value in where.items():
        statement = statement.where(table.c[column] == value)
    return (await connection.execute(statement)).rowcount


async def all_rows(
    connection: AsyncConnection, row_type: type[Stored], order_by: str
) -> list[Stored]:
    table = TABLE_OF[row_type]
    return [
        row_type(*row)
        for row in await connection.execute(select(table).order_by(table.c[order_by]))
    ]


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


async def published_keys(connection: AsyncConnection, now: datetime) -> list[SigningKeyRow]:
    statement = (
        select(signing_keys)
        .where((signing_keys.c.expires_at.is_(None)) | (signing_keys.c.expires_at > now))
        .order_by(signing_keys.c.activates_at.desc())
    )
    return [SigningKeyRow(*row) for row in await connection.execute(statement)]


async def record_revocation(
    connection: AsyncConnection, kind: Kind, value: str, until: datetime
) -> datetime:
    """Keep a revocation, at the later `until` if it was kept before; returns the `until` kept.
    Rows past their `until` are removed here: nothing is refused after it."""
    await connection.execute(delete(revocations).where(revocations.c.until <= utcnow()))
    kept = await one(connection, RevocationRow, kind=kind, value=value)
    if kept is None:
        await insert(connection, revocations, kind=kind, value=value, until=until)
        return until
    if kept.until >= until:
        return kept.until
    await set_values(connection, revocations, {"kind": kind, "value": value}, until=until)
    return until


async def revocations_in_force(connection: AsyncConnection, now: datetime) -> list[RevocationRow]:
    statement = select(revocations).where(revocations.c.until > now).order_by(revocations.c.until)
    return [RevocationRow(*row) for row in await connection.execute(statement)]
