"""The identity suites: the real provider served over real HTTP (uvicorn on a free port), a second
and independent OIDC issuer, and a standard OAuth client (Authlib's httpx client)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from cleave.auth.client import AsyncOAuth2Client
from cleave.config import SystemConfig, UnitAddress
from cleave.runtime import Unit
from cleave.web.app import create_app
from cleave.web.console.store import TraceStore
from cleave.web.gateway import create_gateway
from shop.identity.contract import read_credentials
from shop.identity.contract.credentials import CLI_CLIENT, CLI_REDIRECT_URI
from tests.conftest import free_port as free_port  # the one place tests take ports from

CUSTOMER_SCOPES = "openid profile email orders:read orders:write payments:read"


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, port: int) -> AsyncIterator[uvicorn.Server]:
    """Serve `app` on 127.0.0.1:`port` in this event loop until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 15
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


@dataclass
class Provider:
    """The running shop with its identity provider, and a demo user's credentials."""

    url: str
    unit: Unit
    credentials: dict[str, Any]

    @property
    def issuer(self) -> str:
        return f"{self.url}/api/identity/v1"

    def api(self, path: str) -> str:
        return f"{self.url}/api{path}"


@pytest.fixture
def provider_config(base_config: SystemConfig) -> SystemConfig:
    port = free_port()
    settings = {name: dict(values) for name, values in base_config.settings.items()}
    settings["identity"] = {"sign_in_lock_after": 4, "sign_in_lock_seconds": 600}
    auth = replace(
        base_config.auth,
        issuer="self",
        public_url=f"http://127.0.0.1:{port}",
        jwks_refresh_seconds=0.0,
    )
    return replace(base_config, auth=auth, settings=settings)


@pytest.fixture
async def provider(provider_config: SystemConfig) -> AsyncIterator[Provider]:
    unit = Unit(provider_config)
    await unit.migrate()
    await unit.seed()
    await unit.start()
    port = int(provider_config.public_url.rsplit(":", 1)[1])
    try:
        async with serving(create_app(unit, start_unit=False), port):
            yield Provider(
                provider_config.public_url, unit, read_credentials(provider_config.var_dir)
            )
    finally:
        await unit.stop()


def oauth_client(provider: Provider, **options: Any) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        options.pop("client_id", CLI_CLIENT),
        redirect_uri=options.pop("redirect_uri", CLI_REDIRECT_URI),
        code_challenge_method="S256",
        scope=options.pop("scope", CUSTOMER_SCOPES),
        timeout=10,
        **options,
    )


CSRF = re.compile(r"name='csrf' value='([^']+)'")


async def sign_in_for_code(
    provider: Provider,
    client: AsyncOAuth2Client,
    email: str,
    password: str,
    *,
    verifier: str,
    **params: Any,
) -> httpx.Response:
    """Authorize, sign in on the provider's page, and return the response that redirects back."""
    url, _state = client.create_authorization_url(
        f"{provider.issuer}/authorize", code_verifier=verifier, **params
    )
    async with httpx.AsyncClient(timeout=10) as browser:
        response = await browser.get(url)
        assert response.status_code == 303, response.text
        page = await browser.get(urljoin(url, response.headers["location"]))
        form = {
            "csrf": CSRF.search(page.text).group(1),  # type: ignore[union-attr]
            "next": parse_qs(urlsplit(str(page.url)).query)["next"][0],
            "email": email,
            "password": password,
        }
        signed_in = await browser.post(f"{provider.issuer}/sign-in", data=form)
        if signed_in.status_code != 303:
            return signed_in
        return await browser.get(urljoin(url, signed_in.headers["location"]))


async def user_tokens(provider: Provider, user: str = "alice", **params: Any) -> dict[str, Any]:
    """The whole authorization code flow with PKCE for a demo user, with Authlib's client."""
    async with oauth_client(provider) as client:
        verifier = secrets.token_urlsafe(48)
        demo = provider.credentials["users"][user]
        back = await sign_in_for_code(
            provider, client, demo["email"], demo["password"], verifier=verifier, **params
        )
        assert back.status_code == 302, back.text
        token = await client.fetch_token(
            f"{provider.issuer}/token",
            authorization_response=back.headers["location"],
            code_verifier=verifier,
        )
    return dict(token)


class ForeignIssuer:
    """A second, independent OIDC issuer: its own key, discovery document and JWKS."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/realms/shop"
        self.port = port
        self.key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex, "use": "sig"})
        self.jwks_fetches = 0
        self.app = Starlette(
            routes=[
                Route("/realms/shop/.well-known/openid-configuration", self._discovery),
                Route("/realms/shop/certs", self._jwks),
            ]
        )

    async def _discovery(self, request: Request) -> JSONResponse:
        return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/certs"})

    async def _jwks(self, request: Request) -> JSONResponse:
        self.jwks_fetches += 1
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": "cleave",
            "sub": "alice",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "scope": "profile orders:read",
            "azp": "shop-web",
        }
        claims.update(overrides)
        return {key: value for key, value in claims.items() if value is not None}

    def token(
        self, key: RSAKey | None = None, header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        head = {"alg": "RS256", "kid": self.key.kid, "typ": "at+jwt", **(header or {})}
        return jwt.encode(head, self.claims(**claims), key or self.key, algorithms=["RS256"])


@pytest.fixture
async def foreign_issuer() -> AsyncIterator[ForeignIssuer]:
    issuer = ForeignIssuer(free_port())
    async with serving(issuer.app, issuer.port) as server:
        issuer.server = server  # type: ignore[attr-defined]
        yield issuer


@pytest.fixture
def split_config(provider: Provider) -> SystemConfig:
    """The provider's system as two units, both answered by the provider's server."""
    config = provider.unit.config
    port = int(provider.url.rsplit(":", 1)[1])
    units = {
        "front": ("identity", "catalog", "customer", "storefront"),
        "back": ("ordering", "payment"),
    }
    address = UnitAddress("127.0.0.1", port, 1)
    topology = replace(config.topology, units=units, addresses=dict.fromkeys(units, address))
    return replace(config, topology=topology)


@contextlib.asynccontextmanager
async def browsing(app: ASGIApp, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of `app`: it keeps its own cookies and follows no redirect by itself."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=10) as client:
        yield client


@pytest.fixture
async def gateway(split_config: SystemConfig) -> AsyncIterator[Starlette]:
    """The split's gateway, running (its lifespan reads the provider's revocations)."""
    app = create_gateway(split_config, store=TraceStore())
    async with app.router.lifespan_context(app):  # closes the gateway's pooled client
        yield app


@pytest.fixture
async def web(gateway: Starlette, split_config: SystemConfig) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of the gateway."""
    async with browsing(gateway, split_config.public_url) as client:
        yield client
