"""One order with ordering as a Lambda function and every other unit in a process of its own,
over SNS + SQS on moto's server and PostgreSQL: the `aws` topology, split as a deployment would.

The test plays AWS for the function: API Gateway (HTTP API v2 events for the customer's
requests), the SQS event source mapping (it polls the queues the function's own start declared,
hands what it receives to `cleave.serverless.handler` as SQS records, and deletes those not
reported in `batchItemFailures`) and EventBridge (the scheduled tick: the outbox relay and the
saga's due work)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cleave import serverless
from cleave.auth.revocation import revocation_queue
from cleave.config import UnitAddress, load_config
from cleave.messaging.sqs import SQSBroker
from cleave.serverless import FunctionUnit
from tests.conftest import (
    PostgresDatabases,
    clean_environment,
    require_server,
    run_cleave,
    started_cleave,
)
from tests.e2e.conftest import ROOT, free_port
from tests.integration.test_brokers import Brokers
from tests.integration.test_serverless import ADDRESS, http_event, sample
from tests.services import POSTGRES, SQS

TOPOLOGY = "aws"
FUNCTION = "ordering"
ORDERS = "/api/ordering/v1/orders"


@dataclass
class Deployment:
    """The units in processes, and what the function's environment names."""

    addresses: dict[str, UnitAddress]
    environment: dict[str, str]
    broker: str
    logs: dict[str, Path]

    def tail(self) -> str:
        return "\n".join(
            f"--- {unit}\n{log.read_text()[-1500:]}" for unit, log in self.logs.items()
        )


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    require_server("PostgreSQL", POSTGRES)
    require_server("moto's SQS/SNS server", SQS)
    config = load_config(ROOT / "cleave.toml", topology=TOPOLOGY)
    databases = PostgresDatabases()
    brokers = Brokers("sqs", f"e2e{uuid.uuid4().hex[:10]}")
    # Not the function's default of 5 attempts: its consumers must take the queue's instead.
    broker = f"{brokers.url}&max_receives=4"
    addresses = {
        unit: UnitAddress("127.0.0.1", free_port(), free_port(), free_port())
        for unit in config.topology.units
    }
    environment = clean_environment()
    environment.update(
        CLEAVE_CONFIG=str(ROOT / "cleave.toml"),
        CLEAVE_TOPOLOGY=TOPOLOGY,
        CLEAVE_VAR=str(tmp_path / "var"),
        CLEAVE_LOG_FORMAT="json",
        CLEAVE_DATABASE=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{databases.prefix}_{{service}}",
        CLEAVE_BROKER=broker,
        # No gateway: the provider's own unit is the issuer every unit and the function trust.
        CLEAVE_PUBLIC_URL=addresses[config.topology.unit_of(config.auth.provider or "")].http,
    )
    for unit, address in addresses.items():
        key = f"CLEAVE_ADDRESS_{unit.upper().replace('-', '_')}"
        environment[key] = (
            f"{address.host}:{address.http_port}:{address.grpc_port}:{address.metrics_port}"
        )
    asyncio.run(databases.create(list(config.services)))
    running = Deployment(addresses, environment, broker, {})
    try:
        with contextlib.ExitStack() as stack:
            units = []
            for unit in config.topology.units:
                if unit == FUNCTION:
                    continue
                running.logs[unit] = tmp_path / f"{unit}.log"
                started = started_cleave(
                    *("run", unit, "--topology", TOPOLOGY),
                    base=addresses[unit].http,
                    log=running.logs[unit],
                    env=environment,
                    ready=None,  # all start at once, then each is waited for
                )
                units.append(stack.enter_context(started))
            for each in units:
                each.wait_until_ready(within=120)
            for name, value in environment.items():
                monkeypatch.setenv(name, value)
            monkeypatch.setenv("CLEAVE_UNIT", FUNCTION)
            monkeypatch.setenv("CLEAVE_MIGRATE", "1")
            monkeypatch.setattr(serverless, "_function", None)
            try:
                yield running
            finally:
                function = serverless._function
                if function is not None:
                    function.close()
                for each in units:  # all stop at once, as they started
                    each.interrupt()
    finally:
        queues = [*config.services, *map(revocation_queue, config.topology.units)]
        asyncio.run(brokers.delete_everything(queues))
        asyncio.run(databases.drop())


class Aws:
    """What AWS does around the function: API Gateway, the SQS event source, the schedule."""

    def __init__(self, function: FunctionUnit, broker: str) -> None:
        self.function = function
        # The event source mapping's own client: the function only declared the queues.
        self.poller = SQSBroker(broker)
        self.queues: dict[str, tuple[str, str]] = {}  # group -> (queue URL, queue ARN)
        self.delivered = 0

    def run(self, work: Any) -> Any:
        return self.function.loop.run_until_complete(work)

    def find_queues(self) -> None:
        async def find() -> None:
            _sns, sqs = await self.poller.connect()
            for group in self.function.groups:
                url = (await sqs.get_queue_url(QueueName=self.poller.queue_name(group)))["QueueUrl"]
                attributes = await sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["QueueArn"]
                )
                self.queues[group] = (url, attributes["Attributes"]["QueueArn"])

        self.run(find())

    def http(
        self, method: str, path: str, headers: dict[str, str], body: Any = None
    ) -> tuple[int, Any]:
        response = serverless.handler(
            http_event("http-api-v2", method, path, headers=headers, body=body), None
        )
        return response["statusCode"], json.loads(response["body"]) if response["body"] else None

    def tick(self) -> None:
        serverless.handler(sample("scheduled"), None)

    def poll(self) -> None:
        """One receive per queue, handed to the function as one SQS event; then the deletes."""
        for url, arn in self.queues.values():
            received = self.run(self._receive(url))
            if not received:
                continue
            records = [_record(message, arn) for message in received]
            answer = serverless.handler({"Records": records}, None)
            failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
            done = [message for message in received if message["MessageId"] not in failed]
            self.run(self._delete(url, done))
            self.delivered += len(done)

    async def _receive(self, url: str) -> list[Any]:
        _sns, sqs = await self.poller.connect()
        answer = await sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
        )
        return list(answer.get("Messages", []))

    async def _delete(self, url: str, messages: list[Any]) -> None:
        if messages:
            _sns, sqs = await self.poller.connect()
            await sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(messages)
                ],
            )

    def close(self) -> None:
        self.run(self.poller.close())


def _record(message: Any, queue_arn: str) -> dict[str, Any]:
    """A received message as the event source hands it to a function (AWS's record shape)."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", "0"),
            "SenderId": attributes.get("SenderId", ""),
            "ApproximateFirstReceiveTimestamp": attributes.get(
                "ApproximateFirstReceiveTimestamp", "0"
            ),
        },
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }


def _token(deployment: Deployment, *options: str) -> dict[str, str]:
    issued = run_cleave("token", *options, env=deployment.environment)
    assert issued.returncode == 0, issued.stderr
    return {"authorization": f"Bearer {issued.stdout.strip()}"}


@pytest.mark.timeout(240)
def test_an_order_completes_with_ordering_as_a_function_over_sqs(deployment: Deployment) -> None:
    alice = _token(deployment, "--customer", "alice")
    # The first invocation is the cold start: the unit built, migrated, its queues declared.
    function = serverless.function_from_environment()
    aws = Aws(function, deployment.broker)
    try:
        aws.find_queues()
        # ordering consumes no events (its saga calls catalog and payment over gRPC): its one
        # queue carries the provider's revocations
        assert set(aws.queues) == {revocation_queue(FUNCTION)}
        # its last receive before SQS's redrive parks a failing message with its error
        redrive = SQSBroker(deployment.broker).sqs_address.max_receives
        assert {c.max_attempts for c in function.unit.consumers.values()} == {redrive}
        catalog, payment = (
            deployment.addresses["catalog"].http,
            deployment.addresses["payment"].http,
        )

        def stock(sku: str) -> int:
            return int(httpx.get(f"{catalog}/api/catalog/v1/products/{sku}").json()["stock"])

        def place(sku: str, quantity: int, card: str) -> dict[str, Any]:
            order = {
                "lines": [{"sku": sku, "quantity": quantity}],
                "card_token": card,
                "shipping_address": ADDRESS,
            }
            status, placed = aws.http("POST", ORDERS, alice, order)
            assert status == 202, placed
            deadline = time.monotonic() + 60
            while True:
                aws.tick()
                aws.poll()
                status, current = aws.http("GET", f"{ORDERS}/{placed['id']}", alice)
                assert status == 200, current
                if current["status"] != "pending":
                    return dict(current)
                assert time.monotonic() < deadline, f"stuck {current}\n{deployment.tail()}"
                time.sleep(0.1)

        before = stock("HOODIE-GREY")
        confirmed = place("HOODIE-GREY", 2, "tok_approve")
        assert (confirmed["status"], confirmed["reason"]) == ("confirmed", None)
        assert stock("HOODIE-GREY") == before - 2
        payments = httpx.get(f"{payment}/api/payment/v1/payments", headers=alice).json()["items"]
        captured = [p for p in payments if p["order_id"] == confirmed["id"]]
        assert [p["status"] for p in captured] == ["captured"]

        declined = place("HOODIE-GREY", 1, "tok_decline")
        assert (declined["status"], declined["reason"]) == ("cancelled", "payment_declined")
        assert stock("HOODIE-GREY") == before - 2  # its reservation was released

        # A revocation reaches the function only through its queue: no tick runs meanwhile,
        # whose reload of the provider's listing would bring it too.
        identity = deployment.addresses["identity"].http
        revoked = httpx.post(
            f"{identity}/api/identity/v1/revoke",
            data={"token": alice["authorization"].split()[1], "client_id": "cleave-cli"},
        )
        assert revoked.status_code == 200, revoked.text
        deadline = time.monotonic() + 30
        while (answer := aws.http("GET", ORDERS, alice))[0] == 200:
            assert time.monotonic() < deadline, deployment.tail()
            aws.poll()
            time.sleep(0.1)
        assert answer == (401, answer[1])
        assert answer[1]["code"] == "token-revoked"
        assert aws.delivered >= 1
    finally:
        aws.close()
