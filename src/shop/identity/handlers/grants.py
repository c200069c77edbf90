"""The token endpoint's grants: the authorization code (with PKCE), refresh (rotating, a reused
token ends its family) and client credentials."""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.auth.tokens import CLIENT, USER
from cleave.clock import utcnow
from cleave.service import UnitOfWork
from shop.identity import store, tokens
from shop.identity.domain import OAuthError, granted_scopes, pkce_matches
from shop.identity.handlers.clients import Client
from shop.identity.handlers.revocations import revoke_grant
from shop.identity.handlers.settings import lifetimes
from shop.identity.tokens import digest, random_token


async def issue_code(
    uow: UnitOfWork,
    client: Client,
    *,
    user_id: str,
    redirect_uri: str,
    scopes: frozenset[str],
    code_challenge: str,
    nonce: str | None,
    auth_time: datetime,
    code: str | None = None,
) -> str:
    """A new authorization code (or `code`, where a pact's state names it)."""
    code = code or random_token()
    now = utcnow()
    await store.insert_code(
        uow.connection,
        store.AuthorizationCodeRow(
            code_hash=digest(code),
            grant_id=uuid.uuid4().hex,
            client_id=client.id,
            user_id=user_id,
            redirect_uri=redirect_uri,
            scope=" ".join(sorted(scopes)),
            code_challenge=code_challenge,
            nonce=nonce,
            auth_time=auth_time,
            expires_at=now + lifetimes(uow.context).code,
            used_at=None,
        ),
    )
    return code


async def exchange_code(uow: UnitOfWork, client: Client, form: dict[str, str]) -> dict[str, Any]:
    code, verifier = form.get("code", ""), form.get("code_verifier", "")
    row = await store.code_by_hash(uow.connection, digest(code))
    now = utcnow()
    if row is None or row.client_id != client.id:
        raise OAuthError("invalid_grant", "unknown authorization code")
    if not await store.claim_code(uow.connection, row.code_hash, now):
        # A replayed code means it leaked: end every token issued from it (RFC 6749 §4.1.2).
        await revoke_grant(uow, row.grant_id)
        raise OAuthError("invalid_grant", "the authorization code was used already")
    if row.expires_at <= now:
        raise OAuthError("invalid_grant", "the authorization code has expired")
    if not hmac.compare_digest(row.redirect_uri, form.get("redirect_uri", "")):
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
    if not pkce_matches(verifier, row.code_challenge):
        raise OAuthError("invalid_grant", "the PKCE code_verifier does not match")
    await store.insert_grant(
        uow.connection,
        store.GrantRow(
            id=row.grant_id,
            client_id=client.id,
            user_id=row.user_id,
            scope=row.scope,
            auth_time=row.auth_time,
            created_at=now,
            revoked_at=None,
        ),
    )
    user = await store.user_by_id(uow.connection, row.user_id)
    if user is None or user.disabled:
        raise OAuthError("invalid_grant", "the account is not active")
    return await _user_tokens(
        uow, client, user, row.grant_id, frozenset(row.scope.split()), row.auth_time, row.nonce
    )


async def refresh(uow: UnitOfWork, client: Client, form: dict[str, str]) -> dict[str, Any]:
    token_hash = digest(form.get("refresh_token", ""))
    row = await store.refresh_token_by_hash(uow.connection, token_hash)
    grant = row and await store.grant_by_id(uow.connection, row.grant_id)
    now = utcnow()
    if row is None or grant is None or grant.client_id != client.id:
        raise OAuthError("invalid_grant", "unknown refresh token")
    if not await store.claim_refresh_token(uow.connection, token_hash, now):
        # A rotated token came back: someone holds a copy. The whole family ends.
        await revoke_grant(uow, grant.id)
        raise OAuthError("invalid_grant", "the refresh token was used already")
    if grant.revoked_at is not None or row.expires_at <= now:
        raise OAuthError("invalid_grant", "the refresh token is no longer valid")
    scopes = granted_scopes(form.get("scope"), frozenset(grant.scope.split()))
    if scopes is None:
        raise OAuthError("invalid_scope", "a refresh cannot widen the granted scopes")
    user = await store.user_by_id(uow.connection, grant.user_id)
    if user is None or user.disabled:
        raise OAuthError("invalid_grant", "the account is not active")
    return await _user_tokens(uow, client, user, grant.id, scopes, grant.auth_time, None)


async def _user_tokens(
    uow: UnitOfWork,
    client: Client,
    user: store.UserRow,
    grant_id: str,
    scopes: frozenset[str],
    auth_time: datetime,
    nonce: str | None,
) -> dict[str, Any]:
    context, now, spans = uow.context, utcnow(), lifetimes(uow.context)
    key = await _signing_key(uow.connection, now)
    access, _jti = tokens.access_token(
        key,
        issuer=context.system.issuer,
        audience=context.system.audience,
        subject=user.id,
        client_id=client.id,
        subject_type=USER,
        scopes=scopes,
        now=now,
        lifetimes=spans,
        grant_id=grant_id,
        auth_time=auth_time,
    )
    refresh_token = random_token()
    await store.insert_refresh_token(
        uow.connection,
        store.RefreshTokenRow(
            token_hash=digest(refresh_token),
            grant_id=grant_id,
            created_at=now,
            expires_at=now + spans.refresh,
            used_at=None,
        ),
    )
    response: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(spans.access.total_seconds()),
        "scope": " ".join(sorted(scopes)),
        "refresh_token": refresh_token,
    }
    if "openid" in scopes:
        response["id_token"] = tokens.id_token(
            key,
            issuer=context.system.issuer,
            client_id=client.id,
            user=user,
            scopes=scopes,
            now=now,
            lifetimes=spans,
            auth_time=auth_time,
            nonce=nonce,
            access=access,
        )
    return response


async def client_credentials(
    uow: UnitOfWork, client: Client, form: dict[str, str]
) -> dict[str, Any]:
    if client.public:
        raise OAuthError("unauthorized_client", "a public client cannot use client credentials")
    scopes = granted_scopes(form.get("scope"), client.scopes - {"openid"})
    if scopes is None:
        raise OAuthError("invalid_scope", f"{client.id} may not ask for those scopes")
    now, spans = utcnow(), lifetimes(uow.context)
    access, _jti = tokens.access_token(
        await _signing_key(uow.connection, now),
        issuer=uow.context.system.issuer,
        audience=uow.context.system.audience,
        subject=client.id,
        client_id=client.id,
        subject_type=CLIENT,
        scopes=scopes,
        now=now,
        lifetimes=spans,
    )
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(spans.access.total_seconds()),
        "scope": " ".join(sorted(scopes)),
    }


async def _signing_key(connection: AsyncConnection, now: datetime) -> Any:
    await tokens.ensure_signing_key(connection, now)
    return await tokens.signing_key(connection, now)
