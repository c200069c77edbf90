"""The AsyncAPI 3 document: what the event models and subscriptions make today, valid against
the specification's own JSON Schema (from the npm package @asyncapi/specs), every `$ref` found."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cleave.config import load_config
from cleave.contracts import asyncapi, baseline
from tests.conftest import ROOT, require

SPEC = ROOT / "tools/contracts/node_modules/@asyncapi/specs/schemas/3.1.0-without-$id.json"
CONFIRMED = "shop_ordering_order_confirmed_v1"


def checked_in() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "contracts" / asyncapi.FILE).read_text())
    return document


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    require(SPEC.is_file(), f"no {SPEC.relative_to(ROOT)}: run npm ci --prefix tools/contracts")
    spec = json.loads(SPEC.read_text())
    validator: jsonschema.protocols.Validator = jsonschema.validators.validator_for(spec)(spec)
    return validator


def test_the_checked_in_document_is_what_the_models_make_today(tmp_path: Path) -> None:
    config = load_config(ROOT / "cleave.toml")
    assert asyncapi.verify(config) == [], f"run {asyncapi.WRITE_COMMAND}"
    asyncapi.write(replace(config, root=tmp_path))
    fresh = (tmp_path / "contracts" / asyncapi.FILE).read_text()
    assert fresh == (ROOT / "contracts" / asyncapi.FILE).read_text()


def test_a_stale_document_is_reported(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "cleave.toml").write_text((ROOT / "cleave.toml").read_text())
    config = load_config(tmp_path / "cleave.toml")
    assert asyncapi.verify(config) == [
        f"asyncapi: contracts/{asyncapi.FILE} is missing: run {asyncapi.WRITE_COMMAND}"
    ]
    stale = checked_in()
    del stale["channels"][CONFIRMED]
    (tmp_path / "contracts" / asyncapi.FILE).write_text(baseline.serialise(stale))
    assert asyncapi.verify(config) == [
        f"asyncapi: contracts/{asyncapi.FILE} is out of date: run {asyncapi.WRITE_COMMAND}"
    ]


def test_the_document_is_valid_asyncapi_3_1(validator: jsonschema.protocols.Validator) -> None:
    document = checked_in()
    validator.validate(document)
    wrong = copy.deepcopy(document)
    wrong["operations"]["customer_on_order_confirmed"]["action"] = "publish"  # AsyncAPI 2's word
    assert not validator.is_valid(wrong)


def test_every_reference_resolves_within_the_document() -> None:
    document = checked_in()

    def references(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [ref for value in node.values() for ref in references(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in references(value)]
        return []

    found = references(document)
    assert "#/components/schemas/Money" in found
    for ref in found:
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, f"{ref} points nowhere"
            target = target[part]


def test_each_channel_carries_the_event_schema_and_names_publisher_and_consumers() -> None:
    document = checked_in()
    assert document["channels"][CONFIRMED]["address"] == "shop.ordering.order_confirmed.v1"
    operations = document["operations"]
    assert operations[f"ordering_sends_{CONFIRMED}"]["action"] == "send"
    receive = operations["customer_on_order_confirmed"]
    assert receive["action"] == "receive"
    assert receive["channel"] == {"$ref": f"#/channels/{CONFIRMED}"}
    envelope = document["components"]["messages"][CONFIRMED]["payload"]
    assert envelope["properties"]["type"] == {"const": "shop.ordering.order_confirmed.v1"}
    schema = json.loads(
        (ROOT / "contracts/events/shop.ordering.order_confirmed.v1.json").read_text()
    )
    data = envelope["properties"]["data"]
    assert data["required"] == schema["required"]
    assert data["properties"]["total"] == {"$ref": "#/components/schemas/Money"}
