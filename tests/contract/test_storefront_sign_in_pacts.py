"""The storefront's HTTP pact with identity: its sign-in as a confidential OpenID Connect client
(authorization code + PKCE), driven through its own `RelyingParty` against Pact's mock server.

What the storefront's server calls: the discovery document, the token endpoint (the code
exchanged with its secret, then the refresh token for a new access token), the JWKS its ID
token is verified against, and the revocation of the refresh token as the person signs out.
What the person's browser asks from the URLs the storefront builds: the authorization request,
which must send them back to the callback with a code, the `state` and the `iss` the storefront
checks; and the end of the provider's session, back to the shop. Identity replays each against
its real app: the storefront's client registered with the pact's secret, and the session
cookie, the authorization code and the refresh token the pact names set up first through
identity's own provider states (`shop.identity.pact_states`).

The ID token is signed with a test key of the pact's own (its JWKS answer is that key's public
half), so that the storefront's real verification runs; its `iss` names the mock server, which
is why the mock server listens on one fixed port.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import RSAKey
from pact import Pact, generate, match

from cleave.auth.oidc import OidcKeySource
from cleave.contracts.pacts import CLIENT_REGISTERED
from cleave.web.clients import cookieless_client
from shop.identity.pact_states import CODE_ISSUED, REFRESH_TOKEN_ISSUED, SIGNED_IN_AT_PROVIDER
from shop.storefront import contract
from shop.storefront.oidc import RelyingParty
from tests.contract.pactfiles import write_pact

# The issuer in the ID token must be the mock server's address: one port, always.
MOCK_PORT = 47613
BASE = "/api/identity/v1"
ISSUER = f"http://127.0.0.1:{MOCK_PORT}{BASE}"
PUBLIC_URL = "http://127.0.0.1:8000"  # where the provider's seed registers the storefront
CALLBACK, SIGNED_OUT = contract.redirect_uris(PUBLIC_URL)
SECRET = "a-secret-only-this-pact-uses"
SESSION = "provider-session-of-the-pact"
CODE = "code-of-the-pact"
# One sign-in the storefront started (`RelyingParty.new_login`), fixed so the pact is too.
LOGIN = {
    "state": "state-of-the-pact",
    "nonce": "nonce-of-the-pact",
    "verifier": "verifier-of-the-pact-" + "v" * 43,
    "return_to": "/orders",
}
KEY = RSAKey.import_key(json.loads((Path(__file__).parent / "id_token_key.json").read_text()))
ID_TOKEN = jwt.encode(
    {"alg": "RS256", "kid": KEY.kid, "typ": "JWT"},
    {
        "iss": ISSUER,
        "aud": contract.CLIENT_ID,
        "sub": "alice",
        "iat": 1767225600,  # 2026-01-01
        "exp": 4102444800,  # 2100-01-01: a recorded token that never runs out
        "nonce": LOGIN["nonce"],
        "name": "Alice Example",
        "email": "alice@example.com",
    },
    KEY,
)


def endpoint(path: str) -> object:
    """An endpoint of the discovery document: wherever the provider is (the mock's own URL)."""
    return match.type(
        f"{ISSUER}{path}",
        generator=generate.mock_server_url(regex=f".*({BASE}{path})$", example=f"{ISSUER}{path}"),
    )


def expect_sign_in(pact: Pact) -> None:
    (
        pact.upon_receiving("the discovery document")
        .with_request("GET", f"{BASE}/.well-known/openid-configuration")
        .will_respond_with(200)
        .with_body(
            {
                "issuer": endpoint(""),
                "authorization_endpoint": endpoint("/authorize"),
                "token_endpoint": endpoint("/token"),
                "jwks_uri": endpoint("/jwks"),
                "revocation_endpoint": endpoint("/revoke"),
                "end_session_endpoint": endpoint("/sign-out"),
            },
            "application/json",
        )
    )
    authorize = {
        "response_type": "code",
        "client_id": contract.CLIENT_ID,
        "redirect_uri": CALLBACK,
        "scope": " ".join(sorted(contract.SCOPES)),
        "state": LOGIN["state"],
        "nonce": LOGIN["nonce"],
        "code_challenge": create_s256_code_challenge(LOGIN["verifier"]),
        "code_challenge_method": "S256",
    }
    back = f"{CALLBACK}?code={CODE}&iss={ISSUER.replace(':', '%3A').replace('/', '%2F')}"
    (
        pact.upon_receiving("an authorization request, as the signed-in person's browser")
        .given(SIGNED_IN_AT_PROVIDER, {"subject": "alice", "session": SESSION})
        .with_request("GET", f"{BASE}/authorize")
        .with_query_parameters(authorize)
        .with_header("Cookie", f"cleave_session={SESSION}")
        .will_respond_with(302)
        .with_header(
            "Location",
            match.regex(
                f"{back}&state={LOGIN['state']}",
                regex=rf"^{CALLBACK}\?code=[\w-]+&iss=[^&]+&state={LOGIN['state']}$",
            ),
        )
    )
    registered: dict[str, object] = {
        "client_id": contract.CLIENT_ID,
        "scopes": sorted(contract.SCOPES),
        "secret": SECRET,
    }
    basic = base64.b64encode(f"{contract.CLIENT_ID}:{SECRET}".encode()).decode()
    issued: dict[str, object] = {
        "client_id": contract.CLIENT_ID,
        "subject": "alice",
        "redirect_uri": CALLBACK,
        "code": CODE,
        "code_verifier": LOGIN["verifier"],
        "nonce": LOGIN["nonce"],
        "scopes": sorted(contract.SCOPES),
    }
    form = {
        "grant_type": "authorization_code",
        "code": CODE,
        "redirect_uri": CALLBACK,
        "code_verifier": LOGIN["verifier"],
    }
    (
        pact.upon_receiving("an authorization code grant")
        .given(CLIENT_REGISTERED, registered)
        .given(CODE_ISSUED, issued)
        .with_request("POST", f"{BASE}/token")
        .with_header("Authorization", f"Basic {basic}")
        .with_body(urlencode(form), "application/x-www-form-urlencoded")
        .will_respond_with(200)
        .with_body(
            {
                "access_token": match.str("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
                "token_type": match.regex("Bearer", regex="(?i)bearer"),
                "expires_in": match.int(600),
                "refresh_token": match.str("refresh-of-the-pact"),
                "id_token": match.str(ID_TOKEN),
            },
            "application/json",
        )
    )
    refreshed: dict[str, object] = {
        "client_id": contract.CLIENT_ID,
        "subject": "alice",
        "refresh_token": "refresh-of-the-pact",
        "scopes": sorted(contract.SCOPES),
    }
    (
        pact.upon_receiving("a refresh token grant")
        .given(CLIENT_REGISTERED, registered)
        .given(REFRESH_TOKEN_ISSUED, refreshed)
        .with_request("POST", f"{BASE}/token")
        .with_header("Authorization", f"Basic {basic}")
        .with_body(
            "grant_type=refresh_token&refresh_token=refresh-of-the-pact",
            "application/x-www-form-urlencoded",
        )
        .will_respond_with(200)
        .with_body(
            {
                "access_token": match.str("eyJhbGciOiJSUzI1NiJ9.e30.bmV3"),
                "expires_in": match.int(600),
                "refresh_token": match.str("rotated-refresh-of-the-pact"),
            },
            "application/json",
        )
    )
    public = KEY.as_dict(private=False)
    (
        pact.upon_receiving("the signing keys")
        .with_request("GET", f"{BASE}/jwks")
        .will_respond_with(200)
        .with_body(
            {
                "keys": match.each_like(
                    {
                        "kty": "RSA",
                        "kid": match.str(str(public["kid"])),
                        "use": "sig",
                        "n": match.str(str(public["n"])),
                        "e": match.str(str(public["e"])),
                    },
                    min=1,
                )
            },
            "application/json",
        )
    )
    (
        pact.upon_receiving("a refresh token revoked as the person signs out")
        .given(CLIENT_REGISTERED, registered)
        .with_request("POST", f"{BASE}/revoke")
        .with_header("Authorization", f"Basic {basic}")
        .with_body(
            "token=refresh-of-the-pact&token_type_hint=refresh_token",
            "application/x-www-form-urlencoded",
        )
        .will_respond_with(200)
    )
    leave: dict[str, object] = {
        "client_id": contract.CLIENT_ID,
        "post_logout_redirect_uri": SIGNED_OUT,
        "id_token_hint": ID_TOKEN,
    }
    (
        pact.upon_receiving("the end of the provider's session, as the person's browser")
        .with_request("GET", f"{BASE}/sign-out")
        .with_query_parameters(leave)
        .will_respond_with(303)
        .with_header("Location", SIGNED_OUT)
    )


async def test_storefront_signs_a_person_in_and_out_at_identity() -> None:
    pact = Pact("storefront", "identity")
    expect_sign_in(pact)
    with pact.serve(addr="127.0.0.1", port=MOCK_PORT) as server:
        issuer = f"{server.url}{BASE}".replace("//localhost", "//127.0.0.1")
        assert issuer == ISSUER
        async with cookieless_client(timeout=5.0) as http, httpx.AsyncClient() as browser:
            storefront = RelyingParty(
                issuer=issuer,
                client_id=contract.CLIENT_ID,
                secret=lambda: SECRET,
                redirect_uri=CALLBACK,
                scopes=contract.SCOPES,
                http=http,
                keys=OidcKeySource(issuer),
            )
            url = await storefront.authorization_url(dict(LOGIN))
            # The browser, signed in at the provider already, is sent back with a code.
            sent_back = await browser.get(url, headers={"Cookie": f"cleave_session={SESSION}"})
            callback = dict(parse_qsl(urlsplit(sent_back.headers["location"]).query))
            person, tokens = await storefront.finish(dict(LOGIN), callback)
            # Before the access token runs out: a new one, and the rotated refresh token.
            refreshed = await storefront.refresh(tokens)
            await storefront.revoke(tokens)
            sign_out = await storefront.end_session_url(tokens, SIGNED_OUT)
            assert sign_out is not None
            signed_out = await browser.get(sign_out)
    assert (person.subject, person.name, person.email) == (
        "alice",
        "Alice Example",
        "alice@example.com",
    )
    assert tokens.refresh_token == "refresh-of-the-pact"
    assert tokens.id_token == ID_TOKEN
    assert (refreshed.refresh_token, refreshed.id_token) == (
        "rotated-refresh-of-the-pact",
        ID_TOKEN,
    )
    assert signed_out.headers["location"] == SIGNED_OUT
    write_pact(pact)
