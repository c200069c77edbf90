"""The units' token client's HTTP pact with identity: the discovery document and the client
credentials grant every unit makes for its calls to other units (`cleave.auth.client`, the same
code `cleave token --client` uses), made by that client against Pact's mock server. Identity
verifies it by replaying the requests against its real app, the client registered first through
its own `registers_clients`."""

from __future__ import annotations

import asyncio
import base64

from pact import Pact, generate, match

from cleave.auth.client import client_credentials_token, fetch_client_credentials
from cleave.auth.units import UNIT_SCOPE
from cleave.contracts.pacts import CLIENT_REGISTERED
from tests.contract.pactfiles import write_pact

CLIENT = "unit-pact"
SECRET = "a-secret-only-this-pact-uses"
TOKEN_PATH = "/api/identity/v1/token"


async def test_unit_client_fetches_a_token_from_identity() -> None:
    pact = Pact("cleave-unit-client", "identity")
    (
        pact.upon_receiving("the discovery document")
        .with_request("GET", "/api/identity/v1/.well-known/openid-configuration")
        .will_respond_with(200)
        .with_body(
            {
                # Whatever address the provider is at; the mock server answers with its own.
                "token_endpoint": match.type(
                    f"http://127.0.0.1:8000{TOKEN_PATH}",
                    generator=generate.mock_server_url(
                        regex=f".*({TOKEN_PATH})$", example=f"http://127.0.0.1:8000{TOKEN_PATH}"
                    ),
                )
            },
            "application/json",
        )
    )
    basic = base64.b64encode(f"{CLIENT}:{SECRET}".encode()).decode()
    (
        pact.upon_receiving("a client credentials grant")
        .given(CLIENT_REGISTERED, {"client_id": CLIENT, "scopes": [UNIT_SCOPE], "secret": SECRET})
        .with_request("POST", TOKEN_PATH)
        .with_header("Authorization", f"Basic {basic}")
        .with_body(
            f"grant_type=client_credentials&scope={UNIT_SCOPE.replace(':', '%3A')}",
            "application/x-www-form-urlencoded",
        )
        .will_respond_with(200)
        .with_body(
            {
                "access_token": match.str("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"),
                "token_type": match.regex("Bearer", regex="(?i)bearer"),
                "expires_in": match.int(300),
            },
            "application/json",
        )
    )
    with pact.serve() as server:
        issuer = f"{server.url}/api/identity/v1"
        issued = await fetch_client_credentials(issuer, CLIENT, SECRET, [UNIT_SCOPE])
        # `cleave token --client` asks the same with the blocking client.
        printed = await asyncio.to_thread(
            client_credentials_token, issuer, CLIENT, SECRET, [UNIT_SCOPE]
        )
    # What a unit keeps of the answer: the token, and how long it lives.
    assert issued["access_token"] == "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"
    assert issued["expires_in"] == 300
    assert printed["access_token"] == issued["access_token"]
    write_pact(pact)
