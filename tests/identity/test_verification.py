"""Every service verifies tokens the same way, against the configured issuer's discovery document
and JWKS: a second, independent issuer replaces the built-in one by configuration alone, and
every JWT attack is refused with 401 and a problem+json body through a real route."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from joserfc.jwk import RSAKey

from cleave.config import SystemConfig
from cleave.runtime import Unit
from cleave.web.app import create_app
from tests.conftest import eventually
from tests.identity.conftest import ForeignIssuer, Provider, user_tokens

PROFILE = "/api/customer/v1/customers/me"


@pytest.fixture
async def shop_trusting(
    base_config: SystemConfig, foreign_issuer: ForeignIssuer
) -> AsyncIterator[httpx.AsyncClient]:
    """The shop configured for the foreign issuer: its issuer URL and audience, nothing else."""
    auth = replace(
        base_config.auth, issuer=foreign_issuer.url, audience="cleave", jwks_refresh_seconds=60.0
    )
    unit = Unit(replace(base_config, auth=auth))
    await unit.migrate()
    await unit.seed()
    transport = httpx.ASGITransport(app=create_app(unit, start_unit=False))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http:
            yield http
    finally:
        await unit.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_second_issuer_replaces_the_built_in_one_by_configuration_alone(
    shop_trusting: httpx.AsyncClient, foreign_issuer: ForeignIssuer
) -> None:
    response = await shop_trusting.get(PROFILE, headers=bearer(foreign_issuer.token()))
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "alice@example.com"


async def test_the_built_in_providers_tokens_are_refused_when_another_issuer_is_configured(
    shop_trusting: httpx.AsyncClient, foreign_issuer: ForeignIssuer, provider: Provider
) -> None:
    token = await user_tokens(provider)
    refused = await shop_trusting.get(PROFILE, headers=bearer(token["access_token"]))
    assert refused.status_code == 401


async def test_the_foreign_issuers_tokens_are_refused_when_the_shop_trusts_its_own(
    provider: Provider, foreign_issuer: ForeignIssuer
) -> None:
    async with httpx.AsyncClient() as http:
        stranger = await http.get(
            provider.api("/customer/v1/customers/me"), headers=bearer(foreign_issuer.token())
        )
        assert stranger.status_code == 401
        token = await user_tokens(provider)
        own = await http.get(
            provider.api("/customer/v1/customers/me"), headers=bearer(token["access_token"])
        )
        assert own.status_code == 200


async def test_the_first_requests_at_once_all_wait_for_the_one_key_fetch(
    shop_trusting: httpx.AsyncClient, foreign_issuer: ForeignIssuer
) -> None:
    token = foreign_issuer.token()
    answers = await asyncio.gather(
        *(shop_trusting.get(PROFILE, headers=bearer(token)) for _ in range(8))
    )
    assert [answer.status_code for answer in answers] == [200] * 8
    assert foreign_issuer.jwks_fetches == 1


async def test_keys_are_cached_refreshed_at_most_once_per_interval_and_survive_an_outage(
    shop_trusting: httpx.AsyncClient, foreign_issuer: ForeignIssuer
) -> None:
    good = foreign_issuer.token()
    assert (await shop_trusting.get(PROFILE, headers=bearer(good))).status_code == 200
    assert (await shop_trusting.get(PROFILE, headers=bearer(good))).status_code == 200
    assert foreign_issuer.jwks_fetches == 1

    # Forged kids cannot make a service hammer the issuer: one refresh per interval at most.
    stranger = RSAKey.generate_key(2048)
    for number in range(3):
        forged = foreign_issuer.token(stranger, header={"kid": f"forged-{number}"})
        assert (await shop_trusting.get(PROFILE, headers=bearer(forged))).status_code == 401
    assert foreign_issuer.jwks_fetches <= 2

    foreign_issuer.server.should_exit = True  # type: ignore[attr-defined]

    async def issuer_is_down() -> bool:
        try:
            async with httpx.AsyncClient(timeout=0.5) as http:
                await http.get(foreign_issuer.url + "/certs")
        except httpx.TransportError:
            return True
        return False

    await eventually(issuer_is_down)
    still = await shop_trusting.get(PROFILE, headers=bearer(foreign_issuer.token()))
    assert still.status_code == 200, "validation must keep working on cached keys"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(issuer: ForeignIssuer) -> str:
    head = b64(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    return f"{head}.{b64(json.dumps(issuer.claims()).encode())}."


def hs256_with_public_key(issuer: ForeignIssuer) -> str:
    head = b64(json.dumps({"alg": "HS256", "kid": issuer.key.kid, "typ": "at+jwt"}).encode())
    body = b64(json.dumps(issuer.claims()).encode())
    secret = issuer.key.as_pem(private=False)
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def altered(issuer: ForeignIssuer) -> str:
    head, _body, signature = issuer.token().split(".")
    forged = b64(json.dumps(issuer.claims(sub="bob", scope="admin")).encode())
    return f"{head}.{forged}.{signature}"


def stripped(issuer: ForeignIssuer) -> str:
    head, body, _signature = issuer.token().split(".")
    return f"{head}.{body}."


ATTACKS = {
    "alg-none": unsigned,
    "hs256-with-the-public-key": hs256_with_public_key,
    "unknown-kid": lambda issuer: issuer.token(
        RSAKey.generate_key(2048), header={"kid": "attacker"}
    ),
    "injected-kid": lambda issuer: issuer.token(RSAKey.generate_key(2048)),
    "embedded-jwk": lambda issuer: (
        lambda key: issuer.token(key, header={"jwk": key.as_dict(private=False)})
    )(RSAKey.generate_key(2048)),
    "expired": lambda issuer: issuer.token(exp=int(time.time()) - 120),
    "not-yet-valid": lambda issuer: issuer.token(nbf=int(time.time()) + 600),
    "wrong-issuer": lambda issuer: issuer.token(iss="https://evil.example/realms/shop"),
    "wrong-audience": lambda issuer: issuer.token(aud="another-api"),
    "id-token-as-access-token": lambda issuer: issuer.token(
        header={"typ": "JWT"}, aud="shop-web", nonce="n"
    ),
    "stripped-signature": stripped,
    "altered-signature": altered,
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_every_jwt_attack_is_refused_with_401_problem_json(
    shop_trusting: httpx.AsyncClient, foreign_issuer: ForeignIssuer, attack: str
) -> None:
    response = await shop_trusting.get(PROFILE, headers=bearer(ATTACKS[attack](foreign_issuer)))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 401
    assert body["code"] == "invalid-token"
    assert "email" not in body
