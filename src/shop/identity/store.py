"""Identity's tables and queries. Secrets are stored only as hashes (Argon2 for passwords,
SHA-256 for high-entropy random tokens); nothing outside identity touches these tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    delete,
    false,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.database import UtcDateTime

metadata = MetaData()

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

revoked_access_tokens = Table(
    "revoked_access_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
)

# What every unit must refuse until `until` (cleave.auth.revocation): kind is subject, token or
# session; kept here so a unit that starts later reads it too.
revocations = Table(
    "revocations",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("value", String(255), primary_key=True),
    Column("until", UtcDateTime, nullable=False),
)

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

sign_in_attempts = Table(
    "sign_in_attempts",
    metadata,
    Column("key", String(400), primary_key=True),  # "account:<email>" or "address:<ip>"
    Column("failures", Integer, nullable=False),
    Column("first_failure_at", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)


async def one(connection: AsyncConnection, table: Table, **where: Any) -> Row[Any] | None:
    statement = select(table)
    for column, value in where.items():
        statement = statement.where(table.c[column] == value)
    return (await connection.execute(statement)).one_or_none()


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


async def all_rows(connection: AsyncConnection, table: Table, order_by: str) -> list[Row[Any]]:
    return list((await connection.execute(select(table).order_by(table.c[order_by]))).all())


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


async def published_keys(connection: AsyncConnection, now: datetime) -> list[Row[Any]]:
    statement = (
        select(signing_keys)
        .where((signing_keys.c.expires_at.is_(None)) | (signing_keys.c.expires_at > now))
        .order_by(signing_keys.c.activates_at.desc())
    )
    return list((await connection.execute(statement)).all())


async def record_revocation(
    connection: AsyncConnection, kind: str, value: str, until: datetime
) -> datetime:
    """Keep a revocation, at the later `until` if it was kept before; returns the `until` kept.
    Rows past their `until` are removed here: nothing is refused after it."""
    await connection.execute(delete(revocations).where(revocations.c.until <= utcnow()))
    kept = await one(connection, revocations, kind=kind, value=value)
    if kept is None:
        await insert(connection, revocations, kind=kind, value=value, until=until)
        return until
    if kept.until >= until:
        return kept.until  # type: ignore[no-any-return]
    await set_values(connection, revocations, {"kind": kind, "value": value}, until=until)
    return until


async def revocations_in_force(connection: AsyncConnection, now: datetime) -> list[Row[Any]]:
    statement = select(revocations).where(revocations.c.until > now).order_by(revocations.c.until)
    return list((await connection.execute(statement)).all())
