"""Revocation: RFC 7009's `/revoke`, and what every unit must refuse from then on
(cleave.auth.revocation): a sign-in's grant, a subject (a disabled user, a removed client) or
one access token, each published through the outbox."""

from __future__ import annotations

from datetime import datetime, timedelta

from cleave.auth.revocation import Revocation, SessionRevoked, SubjectRevoked, TokenRevoked
from cleave.auth.tokens import LEEWAY_SECONDS
from cleave.clock import utcnow
from cleave.errors import NotFound, Unauthorized
from cleave.service import ServiceContext, UnitOfWork
from shop.identity import store
from shop.identity.handlers.clients import Client
from shop.identity.handlers.introspection import OwnKeys, access_claims
from shop.identity.handlers.settings import lifetimes
from shop.identity.tokens import digest


async def revoke(uow: UnitOfWork, client: Client, token: str) -> None:
    """RFC 7009: revoke a refresh token's family or one access token; unknown tokens are fine."""
    row = await store.refresh_token_by_hash(uow.connection, digest(token))
    if row is not None:
        grant = await store.grant_by_id(uow.connection, row.grant_id)
        if grant is not None and grant.client_id == client.id:
            await revoke_grant(uow, grant.id)  # and the access tokens issued from it (RFC 7009 §2)
        return
    try:
        principal_claims = await access_claims(OwnKeys(uow.context, uow.connection), token)
    except Unauthorized:
        return
    if principal_claims.get("client_id") != client.id:
        return
    jti = str(principal_claims.get("jti", ""))
    expires_at = datetime.fromtimestamp(int(principal_claims["exp"]), tz=utcnow().tzinfo)
    if jti and await store.revoked_access_token(uow.connection, jti) is None:
        await store.insert_revoked_access_token(
            uow.connection, store.RevokedAccessTokenRow(jti=jti, expires_at=expires_at)
        )
    if jti:
        until = await store.record_revocation(
            uow.connection, "token", jti, expires_at + timedelta(seconds=LEEWAY_SECONDS)
        )
        uow.publish(TokenRevoked(jti=jti, until=until), subject=jti)


def _outlives_tokens(uow: UnitOfWork) -> datetime:
    """When every access token issued until now has expired, to every verifier's clock."""
    return utcnow() + lifetimes(uow.context).access + timedelta(seconds=LEEWAY_SECONDS)


async def revoke_grant(uow: UnitOfWork, grant_id: str) -> None:
    """End a sign-in: its refresh tokens here, its access tokens (their `sid`) at every unit."""
    await store.revoke_grant(uow.connection, grant_id)
    until = await store.record_revocation(
        uow.connection, "session", grant_id, _outlives_tokens(uow)
    )
    uow.publish(SessionRevoked(session=grant_id, until=until), subject=grant_id)


async def revoke_subject(uow: UnitOfWork, subject: str) -> None:
    """End every token of a user or client so far, at every unit, and the user's grants."""
    for grant in await store.grants_of(uow.connection, subject):
        await store.revoke_grant(uow.connection, grant.id)  # its tokens: covered below
    until = await store.record_revocation(uow.connection, "subject", subject, _outlives_tokens(uow))
    uow.publish(SubjectRevoked(subject=subject, until=until), subject=subject)


async def disable_user(uow: UnitOfWork, user: str) -> str:
    """Disable an account, by id or email: it cannot sign in, and its tokens stop working
    everywhere within moments. Returns its id."""
    row = await store.user_by_id(uow.connection, user) or await store.user_by_email(
        uow.connection, user.strip().lower()
    )
    if row is None:
        raise NotFound(f"no user {user!r}", code="user-not-found")
    await store.disable_user(uow.connection, row.id)
    await store.delete_sessions_of(uow.connection, row.id)
    await revoke_subject(uow, row.id)
    return row.id


async def revocations_in_force(context: ServiceContext) -> list[Revocation]:
    """What every unit must refuse now: read by each unit as it starts."""
    async with context.read() as connection:
        rows = await store.revocations_in_force(connection, utcnow())
    return [Revocation(kind=row.kind, value=row.value, until=row.until) for row in rows]
