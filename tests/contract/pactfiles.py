"""What every consumer test of a pact shares: the CloudEvent a pact expects, and writing the
pact file where the providers' verification reads it (failing when it changed, like the drift
test of the generated protobuf code, so that a changed expectation is reviewed and committed)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import pytest
from pact import Pact, match

from cleave.contracts.messages import port_request
from cleave.contracts.pacts import CALLED, PACT_DIR
from tests.conftest import ROOT

PACTS = ROOT / PACT_DIR


def cloud_event(event_type: str, provider: str, data: dict[str, Any]) -> dict[str, Any]:
    """The structured-mode CloudEvent a consumer reads: its exact type, and the data it needs."""
    return {
        "specversion": "1.0",
        "type": event_type,
        "id": match.str("5b7e0c3a-0000-4000-8000-000000000001"),
        "source": match.str(provider),
        "data": data,
    }


def expect_event(pact: Pact, event_type: str, data: dict[str, Any]) -> None:
    """An event message: described by its type, which the provider's publisher must carry."""
    (
        pact.upon_receiving(event_type, "Async")
        .with_body(cloud_event(event_type, pact.provider, data), "application/json")
        .with_metadata({"type": event_type})
    )


def write_pact(pact: Pact) -> None:
    """Write `<consumer>-<provider>.json`; fail if that changed what was checked in."""
    name = f"{pact.consumer}-{pact.provider}.json"
    target = PACTS / name
    PACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=PACTS.parent) as folder:
        pact.write_file(folder, overwrite=True)
        written = os.path.join(folder, name)
        with open(written) as produced:
            new = json.load(produced)
        old = json.loads(target.read_text()) if target.exists() else None
        if new == old:
            return
        os.replace(written, target)  # atomic: a provider test never reads half a file
    pytest.fail(f"{target.relative_to(ROOT)} changed: review the new expectations and commit it")


@dataclass(frozen=True)
class Call:
    """One port call a consumer makes, the answer it relies on, and any earlier call the answer
    depends on (a provider state: the verifier makes that call first)."""

    scenario: str
    method: str
    arguments: dict[str, Any]
    answer: dict[str, Any]
    after: tuple[tuple[str, dict[str, Any]], ...] = ()


def expect_call(pact: Pact, protocol: type, call: Call) -> None:
    """A synchronous message: the call as the port's signature encodes it, and the answer."""
    interaction = pact.upon_receiving(f"{call.method} {call.scenario}", "Sync")
    for method, arguments in call.after:
        interaction.given(
            f"{method}{CALLED}", port_request(protocol, method, **arguments)["arguments"]
        )
    (
        interaction.with_body(
            port_request(protocol, call.method, **call.arguments), "application/json"
        )
        .will_respond_with()
        .with_body(call.answer, "application/json")
    )


def answers(pact: Pact) -> dict[str, Any]:
    """Each synchronous interaction's answer as the consumer gets it, by description."""
    found: dict[str, Any] = {}
    for message in pact.interactions("Sync"):
        [response] = list(message.response_contents)
        found[message.description] = json.loads(str(response.contents))
    return found
