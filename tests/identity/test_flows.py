"""Each OAuth 2.0 / OpenID Connect flow end to end, with Authlib's httpx client against the
running provider over real HTTP; and what each token then lets its holder do in the shop."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import sys
from datetime import timedelta
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from cleave.auth.client import AsyncOAuth2Client, OAuthError
from cleave.clock import utcnow
from cleave.errors import Conflict
from shop.identity import handlers, tokens
from shop.identity.domain import Account
from tests.identity.conftest import (
    Provider,
    oauth_client,
    sign_in_for_code,
    user_tokens,
)

ALERT = re.compile(r"role='alert'>([^<]*)<")
ORDER = {
    "lines": [{"sku": "MUG-CLASSIC", "quantity": 1}],
    "card_token": "tok_approve",
    "shipping_address": {
        "name": "Alice Example",
        "line1": "1 Main St",
        "city": "Utrecht",
        "postal_code": "3511",
        "country": "NL",
    },
}


def bearer(token: dict[str, Any] | str) -> dict[str, str]:
    value = token if isinstance(token, str) else token["access_token"]
    return {"Authorization": f"Bearer {value}"}


async def create_client(provider: Provider, client_id: str, scopes: set[str]) -> str:
    async with provider.unit.context("identity").unit_of_work() as uow:
        secret = await handlers.create_client(
            uow, client_id, name=client_id, scopes=frozenset(scopes)
        )
    assert secret
    return secret


async def test_discovery_names_exactly_the_public_issuer_and_publishes_the_jwks(
    provider: Provider,
) -> None:
    async with httpx.AsyncClient() as http:
        document = (await http.get(f"{provider.issuer}/.well-known/openid-configuration")).json()
        assert document["issuer"] == provider.issuer
        assert document["code_challenge_methods_supported"] == ["S256"]
        assert "implicit" not in document["grant_types_supported"]
        assert "password" not in document["grant_types_supported"]
        keys = (await http.get(document["jwks_uri"])).json()["keys"]
    assert keys
    assert all("d" not in key and key["kid"] for key in keys)


async def test_a_script_signs_in_with_pkce_and_places_an_order_with_its_token(
    provider: Provider,
) -> None:
    token = await user_tokens(provider, nonce="n-0S6")
    claims = jwt.decode(token["access_token"], await jwks(provider)).claims
    assert claims["sub"] == "alice"
    assert claims["aud"] == "cleave"
    assert claims["iss"] == provider.issuer
    id_token = jwt.decode(token["id_token"], await jwks(provider))
    assert id_token.header["typ"] == "JWT"
    assert id_token.claims["aud"] == "cleave-cli"
    assert id_token.claims["nonce"] == "n-0S6"
    async with httpx.AsyncClient() as http:
        placed = await http.post(
            provider.api("/ordering/v1/orders"),
            json=ORDER,
            headers={**bearer(token), "Idempotency-Key": secrets.token_hex(8)},
        )
        assert placed.status_code == 202, placed.text
        # An ID token is not an access token: the API refuses it.
        refused = await http.get(
            provider.api("/ordering/v1/orders"), headers=bearer(token["id_token"])
        )
        assert refused.status_code == 401


async def jwks(provider: Provider) -> KeySet:
    async with httpx.AsyncClient() as http:
        return KeySet.import_key_set((await http.get(f"{provider.issuer}/jwks")).json())


async def test_refresh_tokens_rotate_and_a_replayed_one_revokes_its_family(
    provider: Provider,
) -> None:
    first = await user_tokens(provider)
    async with oauth_client(provider) as client:
        second = await client.refresh_token(
            f"{provider.issuer}/token", refresh_token=first["refresh_token"]
        )
        assert second["refresh_token"] != first["refresh_token"]
        with pytest.raises(OAuthError, match="invalid_grant"):
            await client.refresh_token(
                f"{provider.issuer}/token", refresh_token=first["refresh_token"]
            )
        # The replay ended the whole family: the newest refresh token is dead too.
        with pytest.raises(OAuthError, match="invalid_grant"):
            await client.refresh_token(
                f"{provider.issuer}/token", refresh_token=second["refresh_token"]
            )


async def test_a_reused_code_is_refused_and_revokes_what_it_issued(provider: Provider) -> None:
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
        with pytest.raises(OAuthError, match="invalid_grant"):
            await client.fetch_token(
                f"{provider.issuer}/token", authorization_response=callback, code_verifier=verifier
            )
        with pytest.raises(OAuthError, match="invalid_grant"):
            await client.refresh_token(
                f"{provider.issuer}/token", refresh_token=token["refresh_token"]
            )
    secret = await create_client(provider, "auditor", {"orders:read"})
    assert not (await introspect(provider, "auditor", secret, token["access_token"]))["active"]


async def test_a_pkce_mismatch_plain_pkce_and_a_foreign_redirect_uri_are_refused(
    provider: Provider,
) -> None:
    demo = provider.credentials["users"]["alice"]
    async with oauth_client(provider) as client:
        back = await sign_in_for_code(
            provider, client, demo["email"], demo["password"], verifier=secrets.token_urlsafe(48)
        )
        with pytest.raises(OAuthError, match="invalid_grant"):
            await client.fetch_token(
                f"{provider.issuer}/token",
                authorization_response=back.headers["location"],
                code_verifier=secrets.token_urlsafe(48),
            )
    async with httpx.AsyncClient() as http:
        base = {"response_type": "code", "client_id": "cleave-cli", "scope": "openid"}
        plain = await http.get(
            f"{provider.issuer}/authorize",
            params={
                **base,
                "redirect_uri": "http://127.0.0.1:8976/callback",
                "code_challenge": "x" * 43,
                "code_challenge_method": "plain",
            },
        )
        assert plain.status_code == 302
        assert "error=invalid_request" in plain.headers["location"]
        foreign = await http.get(
            f"{provider.issuer}/authorize",
            params={
                **base,
                "redirect_uri": "http://127.0.0.1:8976/callback/../evil",
                "code_challenge": "x" * 43,
                "code_challenge_method": "S256",
            },
        )
        assert foreign.status_code == 400
        assert "location" not in foreign.headers
        implicit = await http.get(
            f"{provider.issuer}/authorize",
            params={
                **base,
                "response_type": "token",
                "redirect_uri": "http://127.0.0.1:8976/callback",
            },
        )
        assert "error=unsupported_response_type" in implicit.headers["location"]
        password = await http.post(
            f"{provider.issuer}/token",
            data={
                "grant_type": "password",
                "client_id": "cleave-cli",
                "username": demo["email"],
                "password": demo["password"],
            },
        )
        assert password.status_code == 400
        assert password.json()["error"] == "unsupported_grant_type"


async def test_client_credentials_get_narrow_scopes_that_limit_what_the_client_may_call(
    provider: Provider,
) -> None:
    secret = await create_client(provider, "ordering", {"orders:read"})
    async with AsyncOAuth2Client("ordering", secret, timeout=10) as client:
        token = await client.fetch_token(f"{provider.issuer}/token")
        assert token["scope"] == "orders:read"
        with pytest.raises(OAuthError, match="invalid_scope"):
            await client.fetch_token(f"{provider.issuer}/token", scope="admin")
    async with httpx.AsyncClient() as http:
        # A client's own token is no customer's: routes that act for a person refuse it.
        as_client = await http.get(provider.api("/ordering/v1/orders"), headers=bearer(token))
        assert (as_client.status_code, as_client.json()["code"]) == (403, "client-token")
        admin_only = await http.get(provider.api("/customer/v1/customers"), headers=bearer(token))
        assert admin_only.status_code == 403
        needs_write = await http.post(
            provider.api("/ordering/v1/orders"), json=ORDER, headers=bearer(token)
        )
        assert needs_write.status_code == 403
        wrong = await http.post(
            f"{provider.issuer}/token",
            data={"grant_type": "client_credentials"},
            auth=("ordering", "not-the-secret"),
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_client"


async def introspect(provider: Provider, client_id: str, secret: str, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{provider.issuer}/introspect", data={"token": token}, auth=(client_id, secret)
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_revocation_introspection_and_userinfo(provider: Provider) -> None:
    token = await user_tokens(provider)
    secret = await create_client(provider, "auditor", {"orders:read"})
    active = await introspect(provider, "auditor", secret, token["access_token"])
    assert active["active"]
    assert active["sub"] == "alice"
    assert active["client_id"] == "cleave-cli"
    async with httpx.AsyncClient() as http:
        anonymous = await http.post(
            f"{provider.issuer}/introspect", data={"token": token["access_token"]}
        )
        assert anonymous.status_code == 401
        public = await http.post(
            f"{provider.issuer}/introspect",
            data={"token": token["access_token"], "client_id": "cleave-cli"},
        )
        assert public.status_code == 401
        me = (await http.get(f"{provider.issuer}/userinfo", headers=bearer(token))).json()
        assert me == {
            "sub": "alice",
            "email": "alice@example.com",
            "email_verified": False,
            "name": "Alice Example",
        }
    async with oauth_client(provider) as client:
        await client.revoke_token(
            f"{provider.issuer}/revoke", token["access_token"], token_type_hint="access_token"
        )
        await client.revoke_token(
            f"{provider.issuer}/revoke", token["refresh_token"], token_type_hint="refresh_token"
        )
        with pytest.raises(OAuthError, match="invalid_grant"):
            await client.refresh_token(
                f"{provider.issuer}/token", refresh_token=token["refresh_token"]
            )
    assert not (await introspect(provider, "auditor", secret, token["access_token"]))["active"]
    async with httpx.AsyncClient() as http:
        assert (
            await http.get(f"{provider.issuer}/userinfo", headers=bearer(token))
        ).status_code == 401


async def test_a_customer_never_sees_another_customers_orders_payments_or_profile(
    provider: Provider,
) -> None:
    alice, bob = await user_tokens(provider, "alice"), await user_tokens(provider, "bob")
    async with httpx.AsyncClient() as http:
        placed = await http.post(
            provider.api("/ordering/v1/orders"), json=ORDER, headers=bearer(alice)
        )
        order_id = placed.json()["id"]

        async def payment_ids() -> list[str]:
            listed = await http.get(provider.api("/payment/v1/payments"), headers=bearer(alice))
            return [item["id"] for item in listed.json()["items"]]

        from tests.conftest import eventually

        payment_id = (await eventually(payment_ids))[0]
        for path in (
            f"/ordering/v1/orders/{order_id}",
            f"/payment/v1/payments/{payment_id}",
            "/customer/v1/customers/alice",
        ):
            response = await http.get(provider.api(path), headers=bearer(bob))
            assert response.status_code == 404, path
            assert "alice@example.com" not in response.text
            assert "Alice Example" not in response.text
        admin = await http.post(
            provider.api("/catalog/v1/products"),
            json={"sku": "X-1", "name": "x", "price": {"amount": 1, "currency": "EUR"}},
            headers=bearer(alice),
        )
        assert admin.status_code == 403


async def test_sign_in_slows_down_then_locks_and_never_tells_who_is_registered(
    provider: Provider,
) -> None:
    demo = provider.credentials["users"]["alice"]
    answers = []
    for email in ("alice@example.com", "nobody@example.com"):
        async with oauth_client(provider) as client:
            wrong = await sign_in_for_code(
                provider, client, email, "not-the-password", verifier=secrets.token_urlsafe(48)
            )
        answers.append((wrong.status_code, ALERT.search(wrong.text).group(1)))  # type: ignore[union-attr]
    assert answers[0] == answers[1]
    assert answers[0][0] == 401
    for _ in range(3):
        async with oauth_client(provider) as client:
            await sign_in_for_code(
                provider,
                client,
                demo["email"],
                "nope-nope-nope",
                verifier=secrets.token_urlsafe(48),
            )
    async with oauth_client(provider) as client:
        locked = await sign_in_for_code(
            provider, client, demo["email"], demo["password"], verifier=secrets.token_urlsafe(48)
        )
    assert locked.status_code == 429
    assert "paused" in locked.text


async def test_rotated_keys_are_published_before_they_sign_and_old_tokens_keep_working(
    provider: Provider,
) -> None:
    before = await user_tokens(provider)
    context = provider.unit.context("identity")
    async with context.unit_of_work() as uow:
        kid, _ = await tokens.rotate(
            uow.connection, utcnow(), timedelta(0), handlers.lifetimes(context)
        )
    published = [key.kid for key in (await jwks(provider)).keys]
    assert kid in published
    assert len(published) == 2
    after = await user_tokens(provider)
    assert jwt.decode(after["access_token"], await jwks(provider)).header["kid"] == kid
    async with httpx.AsyncClient() as http:
        for token in (before, after):
            me = await http.get(provider.api("/customer/v1/customers/me"), headers=bearer(token))
            assert me.status_code == 200


async def test_a_client_never_takes_a_users_id_and_its_token_says_it_is_a_client(
    provider: Provider,
) -> None:
    with pytest.raises(Conflict, match="user's id"):
        await create_client(provider, "alice", {"profile"})
    async with provider.unit.context("identity").unit_of_work() as uow:
        with pytest.raises(Conflict, match="client's id"):
            await handlers.create_user(
                uow, Account("cli@example.com", "CLI", "long enough pass"), user_id="cleave-cli"
            )
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cleave", "clients", "create", "alice", "--scope", "profile"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    assert stderr.decode().strip().splitlines() == [
        "error: 'alice' is a user's id: no client may take it"
    ]

    secret = await create_client(provider, "robot", {"profile", "orders:read"})
    async with AsyncOAuth2Client("robot", secret, timeout=10) as client:
        token = await client.fetch_token(f"{provider.issuer}/token")
    person = await user_tokens(provider, "alice")
    kinds = [_claims(issued["access_token"])["sub_type"] for issued in (token, person)]
    assert kinds == ["client", "user"]
    async with httpx.AsyncClient() as http:
        for path in ("/customer/v1/customers/me", "/ordering/v1/orders"):
            response = await http.get(provider.api(path), headers=bearer(token))
            assert (response.status_code, response.json()["code"]) == (403, "client-token")
        mine = await http.get(provider.api("/customer/v1/customers/me"), headers=bearer(person))
        assert mine.json()["id"] == "alice"


def _claims(token: str) -> dict[str, Any]:
    """What a token says, unverified: only to read which kind of subject it names."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims
