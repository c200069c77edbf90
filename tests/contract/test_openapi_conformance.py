"""schemathesis over every service's checked-in OpenAPI document, against the shop's real app in
process (ASGI), as a customer and as an administrator: no response is a server error, and every
response matches the schema its document declares for it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from cleave.auth.tokens import ADMIN_SCOPE, DevIssuer
from cleave.config import RateLimitConfig
from cleave.runtime import Unit
from cleave.web.app import create_app
from shop.identity.domain import USER_SCOPES
from tests.conftest import ROOT, MigratedShop, suite_config

DOCUMENTS = sorted((ROOT / "contracts/openapi").glob("*.json"))
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
# Examples per operation and caller: enough to reach each branch of the validation, while the
# whole module stays well under a minute.
EXAMPLES = 5
CUSTOMER = "alice"
NEGATIVE = GenerationMode.NEGATIVE  # a demo customer the seed creates


@dataclass(frozen=True)
class Shop:
    app: Any
    headers: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, migrated_shop: MigratedShop) -> Iterator[Shop]:
    config = suite_config(tmp_path_factory.mktemp("conformance") / "var")
    # Limits would answer 429 to a burst of generated calls, before the routes under test.
    config = replace(config, rate_limit=RateLimitConfig(per_address="off", per_principal="off"))
    issuer = DevIssuer.load_or_create(config.var_root, config.auth.issuer, config.auth.audience)
    config = asyncio.run(migrated_shop.restore(config, "sqlite"))
    # Its lifespan starts the unit, in the event loop schemathesis calls the app in.
    app = create_app(Unit(config))
    headers = {
        "customer": {"Authorization": f"Bearer {issuer.issue(CUSTOMER, sorted(USER_SCOPES))}"},
        "admin": {"Authorization": f"Bearer {issuer.issue('admin', [ADMIN_SCOPE])}"},
    }
    yield Shop(app, headers)
    asgi.shutdown_lifespans()


def conformance_failures(
    document: dict[str, Any],
    app: Any,
    headers: dict[str, str],
    mode: GenerationMode = GenerationMode.POSITIVE,
) -> list[str]:
    """Each operation of `document` whose generated calls (valid ones, or with NEGATIVE invalid
    ones) got a server error, or a response whose media type or body is not the one declared."""
    schema = schemathesis.openapi.from_dict(document)
    schema.app = app
    results = list(schema.get_all_operations())
    failures = [f"{result.err()}" for result in results if not isinstance(result, Ok)]
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert operations, "the document declares no operation"
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            case.call_and_validate(headers=dict(headers), checks=CHECKS)

        try:
            call()
        except Unsatisfiable:  # nothing to make invalid: an operation that takes no input
            assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no call generated"
        except (Exception, FailureGroup) as error:  # a group of failed checks is a BaseException
            causes = getattr(error, "exceptions", [error])
            failures.append(f"{operation.label}: " + "\n".join(map(str, causes)))
    return failures


# The app's own tasks (a saga's retry jitter) draw from `random` while hypothesis generates.
RANDOM_IN_THE_APP = "ignore:Do not use the `random` module inside strategies"


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings(RANDOM_IN_THE_APP)
@pytest.mark.parametrize("caller", ["customer", "admin"])
@pytest.mark.parametrize("path", DOCUMENTS, ids=[path.stem for path in DOCUMENTS])
def test_every_operation_answers_what_its_document_declares(
    shop: Shop, path: Path, caller: str
) -> None:
    failures = conformance_failures(json.loads(path.read_text()), shop.app, shop.headers[caller])
    assert not failures, "\n\n".join(failures)


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings(RANDOM_IN_THE_APP)
@pytest.mark.parametrize("path", DOCUMENTS, ids=[path.stem for path in DOCUMENTS])
def test_every_invalid_request_is_answered_with_the_declared_problem(
    shop: Shop, path: Path
) -> None:
    document = json.loads(path.read_text())
    failures = conformance_failures(document, shop.app, shop.headers["admin"], NEGATIVE)
    assert not failures, "\n\n".join(failures)


@pytest.mark.filterwarnings(RANDOM_IN_THE_APP)
def test_a_response_that_differs_from_its_declared_schema_is_caught(shop: Shop) -> None:
    document = json.loads((ROOT / "contracts/openapi/catalog.json").read_text())
    listing = "/api/catalog/v1/products"
    document["paths"] = {listing: {"get": document["paths"][listing]["get"]}}
    document["components"]["schemas"]["ProductOut"]["properties"]["stock"] = {"type": "string"}
    failures = conformance_failures(document, shop.app, shop.headers["customer"])
    assert len(failures) == 1
    assert failures[0].startswith(f"GET {listing}: ")
    assert "Response violates schema" in failures[0]
    assert 'is not of type "string"' in failures[0]
