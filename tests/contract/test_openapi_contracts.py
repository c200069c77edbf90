"""Each service's OpenAPI document: checked in, what its routes make today, valid OpenAPI 3.1, and
guarded by a gate that fails on a change that breaks a client, naming the operation and field."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate

from cleave.config import load_config
from cleave.contracts import baseline, openapi
from cleave.runtime import load_services
from tests.conftest import ROOT

PRODUCTS = "/api/catalog/v1/products"
ORDERS = "/api/ordering/v1/orders"


def checked_in(service: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / f"contracts/openapi/{service}.json").read_text())
    return document


def test_every_checked_in_document_is_what_the_service_s_routes_make_today(tmp_path: Path) -> None:
    config = load_config(ROOT / "cleave.toml")
    openapi.write(replace(config, root=tmp_path))
    fresh = sorted(path.name for path in (tmp_path / "contracts/openapi").glob("*.json"))
    kept = sorted(path.name for path in (ROOT / "contracts/openapi").glob("*.json"))
    assert fresh == kept, f"run {openapi.WRITE_COMMAND}"
    routed = [name for name, service in load_services(config).items() if service.router]
    assert fresh == sorted(f"{name}.json" for name in routed)
    for name in fresh:
        assert (tmp_path / "contracts/openapi" / name).read_text() == (
            ROOT / "contracts/openapi" / name
        ).read_text(), f"{name} drifted from the service's routes: run {openapi.WRITE_COMMAND}"
    assert openapi.verify(config) == []


def test_every_checked_in_document_is_valid_openapi_3_1() -> None:
    for path in sorted((ROOT / "contracts/openapi").glob("*.json")):
        document = json.loads(path.read_text())
        assert document["openapi"].startswith("3.1")
        validate(document)


def changed(service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    old = checked_in(service)
    return old, copy.deepcopy(old)


def test_a_dropped_response_field_fails_naming_each_operation_and_the_field() -> None:
    old, new = changed("catalog")
    del new["components"]["schemas"]["ProductOut"]["properties"]["price"]
    new["components"]["schemas"]["ProductOut"]["required"].remove("price")
    problems = openapi.compare("catalog", old, new).breaking
    assert (
        f"openapi: catalog: GET {PRODUCTS}: response 200 field 'items[].price': removed "
        "(or renamed)"
    ) in problems
    assert (
        f"openapi: catalog: GET {PRODUCTS}/{{sku}}: response 200 field 'price': "
        "removed (or renamed)"
    ) in problems


def test_a_response_field_made_nullable_fails() -> None:
    old, new = changed("catalog")
    field = new["components"]["schemas"]["ProductOut"]["properties"]["stock"]
    new["components"]["schemas"]["ProductOut"]["properties"]["stock"] = {
        "anyOf": [field, {"type": "null"}]
    }
    problems = openapi.compare("catalog", old, new).breaking
    assert (
        f"openapi: catalog: GET {PRODUCTS}/{{sku}}: response 200 field 'stock': retyped from "
        "integer to integer | null"
    ) in problems


def test_a_new_required_request_field_or_parameter_fails() -> None:
    old, new = changed("ordering")
    order_in = new["components"]["schemas"]["OrderIn"]
    order_in["properties"]["coupon"] = {"type": "string"}
    order_in["required"].append("coupon")
    new["paths"][ORDERS]["get"]["parameters"].append(
        {"name": "region", "in": "query", "required": True, "schema": {"type": "string"}}
    )
    problems = openapi.compare("ordering", old, new).breaking
    assert f"openapi: ordering: POST {ORDERS}: request body field 'coupon': new and required" in (
        problems
    )
    assert f"openapi: ordering: GET {ORDERS}: query parameter 'region' is now required" in problems


def test_a_narrowed_request_type_or_bound_fails() -> None:
    old, new = changed("catalog")
    new["components"]["schemas"]["ProductIn"]["properties"]["name"]["maxLength"] = 50
    new["components"]["schemas"]["ProductIn"]["properties"]["stock"]["type"] = "string"
    problems = openapi.compare("catalog", old, new).breaking
    assert (
        f"openapi: catalog: POST {PRODUCTS}: request body field 'name': maxLength tightened "
        "from 200 to 50"
    ) in problems
    assert (
        f"openapi: catalog: POST {PRODUCTS}: request body field 'stock': retyped from integer "
        "to string"
    ) in problems


def test_a_narrowed_enum_fails_in_a_request_and_a_widened_one_in_a_response() -> None:
    old, new = changed("catalog")
    old["components"]["schemas"]["ProductIn"]["properties"]["sku"]["enum"] = ["A", "B"]
    new["components"]["schemas"]["ProductIn"]["properties"]["sku"]["enum"] = ["A"]
    old["components"]["schemas"]["ProductOut"]["properties"]["sku"]["enum"] = ["A"]
    new["components"]["schemas"]["ProductOut"]["properties"]["sku"]["enum"] = ["A", "B"]
    problems = openapi.compare("catalog", old, new).breaking
    assert (
        f"openapi: catalog: POST {PRODUCTS}: request body field 'sku': enum no longer accepts 'B'"
    ) in problems
    assert (
        f"openapi: catalog: GET {PRODUCTS}/{{sku}}: response 200 field 'sku': enum gains 'B', "
        "unknown to the other side"
    ) in problems


def test_a_removed_path_or_operation_fails_unless_its_major_version_moved() -> None:
    old, new = changed("catalog")
    del new["paths"][f"{PRODUCTS}/{{sku}}/stock-adjustments"]
    del new["paths"][PRODUCTS]["post"]
    problems = openapi.compare("catalog", old, new).breaking
    assert problems == [
        f"openapi: catalog: POST {PRODUCTS} removed",
        f"openapi: catalog: {PRODUCTS}/{{sku}}/stock-adjustments removed",
    ]
    moved = copy.deepcopy(old)
    moved["paths"]["/api/catalog/v2/products/{sku}/stock-adjustments"] = moved["paths"].pop(
        f"{PRODUCTS}/{{sku}}/stock-adjustments"
    )
    assert openapi.compare("catalog", old, moved).breaking == []


def test_a_new_scope_required_fails() -> None:
    old, new = changed("ordering")
    new["paths"][ORDERS]["get"]["security"] = [{"openid": ["orders:read", "admin"]}]
    assert openapi.compare("ordering", old, new).breaking == [
        f"openapi: ordering: GET {ORDERS}: now requires scope admin"
    ]


def test_new_optional_fields_operations_and_a_widened_request_pass() -> None:
    old, new = changed("catalog")
    schemas = new["components"]["schemas"]
    schemas["ProductOut"]["properties"]["colour"] = {"type": "string"}
    schemas["ProductIn"]["properties"]["colour"] = {"type": "string"}
    schemas["ProductIn"]["properties"]["name"]["maxLength"] = 400
    new["paths"][f"{PRODUCTS}/export"] = {"get": {"responses": {"200": {"description": "ok"}}}}
    found = openapi.compare("catalog", old, new)
    assert found.breaking == []
    assert found.outdated == [f"openapi: catalog changed compatibly: run {openapi.WRITE_COMMAND}"]


def test_verify_reads_a_copy_of_the_system_and_filters_by_service(tmp_path: Path) -> None:
    shutil.copy(ROOT / "cleave.toml", tmp_path / "cleave.toml")
    shutil.copytree(ROOT / "contracts/openapi", tmp_path / "contracts/openapi")
    path = tmp_path / "contracts/openapi/ordering.json"
    document = json.loads(path.read_text())
    document["components"]["schemas"]["OrderOut"]["properties"]["tracking"] = {"type": "string"}
    document["components"]["schemas"]["OrderOut"]["required"].append("tracking")
    path.write_text(baseline.serialise(document))
    config = load_config(tmp_path / "cleave.toml")
    problems = openapi.verify(config, "ordering")
    assert (
        f"openapi: ordering: GET {ORDERS}/{{order_id}}: response 200 field 'tracking': removed "
        "(or renamed)"
    ) in problems
    assert openapi.verify(config, "catalog") == []
    (tmp_path / "contracts/openapi/payment.json").unlink()
    assert openapi.verify(config, "payment") == [
        f"openapi: payment has no checked-in document yet: run {openapi.WRITE_COMMAND}"
    ]
