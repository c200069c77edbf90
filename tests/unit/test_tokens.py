"""Token verification: every forged or misused JWT is refused; a good one gives the principal."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from cleave.auth.revocation import Revocation, RevocationList
from cleave.auth.tokens import DevIssuer, TokenVerifier
from cleave.errors import Unauthorized

ISSUER, AUDIENCE = "urn:cleave:test", "cleave"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return DevIssuer.load_or_create(tmp_path_factory.mktemp("var"), ISSUER, AUDIENCE)


@pytest.fixture
def verifier(issuer: DevIssuer) -> TokenVerifier:
    return TokenVerifier(ISSUER, AUDIENCE, issuer, leeway_seconds=0)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "scope": "orders:read",
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def signed(issuer: DevIssuer, payload: dict[str, Any], **header: Any) -> str:
    head = {"alg": "RS256", "kid": issuer.key.kid, "typ": "at+jwt", **header}
    return jwt.encode(head, payload, issuer.key, algorithms=["RS256"])


async def test_a_good_token_gives_the_principal_and_its_scopes(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    principal = await verifier.verify(issuer.issue("alice", ["orders:read", "profile"]))
    assert principal.subject == "alice"
    assert principal.scopes == {"orders:read", "profile"}
    assert not principal.is_admin


def test_the_development_key_is_kept_private_and_reused(tmp_path: Path) -> None:
    first = DevIssuer.load_or_create(tmp_path, ISSUER, AUDIENCE)
    again = DevIssuer.load_or_create(tmp_path, ISSUER, AUDIENCE)
    assert first.key.kid == again.key.kid
    assert (tmp_path / DevIssuer.FILE).stat().st_mode & 0o077 == 0


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    return caught.value.detail


async def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    head = b64(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    token = f"{head}.{b64(json.dumps(claims()).encode())}."
    await refused(verifier, token)


async def test_hs256_signed_with_the_public_key_is_refused(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    public_pem = issuer.key.as_pem(private=False)
    head = b64(json.dumps({"alg": "HS256", "kid": issuer.key.kid, "typ": "at+jwt"}).encode())
    body = b64(json.dumps(claims()).encode())
    signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    await refused(verifier, f"{head}.{body}.{b64(signature)}")


async def test_a_token_from_an_unknown_key_is_refused(verifier: TokenVerifier) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "attacker"})
    token = jwt.encode(
        {"alg": "RS256", "kid": "attacker", "typ": "at+jwt"},
        claims(),
        stranger,
        algorithms=["RS256"],
    )
    await refused(verifier, token)


async def test_an_injected_kid_pointing_at_the_real_key_id_with_another_key_is_refused(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    stranger = RSAKey.generate_key(2048)
    token = jwt.encode(
        {"alg": "RS256", "kid": issuer.key.kid, "typ": "at+jwt"},
        claims(),
        stranger,
        algorithms=["RS256"],
    )
    await refused(verifier, token)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(claims(exp=int(time.time()) - 10), id="expired"),
        pytest.param(claims(nbf=int(time.time()) + 600), id="not-yet-valid"),
        pytest.param(claims(iss="https://evil.example"), id="wrong-issuer"),
        pytest.param(claims(aud="another-api"), id="wrong-audience"),
        pytest.param(claims(exp=None), id="no-expiry"),
        pytest.param(claims(sub=None), id="no-subject"),
    ],
)
async def test_bad_claims_are_refused(
    issuer: DevIssuer, verifier: TokenVerifier, payload: dict[str, Any]
) -> None:
    await refused(verifier, signed(issuer, payload))


async def test_an_id_token_is_not_an_access_token(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    assert "access token" in await refused(verifier, signed(issuer, claims(), typ="JWT"))


async def test_an_altered_or_stripped_signature_is_refused(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    good = issuer.issue("alice", ["orders:read"])
    head, body, signature = good.split(".")
    forged_body = b64(json.dumps(claims(sub="mallory", scope="admin")).encode())
    await refused(verifier, f"{head}.{forged_body}.{signature}")
    await refused(verifier, f"{head}.{body}.")
    await refused(verifier, f"{head}.{body}")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    await refused(verifier, f"{head}.{body}.{flipped}")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "....", "Bearer x"])
async def test_garbage_is_refused_without_a_crash(verifier: TokenVerifier, garbage: str) -> None:
    await refused(verifier, garbage)


async def test_a_token_says_whether_it_speaks_for_a_user_or_a_client(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    user = await verifier.verify(signed(issuer, claims(client_id="shop-web", sub_type="user")))
    assert (user.subject, user.is_client) == ("alice", False)
    client = await verifier.verify(signed(issuer, claims(client_id="alice", sub_type="client")))
    assert (client.subject, client.is_client) == ("alice", True)
    # From an issuer that does not say: RFC 9068's convention, sub equal to client_id.
    unsaid = await verifier.verify(signed(issuer, claims(sub="robot", client_id="robot")))
    assert unsaid.is_client
    with pytest.raises(Unauthorized, match="sub_type"):
        await verifier.verify(signed(issuer, claims(sub_type="admin")))


async def test_a_token_verified_before_is_still_refused_once_revoked(issuer: DevIssuer) -> None:
    revocations = RevocationList()
    verifier = TokenVerifier(ISSUER, AUDIENCE, issuer, leeway_seconds=0, revocations=revocations)
    token = issuer.issue("dan", ["openid"])
    assert (await verifier.verify(token)).subject == "dan"
    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    revocations.add(Revocation(kind="subject", value="dan", until=until))
    assert "revoked" in await refused(verifier, token)


async def test_a_token_verified_before_is_refused_once_expired(
    issuer: DevIssuer, verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = signed(issuer, claims(exp=int(time.time()) + 5))
    assert (await verifier.verify(token)).subject == "alice"
    later = time.time() + 10
    monkeypatch.setattr(time, "time", lambda: later)
    assert "expired" in await refused(verifier, token)


async def test_remembered_tokens_of_two_callers_stay_each_their_own(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    """The verifier remembers tokens it checked: each answer is the token's own, and a token
    one character off is checked afresh (and refused), never taken for one remembered."""
    alice = signed(issuer, claims(sub="alice", scope="openid"))
    bob = signed(issuer, claims(sub="bob", scope="openid profile"))
    for _ in range(2):
        seen_alice, seen_bob = await verifier.verify(alice), await verifier.verify(bob)
        assert (seen_alice.subject, seen_bob.subject) == ("alice", "bob")
        assert "profile" not in seen_alice.scopes
        assert "profile" in seen_bob.scopes
    forged = alice[:-2] + ("A" if alice[-2] != "A" else "B") + alice[-1]
    assert await refused(verifier, forged)
