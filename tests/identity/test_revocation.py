"""Revocation on the monolith, over real HTTP: a token revoked at `/revoke`, a disabled user's, and
the one from a replayed code are refused by the services on the very next request, with
`token-revoked`; a unit started afterwards refuses them too, from the provider's listing."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt

from cleave.auth.client import OAuthError
from cleave.auth.revocation import RELOAD_SECONDS
from cleave.runtime import Unit
from shop.identity import handlers
from tests.identity.conftest import Provider, oauth_client, sign_in_for_code, user_tokens
from tests.identity.test_flows import bearer, create_client

ORDERS = "/ordering/v1/orders"


# Refused well before a unit's periodic reading of the listing could have told it: by the event.
BY_THE_EVENT = RELOAD_SECONDS / 2


async def refused_within(
    provider: Provider, token: dict[str, Any], seconds: float = RELOAD_SECONDS
) -> tuple[float, dict[str, Any]]:
    """Seconds until the services refuse `token`, and their problem; the first request after
    the revocation is normally refused already (the outbox relay is woken at its commit)."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            answer = await http.get(provider.api(ORDERS), headers=bearer(token))
            if answer.status_code != 200 or time.monotonic() - started > seconds:
                break
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    return time.monotonic() - started, answer.json()


async def test_an_access_token_revoked_at_revoke_is_refused_by_the_services(
    provider: Provider,
) -> None:
    token, other = await user_tokens(provider), await user_tokens(provider)
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(provider.api(ORDERS), headers=bearer(token))).status_code == 200
    async with oauth_client(provider) as client:
        await client.revoke_token(
            f"{provider.issuer}/revoke", token["access_token"], token_type_hint="access_token"
        )
    seconds, problem = await refused_within(provider, token)
    assert problem["code"] == "token-revoked"
    assert seconds < BY_THE_EVENT
    async with httpx.AsyncClient(timeout=10) as http:
        # Only that token: the same person's other sign-in still works.
        assert (await http.get(provider.api(ORDERS), headers=bearer(other))).status_code == 200


async def test_a_disabled_users_tokens_are_refused_and_a_unit_started_later_refuses_them(
    provider: Provider,
) -> None:
    token, bob = await user_tokens(provider, "carol"), await user_tokens(provider, "bob")
    async with provider.unit.context("identity").unit_of_work() as uow:
        # By email, as `cleave users disable carol@example.com` does.
        assert await handlers.disable_user(uow, "carol@example.com") == "carol"
    seconds, problem = await refused_within(provider, token)
    assert problem["code"] == "token-revoked"
    assert seconds < BY_THE_EVENT
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(provider.api(ORDERS), headers=bearer(bob))).status_code == 200
        # Units read the listing with their own token; a customer may not.
        listing = await http.get(f"{provider.issuer}/revocations", headers=bearer(bob))
        assert listing.status_code == 403
    # A unit that starts after the revocation knows it from the provider's listing.
    later = Unit(provider.unit.config)
    try:
        await later.revocations.ensure_loaded()
        claims = jwt.decode(
            token["access_token"], await handlers.OwnKeys(later.context("identity")).key_set(None)
        ).claims
        assert later.revocations.revoked(claims) == "subject"
        assert later.revocations.revoked({"sub": "bob"}) is None
    finally:
        await later.stop()


async def test_the_token_from_a_replayed_code_is_refused_by_the_services(
    provider: Provider,
) -> None:
    verifier = secrets.token_urlsafe(48)
    demo = provider.credentials["users"]["alice"]
    async with oauth_client(provider) as client:
        back = await sign_in_for_code(
            provider, client, demo["email"], demo["password"], verifier=verifier
        )
        callback = back.headers["location"]
        token = await client.fetch_token(
            f"{provider.issuer}/token", authorization_response=callback, code_verifier=verifier
        )
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(provider.api(ORDERS), headers=bearer(token))).status_code == 200
        with pytest.raises(OAuthError, match="invalid_grant"):
            await client.fetch_token(
                f"{provider.issuer}/token", authorization_response=callback, code_verifier=verifier
            )
    seconds, problem = await refused_within(provider, dict(token))
    assert problem["code"] == "token-revoked"
    assert "session" in problem["detail"]
    assert seconds < BY_THE_EVENT


async def test_a_units_token_reads_the_listing(provider: Provider) -> None:
    secret = await create_client(provider, "unit-probe", {"cleave:unit"})
    async with httpx.AsyncClient(timeout=10) as http:
        issued = await http.post(
            f"{provider.issuer}/token",
            data={"grant_type": "client_credentials", "scope": "cleave:unit"},
            auth=("unit-probe", secret),
        )
        assert issued.status_code == 200, issued.text
        token = issued.json()
        async with oauth_client(provider) as client:
            revoked = await user_tokens(provider)
            await client.revoke_token(
                f"{provider.issuer}/revoke", revoked["access_token"], token_type_hint="access_token"
            )
        listing = await http.get(f"{provider.issuer}/revocations", headers=bearer(token))
    assert listing.status_code == 200, listing.text
    kinds = {(entry["kind"], entry["value"]) for entry in listing.json()["revocations"]}
    jti = jwt.decode(
        revoked["access_token"],
        await handlers.OwnKeys(provider.unit.context("identity")).key_set(None),
    ).claims["jti"]
    assert ("token", jti) in kinds
