"""What a token is: the provider checking its own tokens, introspection (RFC 7662) and
userinfo. Queries: they read, and change nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.auth.tokens import TokenVerifier
from cleave.clock import utcnow
from cleave.errors import NotFound, Unauthorized
from cleave.service import ServiceContext
from shop.identity import store, tokens
from shop.identity.tokens import digest


class OwnKeys:
    """The provider verifies its own tokens against its own published keys, read from its table:
    on the caller's `connection` when a unit of work holds one, else in a read of their own."""

    def __init__(self, context: ServiceContext, connection: AsyncConnection | None = None) -> None:
        self.context = context
        self.connection = connection

    async def key_set(self, kid: str | None) -> Any:
        if self.connection is not None:
            return await tokens.public_key_set(self.connection, utcnow())
        async with self.context.read() as connection:
            return await tokens.public_key_set(connection, utcnow())


def own_verifier(keys: OwnKeys) -> TokenVerifier:
    system = keys.context.system
    return TokenVerifier(system.issuer, system.audience, keys, algorithms=["RS256"])


async def access_claims(keys: OwnKeys, token: str) -> dict[str, Any]:
    """The claims of a valid access token of this provider; raises Unauthorized otherwise."""
    from joserfc import jwt

    await own_verifier(keys).verify(token)
    return dict(jwt.decode(token, await keys.key_set(None)).claims)


async def access_token_active(context: ServiceContext, token: str) -> dict[str, Any] | None:
    """The claims of a valid access token that was not revoked (directly or with its grant)."""
    try:
        claims = await access_claims(OwnKeys(context), token)
    except Unauthorized:
        return None
    async with context.read() as connection:
        if await store.revoked_access_token(connection, str(claims.get("jti", ""))):
            return None
        if sid := claims.get("sid"):
            grant = await store.grant_by_id(connection, sid)
            if grant is None or grant.revoked_at is not None:
                return None
    return claims


async def introspect(context: ServiceContext, token: str) -> dict[str, Any]:
    """RFC 7662: what a token is, for an authenticated client; `{"active": false}` otherwise."""
    if claims := await access_token_active(context, token):
        return {"active": True, "token_type": "access_token", **claims}
    async with context.read() as connection:
        row = await store.refresh_token_by_hash(connection, digest(token))
        grant = row and await store.grant_by_id(connection, row.grant_id)
    now = utcnow()
    if row is None or grant is None or row.used_at or grant.revoked_at or row.expires_at <= now:
        return {"active": False}
    return {
        "active": True,
        "token_type": "refresh_token",
        "client_id": grant.client_id,
        "sub": grant.user_id,
        "scope": grant.scope,
        "exp": int(row.expires_at.timestamp()),
        "iss": context.system.issuer,
    }


async def userinfo(context: ServiceContext, token: str) -> dict[str, Any]:
    claims = await access_token_active(context, token)
    if claims is None:
        raise Unauthorized("the access token is not valid", code="invalid-token")
    scopes = frozenset(str(claims.get("scope", "")).split())
    if "openid" not in scopes:
        raise Unauthorized("userinfo needs a token with the openid scope", code="invalid-token")
    async with context.read() as connection:
        user = await store.user_by_id(connection, claims["sub"])
    if user is None or user.disabled:
        raise NotFound("no such user")
    return {"sub": user.id, **tokens.profile_claims(user, scopes)}
