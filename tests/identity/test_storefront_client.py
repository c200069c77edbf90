"""The storefront's confidential client, as identity's seed registers it: redirect URIs at the
public URL (added when the system moves), a secret only the owner-only credentials file holds,
and `prompt=create` to begin at the sign-up page."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shop.identity import handlers
from shop.identity.contract import CREDENTIALS_FILE, client_secret, read_credentials
from shop.storefront import contract
from tests.identity.conftest import Provider


async def test_the_seed_registers_the_storefront_with_a_secret_only_its_owner_reads(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    var_dir = provider.unit.config.var_dir
    mode = stat.S_IMODE(os.stat(var_dir / CREDENTIALS_FILE).st_mode)
    assert mode == 0o600
    secret = client_secret(var_dir, contract.CLIENT_ID)
    assert secret
    async with provider.unit.context("identity").read() as connection:
        client = await handlers.find_client(connection, contract.CLIENT_ID)
    assert client is not None
    assert not client.public
    assert client.redirect_uris == contract.redirect_uris(provider.url)
    async with httpx.AsyncClient() as http:
        token = f"{provider.issuer}/token"
        form = {"grant_type": "client_credentials", "scope": "profile"}
        good = await http.post(token, data=form, auth=(contract.CLIENT_ID, secret))
        bad = await http.post(token, data=form, auth=(contract.CLIENT_ID, secret + "x"))
    assert good.status_code == 200
    assert bad.status_code == 401

    # Served at another address, the seed adds that address's URIs and keeps the secret.
    context = provider.unit.context("identity")
    moved = "http://127.0.0.1:9"
    served_here = context.system
    context.system = replace(served_here, public_url=moved)
    try:
        assert (await provider.unit.seed())["identity"] == 1
    finally:
        context.system = served_here
    async with context.read() as connection:
        client = await handlers.find_client(connection, contract.CLIENT_ID)
    assert client is not None
    assert set(client.redirect_uris) == {
        *contract.redirect_uris(provider.url),
        *contract.redirect_uris(moved),
    }
    assert client_secret(var_dir, contract.CLIENT_ID) == secret
    assert (await provider.unit.seed())["identity"] == 0  # nothing is missing any more

    # A secret lost from the file is replaced, never left unknown.
    credentials = read_credentials(var_dir)
    del credentials["clients"][contract.CLIENT_ID]
    (var_dir / CREDENTIALS_FILE).write_text(json.dumps(credentials))
    assert (await provider.unit.seed())["identity"] == 1
    assert client_secret(var_dir, contract.CLIENT_ID) not in (None, secret)
    monkeypatch.setenv("CLEAVE_CLIENT_SECRET_STOREFRONT", "from-a-kubernetes-secret")
    assert client_secret(var_dir, contract.CLIENT_ID) == "from-a-kubernetes-secret"


async def test_prompt_create_begins_at_the_sign_up_page_and_comes_back_to_authorize(
    provider: Provider,
) -> None:
    params = {
        "response_type": "code",
        "client_id": contract.CLIENT_ID,
        "redirect_uri": contract.redirect_uris(provider.url)[0],
        "scope": "openid profile",
        "state": "s",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
        "prompt": "create",
    }
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{provider.issuer}/authorize", params=params)
    assert answer.status_code == 303
    target = urlsplit(answer.headers["location"])
    assert target.path.endswith("/sign-up")
    back = parse_qs(target.query)["next"][0]
    assert back.startswith("/api/identity/v1/authorize?")
    assert "prompt=create" not in back
    assert "client_id=storefront" in back
