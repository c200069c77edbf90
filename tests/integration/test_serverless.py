"""A unit as a Lambda function: AWS's documented event shapes fed to `cleave.serverless`, against
the real monolith and the toy system on SQLite. No AWS here: the events are AWS's samples."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select

from cleave.config import SystemConfig, Topology
from cleave.data.tables import inbox, outbox
from cleave.errors import CleaveError, ConfigError
from cleave.events import Envelope
from cleave.messaging.consumer import UNREADABLE, list_dead_letters
from cleave.messaging.relay import outbox_state
from cleave.serverless import FunctionUnit, UnknownEvent
from tests.conftest import ROOT, MigratedShop, free_port
from tests.integration import toy

SAMPLES = ROOT / "tests" / "fixtures" / "lambda"
ADDRESS = {
    "name": "Alice Example",
    "line1": "1 Main St",
    "city": "Utrecht",
    "postal_code": "3511",
    "country": "NL",
}


def sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return event


def http_event(
    shape: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    query: str = "",
) -> dict[str, Any]:
    """AWS's sample request of `shape` (HTTP API v2 or a function URL), asking for `path`."""
    event = sample(shape)
    event.pop("cookies")
    event.update(rawPath=path, rawQueryString=query, isBase64Encoded=False)
    event["headers"] = {"host": event["requestContext"]["domainName"], **(headers or {})}
    if body is not None:
        event["headers"]["content-type"] = "application/json"
    event["body"] = json.dumps(body) if body is not None else ""
    event["requestContext"]["http"].update(method=method, path=path)
    return event


@pytest.fixture
def shop(base_config: SystemConfig, migrated_shop: MigratedShop) -> Iterator[FunctionUnit]:
    """The monolith as one function, on a migrated and seeded SQLite state of its own."""
    config = asyncio.run(migrated_shop.restore(base_config, "sqlite"))
    function = FunctionUnit(config)
    yield function
    function.close()


@pytest.fixture
def toy_function(base_config: SystemConfig) -> Iterator[FunctionUnit]:
    services = {
        "notes": "tests.integration.toy:notes_service",
        "tally": "tests.integration.toy:tally_service",
    }
    topology = Topology(
        name="toy",
        units={"toy": ("notes", "tally")},
        broker="memory",
        database="sqlite+aiosqlite:///{var}/{service}.db",
    )
    config = replace(
        base_config, services=services, topology=topology, topologies={"toy": topology}
    )
    function = FunctionUnit(config, migrate=True, max_attempts=3)
    yield function
    function.close()
    toy.failures["poison"] = True


def answer(function: FunctionUnit, event: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
    response = function(event, None)
    assert response["isBase64Encoded"] is False
    body = json.loads(response["body"]) if response["body"] else None
    return response["statusCode"], response["headers"], body


def test_a_get_through_an_http_api_v2_event_is_answered_by_the_unit(shop: FunctionUnit) -> None:
    status, headers, body = answer(
        shop, http_event("http-api-v2", "GET", "/api/catalog/v1/products", query="limit=2")
    )
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert len(body["items"]) == 2
    assert headers["x-request-id"]


def test_a_post_with_a_token_through_a_function_url_places_an_order_the_tick_completes(
    shop: FunctionUnit, customer_headers: Any
) -> None:
    order = {
        "lines": [{"sku": "MUG-CLASSIC", "quantity": 1}],
        "card_token": "tok_approve",
        "shipping_address": ADDRESS,
    }
    path = "/api/ordering/v1/orders"
    status, headers, body = answer(shop, http_event("function-url", "POST", path, body=order))
    assert status == 401
    assert headers["content-type"] == "application/problem+json"  # as text, not base64
    assert body["status"] == 401

    alice = customer_headers("alice")
    status, _, placed = answer(
        shop, http_event("function-url", "POST", path, headers=alice, body=order)
    )
    assert status == 202, placed
    ordering = shop.unit.context("ordering")
    waiting = shop.loop.run_until_complete(outbox_state(ordering))
    assert waiting.pending >= 1  # nothing runs between invocations: it waits for the tick

    published = shop(sample("scheduled"), None)["published"]
    assert published["ordering"] >= 2  # order placed, then confirmed by the saga in this tick
    after = shop.loop.run_until_complete(outbox_state(ordering))
    assert after.pending == 0
    assert after.delivered == waiting.delivered + published["ordering"]
    status, _, settled = answer(
        shop, http_event("http-api-v2", "GET", f"{path}/{placed['id']}", headers=alice)
    )
    assert (status, settled["status"]) == (200, "confirmed")

    async def confirmations_received() -> int:
        async with shop.unit.context("customer").read() as connection:
            query = select(func.count()).where(inbox.c.type == "shop.ordering.order_confirmed.v1")
            return int((await connection.execute(query)).scalar_one())

    assert shop.loop.run_until_complete(confirmations_received()) == 1


def note(text: str, note_id: str) -> str:
    return Envelope.of(
        toy.NoteWritten(note_id=note_id, text=text), source="notes", subject=note_id, trace={}
    ).to_json()


def sqs_batch(*bodies: str, receive: int = 1, groups: list[str] | None = None) -> dict[str, Any]:
    """AWS's sample SQS batch, one record per body (its ids numbered), from tally's queue."""
    template = sample("sqs-batch")["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = f"message-{index}"
        record["body"] = body
        record["eventSourceARN"] = "arn:aws:sqs:us-east-2:123456789012:cleave-tally"
        record["attributes"]["ApproximateReceiveCount"] = str(receive)
        if groups:
            record["eventSourceARN"] += ".fifo"
            record["attributes"]["MessageGroupId"] = groups[index]
        records.append(record)
    return {"Records": records}


def tallies(function: FunctionUnit) -> dict[str, int]:
    async def read() -> dict[str, int]:
        async with function.unit.context("tally").read() as connection:
            rows = (await connection.execute(select(toy.tallies))).all()
        return {str(word): int(count) for word, count in rows}

    return function.loop.run_until_complete(read())


def parked(function: FunctionUnit) -> list[tuple[str, str]]:
    letters = function.loop.run_until_complete(list_dead_letters(function.unit.context("tally")))
    return [(letter.message_id, letter.handler) for letter in letters]


def test_an_sqs_batch_applies_the_good_parks_the_poison_and_reports_the_retryable(
    toy_function: FunctionUnit,
) -> None:
    unreadable = sample("sqs-batch")["Records"][0]["body"]  # AWS's own "Test message."
    schema_breaking = json.loads(note("x", "n9"))
    schema_breaking["data"] = {"note_id": 9}
    bodies = (
        note("apple", "n1"),
        unreadable,
        note("pear", "n2"),
        json.dumps(schema_breaking),
        note("poison", "n3"),  # its handler fails: a broken dependency, say
    )
    failed = toy_function(sqs_batch(*bodies), None)
    assert failed == {"batchItemFailures": [{"itemIdentifier": "message-4"}]}
    assert tallies(toy_function) == {"apple": 1, "pear": 1}
    assert parked(toy_function) == [
        ("message-1", UNREADABLE),
        (schema_breaking["id"], "count_note"),
    ]

    unreadable_letter = toy_function.loop.run_until_complete(
        list_dead_letters(toy_function.unit.context("tally"))
    )[0]
    only_read = r"is not a CloudEvent \(not JSON: .*\): it can only be read"
    with pytest.raises(CleaveError, match=only_read):
        toy_function.loop.run_until_complete(
            toy_function.unit.consumers["tally"].replay(unreadable_letter.id)
        )

    # The whole batch again (the invocation timed out, say): nothing is applied or parked twice.
    again = toy_function(sqs_batch(*bodies, receive=2), None)
    assert again == failed
    assert tallies(toy_function) == {"apple": 1, "pear": 1}
    assert len(parked(toy_function)) == 2

    # Its last attempt: the failing message is parked with its error, and no longer failed.
    last = toy_function(sqs_batch(note("poison", "n3"), receive=3), None)
    assert last == {"batchItemFailures": []}
    letters = toy_function.loop.run_until_complete(
        list_dead_letters(toy_function.unit.context("tally"))
    )
    assert (letters[-1].attempts, letters[-1].handler) == (3, "count_note")
    assert "cannot count 'poison'" in letters[-1].error


def test_a_fifo_group_stops_at_its_first_failure_and_other_groups_go_on(
    toy_function: FunctionUnit,
) -> None:
    bodies = (note("poison", "n1"), note("after", "n2"), note("other", "n3"))
    failed = toy_function(sqs_batch(*bodies, groups=["a", "a", "b"]), None)
    assert failed == {
        "batchItemFailures": [{"itemIdentifier": "message-0"}, {"itemIdentifier": "message-1"}]
    }
    assert tallies(toy_function) == {"other": 1}  # "after" waits behind the failed one

    toy.failures["poison"] = False  # the dependency is back
    redelivered = toy_function(sqs_batch(*bodies[:2], receive=2, groups=["a", "a"]), None)
    assert redelivered == {"batchItemFailures": []}
    assert tallies(toy_function) == {"other": 1, "poison": 1, "after": 1}


def test_an_unknown_unit_is_refused_by_name(base_config: SystemConfig) -> None:
    with pytest.raises(ConfigError, match="unknown unit 'nope' in topology 'monolith'"):
        FunctionUnit(base_config, "nope")


def test_an_event_of_no_known_kind_is_refused_by_name(toy_function: FunctionUnit) -> None:
    with pytest.raises(UnknownEvent, match=r"not an HTTP, SQS or scheduled event \(keys: hello\)"):
        toy_function({"hello": "world"}, None)
    sns = {"Records": [{"EventSource": "aws:sns", "Sns": {}}]}
    with pytest.raises(UnknownEvent, match="only SQS records"):
        toy_function(sns, None)


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that only counts what it is sent, by path."""

    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.received.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[tuple[str, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Collector)
    _Collector.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Collector.received
    server.shutdown()
    server.server_close()


def test_the_documented_handler_path_serves_a_unit_from_the_environment(
    base_config: SystemConfig,
    migrated_shop: MigratedShop,
    tmp_path: Path,
    collector: tuple[str, list[str]],
) -> None:
    """What Lambda runs: `cleave.serverless.handler`, configured by CLEAVE_* alone; the process
    is killed right after answering (as a frozen instance may never thaw), and its spans have
    already left."""
    config = asyncio.run(migrated_shop.restore(base_config, "sqlite"))
    event = http_event("http-api-v2", "GET", "/api/catalog/v1/products/MUG-CLASSIC")
    script = (
        "import json, os, sys\n"
        "from cleave.serverless import handler\n"
        "event = json.loads(sys.stdin.read())\n"
        "print(json.dumps([handler(event, None), handler(event, None)]), flush=True)\n"
        "os._exit(0)\n"  # no exit handlers: nothing is flushed after the answer
    )
    endpoint, received = collector
    environment = {
        **os.environ,
        "CLEAVE_CONFIG": str(ROOT / "cleave.toml"),
        "CLEAVE_TOPOLOGY": "monolith",
        "CLEAVE_UNIT": "shop",
        "CLEAVE_VAR": str(config.var_root),
        "CLEAVE_ISSUER": config.auth.issuer,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{endpoint}/v1/traces",
    }
    ran = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    first, warm = json.loads(ran.stdout.strip().splitlines()[-1])
    for response in (first, warm):
        assert response["statusCode"] == 200, response
        assert json.loads(response["body"])["sku"] == "MUG-CLASSIC"
    assert received.count("/v1/traces") >= 2  # each invocation's spans, before it returned


def test_an_outbox_row_waits_for_the_tick_in_the_toy_system(toy_function: FunctionUnit) -> None:
    notes = toy_function.unit.context("notes")

    async def write() -> None:
        async with notes.unit_of_work() as uow:
            await toy.write_note(uow, "n1", "plum")

    toy_function.loop.run_until_complete(write())
    assert tallies(toy_function) == {}
    assert toy_function(sample("scheduled"), None) == {"published": {"notes": 1, "tally": 0}}
    assert tallies(toy_function) == {"plum": 1}

    async def undelivered() -> int:
        async with notes.read() as connection:
            query = select(func.count()).where(outbox.c.delivered_at.is_(None))
            return int((await connection.execute(query)).scalar_one())

    assert toy_function.loop.run_until_complete(undelivered()) == 0
