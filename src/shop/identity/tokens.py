"""Signing keys and the tokens they sign (joserfc): access tokens per RFC 9068, ID tokens.

Rotation: a new key is published in the JWKS `publish_lead` before it signs, so every verifier
has it cached by then; the key it replaces stops signing at that moment and stays published
until the last token it signed has expired.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.auth.tokens import ACCESS_TOKEN_TYPE, SUBJECT_TYPE_CLAIM
from shop.identity import store

ALGORITHM = (
    "RS256"  # services verify far more often than the provider signs: RS256 verifies fastest
)


@dataclass(frozen=True)
class Lifetimes:
    access: timedelta = timedelta(minutes=10)
    id_token: timedelta = timedelta(minutes=10)
    code: timedelta = timedelta(minutes=2)
    refresh: timedelta = timedelta(days=14)
    session: timedelta = timedelta(hours=12)

    @property
    def longest_signed(self) -> timedelta:
        return max(self.access, self.id_token)


def random_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """High-entropy random tokens are stored as SHA-256: a leaked table yields no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _new_key() -> RSAKey:
    return RSAKey.generate_key(
        2048, parameters={"kid": uuid.uuid4().hex, "alg": ALGORITHM, "use": "sig"}
    )


def _key_row(key: RSAKey, now: datetime, *, activates_at: datetime) -> store.SigningKeyRow:
    return store.SigningKeyRow(
        kid=key.kid or "",
        private_jwk=json.dumps(key.as_dict(private=True)),
        created_at=now,
        activates_at=activates_at,
        retires_at=None,
        expires_at=None,
    )


async def ensure_signing_key(connection: AsyncConnection, now: datetime) -> None:
    """A fresh database gets its first key, active at once."""
    if not await store.published_keys(connection, now):
        key = _new_key()
        await store.insert_signing_key(connection, _key_row(key, now, activates_at=now))


async def rotate(
    connection: AsyncConnection, now: datetime, publish_lead: timedelta, lifetimes: Lifetimes
) -> tuple[str, datetime]:
    """Publish a new key now; it signs from `now + publish_lead`. Returns its kid and that time."""
    key = _new_key()
    activates_at = now + publish_lead
    for row in await store.published_keys(connection, now):
        if row.retires_at is None or row.retires_at > activates_at:
            await store.retire_signing_key(
                connection,
                row.kid,
                retires_at=activates_at,
                expires_at=activates_at + lifetimes.longest_signed,
            )
    await store.insert_signing_key(connection, _key_row(key, now, activates_at=activates_at))
    return key.kid or "", activates_at


async def signing_key(connection: AsyncConnection, now: datetime) -> RSAKey:
    for row in await store.published_keys(connection, now):  # newest first
        if row.activates_at <= now and (row.retires_at is None or row.retires_at > now):
            return RSAKey.import_key(json.loads(row.private_jwk))
    raise RuntimeError("no active signing key: run the identity migrations and seed")


async def public_key_set(connection: AsyncConnection, now: datetime) -> KeySet:
    rows = await store.published_keys(connection, now)
    return KeySet([RSAKey.import_key(json.loads(row.private_jwk)) for row in rows])


def jwks(key_set: KeySet) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in key_set.keys]}


def access_token(
    key: RSAKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    client_id: str,
    subject_type: str,
    scopes: Iterable[str],
    now: datetime,
    lifetimes: Lifetimes,
    grant_id: str | None = None,
    auth_time: datetime | None = None,
) -> tuple[str, str]:
    """An RFC 9068 JWT access token, and its `jti`."""
    issued = int(now.timestamp())
    jti = uuid.uuid4().hex
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "client_id": client_id,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(lifetimes.access.total_seconds()),
        "jti": jti,
        "scope": " ".join(sorted(scopes)),
        SUBJECT_TYPE_CLAIM: subject_type,
    }
    if grant_id:
        claims["sid"] = grant_id
    if auth_time:
        claims["auth_time"] = int(auth_time.timestamp())
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": ACCESS_TOKEN_TYPE}
    return jwt.encode(header, claims, key, algorithms=[ALGORITHM]), jti


def id_token(
    key: RSAKey,
    *,
    issuer: str,
    client_id: str,
    user: store.UserRow,
    scopes: frozenset[str],
    now: datetime,
    lifetimes: Lifetimes,
    auth_time: datetime,
    nonce: str | None,
    access: str,
) -> str:
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": user.id,
        "aud": client_id,
        "azp": client_id,
        "iat": issued,
        "exp": issued + int(lifetimes.id_token.total_seconds()),
        "auth_time": int(auth_time.timestamp()),
        "at_hash": _left_half_hash(access),
    }
    if nonce:
        claims["nonce"] = nonce
    claims.update(profile_claims(user, scopes))
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[ALGORITHM])


def profile_claims(user: store.UserRow, scopes: frozenset[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "email" in scopes:
        claims.update(email=user.email, email_verified=False)
    if "profile" in scopes:
        claims["name"] = user.name
    return claims


def _left_half_hash(token: str) -> str:
    half = hashlib.sha256(token.encode()).digest()[:16]
    return base64.urlsafe_b64encode(half).rstrip(b"=").decode()
