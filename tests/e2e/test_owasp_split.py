"""The OWASP API Security Top 10 checks of tests/security, run again on the split, through its
gateway: the same test functions, with the client, the tokens and the OpenAPI document of the
README split (each service its own process, over PostgreSQL, RabbitMQ and gRPC).

The tokens come from the split's identity provider as its clients get them (the authorization
code flow for alice and bob, client credentials for the admin client). Left with the monolith:
an expired token signed by the provider's own key (its key never leaves identity; the revocation
tests cover a token that stops being valid) and API9 (every route documented), which reads the
services' routers, the same in every topology."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from unittest import mock

import httpx
import pytest

from bench.faults.system import demo_tokens
from cleave.auth.oidc import DISCOVERY_PATH
from cleave.config import SystemConfig, load_config
from tests.e2e.conftest import ROOT, ReadmeSplit
from tests.security.test_owasp_api import (
    UNSIGNED_TOKEN,
    forged_token,
    openapi,
    test_api1_one_customers_objects_are_refused_to_another,
    test_api2_every_protected_operation_wants_a_valid_token,
    test_api3_every_write_body_refuses_unknown_and_server_owned_fields,
    test_api4_page_sizes_body_sizes_and_quantities_are_bounded,
    test_api5_a_customer_token_is_refused_on_every_admin_operation,
    test_api8_errors_are_problems_without_internals,
)

__all__ = [  # collected here again, with this module's fixtures
    "openapi",
    "test_api1_one_customers_objects_are_refused_to_another",
    "test_api2_every_protected_operation_wants_a_valid_token",
    "test_api3_every_write_body_refuses_unknown_and_server_owned_fields",
    "test_api4_page_sizes_body_sizes_and_quantities_are_bounded",
    "test_api5_a_customer_token_is_refused_on_every_admin_operation",
    "test_api8_errors_are_problems_without_internals",
]


@pytest.fixture(scope="module")
def split_config(readme_split: ReadmeSplit) -> SystemConfig:
    with mock.patch.dict(os.environ, readme_split.environment, clear=True):
        config = load_config(ROOT / "cleave.toml", topology="split")
    return config.serving_at("127.0.0.1", int(readme_split.environment["CLEAVE_PORT"]))


@pytest.fixture(scope="module")
def split_tokens(split_config: SystemConfig) -> tuple[dict[str, str], str]:
    return asyncio.run(demo_tokens(split_config))


@pytest.fixture
def customer_headers(
    split_tokens: tuple[dict[str, str], str],
) -> Callable[[str], dict[str, str]]:
    return lambda name: {"Authorization": f"Bearer {split_tokens[0][name]}"}


@pytest.fixture
def admin_headers(split_tokens: tuple[dict[str, str], str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {split_tokens[1]}"}


@pytest.fixture
async def bad_tokens(
    client: httpx.AsyncClient, split_config: SystemConfig
) -> dict[str, str | None]:
    discovery = (await client.get(split_config.issuer + DISCOVERY_PATH)).json()
    keys = (await client.get(discovery["jwks_uri"])).json()["keys"]
    auth = split_config.auth
    return {
        "none": None,
        "forged": forged_token(split_config.issuer, auth.audience, keys[0]["kid"]),
        "unsigned": UNSIGNED_TOKEN,
    }


@pytest.fixture
async def client(readme_split: ReadmeSplit) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=readme_split.base, timeout=30) as http:
        yield http
