"""The provider states identity's consumers' pacts ask for (`Service.provider_states`): what a
sign-in leaves at the provider before the consumer's next request, with the values the pact
names (a session cookie, an authorization code), since the requests replay those values."""

from __future__ import annotations

import uuid
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from cleave.clock import utcnow
from cleave.errors import NotFound
from cleave.service import ProviderState, ServiceContext
from shop.identity import handlers, store
from shop.identity.tokens import digest

# The person signed in at the provider's own page: the browser holds `session` as its cookie.
SIGNED_IN_AT_PROVIDER = "a person signed in at the provider"
# The provider sent the person back to `redirect_uri` with `code`, for `client_id`'s
# authorization request with `nonce` and the challenge of `code_verifier`.
CODE_ISSUED = "an authorization code was issued"
# A sign-in of `subject` at `client_id` whose refresh token is `refresh_token`.
REFRESH_TOKEN_ISSUED = "a refresh token was issued"  # noqa: S105 - a state's name


async def signed_in_at_provider(context: ServiceContext, given: dict[str, Any]) -> dict[str, Any]:
    async with context.unit_of_work() as uow:
        await handlers.start_session(uow, str(given["subject"]), token=str(given["session"]))
    return {}


async def code_issued(context: ServiceContext, given: dict[str, Any]) -> dict[str, Any]:
    async with context.unit_of_work() as uow:
        client = await handlers.find_client(uow.connection, str(given["client_id"]))
        if client is None:
            raise NotFound(f"no client {given['client_id']}")
        await handlers.issue_code(
            uow,
            client,
            user_id=str(given["subject"]),
            redirect_uri=str(given["redirect_uri"]),
            scopes=frozenset(given["scopes"]),
            code_challenge=create_s256_code_challenge(str(given["code_verifier"])),
            nonce=given.get("nonce"),
            auth_time=utcnow(),
            code=str(given["code"]),
        )
    return {}


async def refresh_token_issued(context: ServiceContext, given: dict[str, Any]) -> dict[str, Any]:
    """What a code exchange leaves behind (`handlers.exchange_code`): its grant, and the
    refresh token the pact names."""
    now = utcnow()
    grant_id = uuid.uuid4().hex
    async with context.unit_of_work() as uow:
        await store.insert_grant(
            uow.connection,
            store.GrantRow(
                id=grant_id,
                client_id=str(given["client_id"]),
                user_id=str(given["subject"]),
                scope=" ".join(sorted(given["scopes"])),
                auth_time=now,
                created_at=now,
                revoked_at=None,
            ),
        )
        await store.insert_refresh_token(
            uow.connection,
            store.RefreshTokenRow(
                token_hash=digest(str(given["refresh_token"])),
                grant_id=grant_id,
                created_at=now,
                expires_at=now + handlers.lifetimes(context).refresh,
                used_at=None,
            ),
        )
    return {}


PROVIDER_STATES: dict[str, ProviderState] = {
    SIGNED_IN_AT_PROVIDER: signed_in_at_provider,
    CODE_ISSUED: code_issued,
    REFRESH_TOKEN_ISSUED: refresh_token_issued,
}
