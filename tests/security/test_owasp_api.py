"""The OWASP API Security Top 10 (2023), checked on the monolith in process, over the whole
OpenAPI document where a class applies to every operation. The gateway, session and gRPC checks
of the split live with their own suites; revocation is not here yet (see docs/security.md)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from joserfc import jwt
from joserfc.jwk import RSAKey

from cleave.auth.tokens import DevIssuer
from cleave.runtime import Unit
from cleave.web.guards import MAX_BODY_BYTES
from tests.integration.test_order_saga import order, payments_of, place, settled

Headers = Callable[[str], dict[str, str]]
# Values for path parameters: real where that matters, harmless otherwise.
PATH_VALUES = {"sku": "MUG-CLASSIC", "customer_id": "alice", "order_id": "x", "payment_id": "x"}
# Fields only the server may set: no write body may take them.
SERVER_OWNED = ("customer_id", "status", "reason", "total", "created_at", "updated_at", "card")
ADDRESS = {
    "label": "home",
    "line1": "1 Main St",
    "city": "Utrecht",
    "postal_code": "3511",
    "country": "NL",
}


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the module is about the API, not the database: one backend is enough


@pytest.fixture
async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    document: dict[str, Any] = (await client.get("/openapi.json")).json()
    return document


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            filled = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
            yield method.upper(), filled, operation


def scopes_of(operation: dict[str, Any]) -> list[str] | None:
    """The scopes an operation requires, as the document says; None when it is public."""
    security = operation.get("security")
    return None if not security else next(iter(security[0].values()))


def json_schema(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return resolve(document, schema) if schema else None


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return resolve(document, document["components"]["schemas"][name])
    return schema


def object_schemas(document: dict[str, Any], schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every object schema reachable from `schema`: nested models, lists, optional fields."""
    schema = resolve(document, schema)
    if schema.get("type") == "object" or "properties" in schema:
        yield schema
        for child in schema.get("properties", {}).values():
            yield from object_schemas(document, child)
    for key in ("anyOf", "oneOf", "allOf"):
        for child in schema.get(key, []):
            yield from object_schemas(document, child)
    if "items" in schema:
        yield from object_schemas(document, schema["items"])


# --- API1: broken object-level authorisation --------------------------------------------------


async def test_api1_one_customers_objects_are_refused_to_another(
    client: httpx.AsyncClient, customer_headers: Headers
) -> None:
    alice, bob = customer_headers("alice"), customer_headers("bob")
    order_id = await place(client, alice, order(("MUG-CLASSIC", 1)))
    assert (await settled(client, alice, order_id))["status"] == "confirmed"
    payment_id = (await payments_of(client, alice))[0]["id"]
    address = await client.post(
        "/api/customer/v1/customers/me/addresses", json=ADDRESS, headers=alice
    )
    address_id = address.json()["id"]

    by_id = {
        f"/api/ordering/v1/orders/{order_id}": 404,
        f"/api/payment/v1/payments/{payment_id}": 404,
        "/api/customer/v1/customers/alice": 404,
    }
    for path, status in by_id.items():
        response = await client.get(path, headers=bob)
        assert response.status_code == status, path
        assert "alice@example.com" not in response.text
    listings = (
        "/api/ordering/v1/orders?limit=100",
        "/api/payment/v1/payments?limit=100",
        "/api/customer/v1/customers/me",
        "/api/customer/v1/customers/me/addresses",
    )
    for path in listings:
        response = await client.get(path, headers=bob)
        assert response.status_code == 200, path
        for secret in (order_id, payment_id, address_id, "alice@example.com"):
            assert secret not in response.text, (path, secret)
    # Only the last characters of the card ever leave the service.
    mine = (await client.get(f"/api/ordering/v1/orders/{order_id}", headers=alice)).json()
    assert mine["card"] == "…rove"
    assert "tok_approve" not in str(await payments_of(client, alice))


# --- API2: broken authentication ---------------------------------------------------------------


def forged_token(issuer: str, audience: str, kid: str) -> str:
    """An admin token in the issuer's name and under its key id, signed by another key."""
    stranger = RSAKey.generate_key(2048, parameters={"kid": kid})
    claims = {"iss": issuer, "aud": audience, "sub": "alice", "scope": "admin"}
    header = {"alg": "RS256", "kid": kid, "typ": "at+jwt"}
    return jwt.encode(header, {**claims, "exp": int(time.time()) + 60}, stranger, ["RS256"])


UNSIGNED_TOKEN = "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJhbGljZSJ9."


@pytest.fixture
def bad_tokens(issuer: DevIssuer) -> dict[str, str | None]:
    """Tokens no operation may take, by what is wrong with them."""
    return {
        "none": None,
        "forged": forged_token(issuer.issuer, issuer.audience, str(issuer.key.kid)),
        "expired": issuer.issue("alice", ["admin"], ttl_seconds=-120),
        "unsigned": UNSIGNED_TOKEN,
    }


async def test_api2_every_protected_operation_wants_a_valid_token(
    client: httpx.AsyncClient, openapi: dict[str, Any], bad_tokens: dict[str, str | None]
) -> None:
    protected = [(m, p) for m, p, op in operations(openapi) if scopes_of(op) is not None]
    assert len(protected) >= 15
    for method, path in protected:
        for name, token in bad_tokens.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = await client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, name, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")


# --- API3: broken object property level authorisation (mass assignment) -------------------------


async def test_api3_every_write_body_refuses_unknown_and_server_owned_fields(
    client: httpx.AsyncClient, openapi: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    writes = 0
    for method, path, operation in operations(openapi):
        schema = json_schema(openapi, operation)
        if schema is None:
            continue
        writes += 1
        for nested in object_schemas(openapi, schema):
            assert nested.get("additionalProperties") is False, (method, path, nested.get("title"))
        declared = set(schema.get("properties", {}))
        extra = {field: "x" for field in (*SERVER_OWNED, "is_admin") if field not in declared}
        response = await client.request(method, path, json=extra, headers=admin_headers)
        assert response.status_code == 422, (method, path, response.text)
        refused = {
            error["loc"][-1]
            for error in response.json()["errors"]
            if error["type"] == "extra_forbidden"
        }
        assert refused == set(extra), (method, path)
    assert writes >= 6


# --- API4: unrestricted resource consumption ----------------------------------------------------


async def test_api4_page_sizes_body_sizes_and_quantities_are_bounded(
    client: httpx.AsyncClient, openapi: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    paged = [
        (m, p)
        for m, p, op in operations(openapi)
        if any(param["name"] == "limit" for param in op.get("parameters", []))
    ]
    assert len(paged) >= 4
    for method, path in paged:
        for limit in (0, 101, 10**30):
            response = await client.request(
                method, path, params={"limit": limit}, headers=admin_headers
            )
            assert response.status_code == 422, (path, limit)

    too_big = b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}'
    for method, path, operation in operations(openapi):
        if json_schema(openapi, operation) is not None:
            response = await client.request(
                method,
                path,
                content=too_big,
                headers={**admin_headers, "content-type": "application/json"},
            )
            assert response.status_code == 413, (method, path)
            assert response.headers["content-type"] == "application/problem+json"

    async def chunks() -> Any:
        for _ in range(4):
            yield b"x" * (MAX_BODY_BYTES // 2)

    streamed = await client.post(
        "/api/catalog/v1/products",
        content=chunks(),
        headers={**admin_headers, "content-type": "application/json"},
    )
    assert 400 <= streamed.status_code < 500

    line = {"sku": "MUG-CLASSIC", "quantity": 1}
    for body, why in (
        (order(("MUG-CLASSIC", 1001)), "quantity"),
        ({**order(), "lines": [line] * 51}, "lines"),
    ):
        response = await client.post("/api/ordering/v1/orders", json=body, headers=admin_headers)
        assert response.status_code == 422, why
    assert (
        await client.get("/api/catalog/v1/products", params={"q": "x" * 101})
    ).status_code == 422


# --- API5: broken function-level authorisation ---------------------------------------------------


async def test_api5_a_customer_token_is_refused_on_every_admin_operation(
    client: httpx.AsyncClient, openapi: dict[str, Any], customer_headers: Headers
) -> None:
    customer = customer_headers("alice")
    admin_only = [(m, p) for m, p, op in operations(openapi) if scopes_of(op) == ["admin"]]
    assert len(admin_only) >= 6
    for method, path in admin_only:
        response = await client.request(method, path, headers=customer, json={})
        assert (response.status_code, response.json()["code"]) == (403, "insufficient-scope"), (
            method,
            path,
        )


# --- API8 and API9: misconfiguration and inventory --------------------------------------------


async def test_api8_errors_are_problems_without_internals(client: httpx.AsyncClient) -> None:
    for path in (
        "/api/nothing/v1/here",
        "/api/catalog/v1/products/NO-SUCH",
        "/api/ordering/v1/orders",
    ):
        response = await client.get(path)
        assert response.headers["content-type"] == "application/problem+json", path
        assert "Traceback" not in response.text


async def test_api9_every_api_route_is_in_the_document_or_a_page_of_the_provider(
    unit: Unit, openapi: dict[str, Any]
) -> None:
    documented = set(openapi["paths"])
    undocumented = set()
    for service in unit.services:
        for route in service.router.routes if service.router else ():
            assert isinstance(route, APIRoute)
            path = f"/api/{service.name}/v1{route.path}"
            if path not in documented:
                assert not route.include_in_schema, path
                undocumented.add(path)
    pages = {"sign-in", "sign-up", "sign-out"}  # HTML for people, not an API
    assert undocumented == {f"/api/identity/v1/{page}" for page in pages}
