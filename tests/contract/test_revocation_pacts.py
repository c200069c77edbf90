"""The revocation list's pact with identity: the three revocation events every unit subscribes
to (the chassis adds that subscription to each unit, whatever services it runs). Each message is
published on a unit's own broker and lands in its real revocation list, which then refuses a
token with that claim; without any one of its data fields the message changes nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pact import Pact, match

from cleave.config import SystemConfig
from cleave.contracts.pacts import alone
from cleave.events import Envelope
from cleave.runtime import Unit
from tests.contract.pactfiles import expect_event, write_pact

ISO_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
LATER = "2099-01-01T00:00:00Z"
# Each event, the field naming what it revokes, and the token claim that field matches.
REVOCATIONS = {
    "cleave.auth.subject_revoked.v1": ("subject", "sub"),
    "cleave.auth.token_revoked.v1": ("jti", "jti"),
    "cleave.auth.session_revoked.v1": ("session", "sid"),
}


async def _refused(config: SystemConfig, folder: Path, body: str, claim: str, value: str) -> bool:
    """Whether a unit that received this message refuses a token with `claim` = `value`."""
    unit = Unit(alone(config, "catalog", folder))
    try:
        await unit.broker.publish(Envelope.from_json(body))
        return unit.revocations.revoked({claim: value}) is not None
    finally:
        await unit.stop()


def test_every_unit_reads_revocations_from_identity(
    base_config: SystemConfig, tmp_path: Path
) -> None:
    pact = Pact("cleave-unit-revocations", "identity")
    for event_type, (field, _claim) in REVOCATIONS.items():
        data = {field: match.str(f"{field}-1"), "until": match.regex(LATER, regex=ISO_TIME)}
        expect_event(pact, event_type, data)
    runs = iter(range(100))

    def handle(body: str | bytes | None, metadata: dict[str, object]) -> None:
        message = json.loads(str(body))
        field, claim = REVOCATIONS[message["type"]]
        value = message["data"][field]
        folder = tmp_path / f"run-{next(runs)}"
        assert asyncio.run(_refused(base_config, folder, str(body), claim, value))
        for needed in message["data"]:
            lacking = {**message, "data": {k: v for k, v in message["data"].items() if k != needed}}
            folder = tmp_path / f"run-{next(runs)}"
            assert not asyncio.run(_refused(base_config, folder, json.dumps(lacking), claim, value))

    pact.verify(handle, "Async")
    write_pact(pact)
