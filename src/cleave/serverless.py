"""A unit as an AWS Lambda function: `cleave.serverless:handler`.

The function serves the unit `CLEAVE_UNIT` (default: the topology's first) of the topology
`CLEAVE_TOPOLOGY` in `CLEAVE_CONFIG`, exactly as `cleave run UNIT` would, except that nothing
runs between invocations (Lambda freezes the process):

- HTTP events (API Gateway HTTP API payload 2.0, Lambda function URLs; Mangum also reads REST
  API and ALB events) go through the unit's ASGI app, by Mangum;
- SQS batches (`Records` from `aws:sqs`) go through the consumer and its inbox as a broker's
  delivery does, one try per receive; the records to receive again are reported in
  `batchItemFailures` (the event source needs `ReportBatchItemFailures`);
- a scheduled event (EventBridge `Scheduled Event`) runs `Unit.tick`: the sagas due now, the
  services' other ticks, and the outbox relay, once.

The unit is built and started on the first invocation and reused while the function is warm.
`CLEAVE_MIGRATE=1` migrates its databases first (else `cleave migrate` is a deploy step), and
`CLEAVE_BASE_PATH` is a custom domain's base path for Mangum to strip.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from cleave.errors import CleaveError

if TYPE_CHECKING:
    from mangum import Mangum

    from cleave.config import SystemConfig
    from cleave.events import Envelope
    from cleave.messaging.broker import Broker, Delivery
    from cleave.messaging.consumer import Consumer
    from cleave.runtime import Unit

log = structlog.get_logger("cleave.serverless")
# Mangum base64-encodes a body unless its type contains one of these: problems are text too.
TEXT_TYPES = ["text/", "application/json", "application/problem+json", "application/javascript"]
# Receives of a message whose handler fails before it is parked, on a broker other than SQS
# (on SQS: the URL's max_receives, after which SQS would move it to the parked queue).
MAX_ATTEMPTS = 5
# A record's delivery to one consumer group, told which receive of the message this is.
GroupDelivery = Callable[["Envelope", int], Awaitable[None]]


class UnknownEvent(CleaveError):
    """An invocation that is neither HTTP, an SQS batch nor a scheduled event."""


@dataclass(frozen=True)
class SqsRecord:
    """What the function needs of one SQS record, whichever adapter or event source sent it."""

    body: bytes
    message_id: str
    receive_count: int
    queue: str = ""  # the queue's name, which ends with the consumer group it feeds
    group: str | None = None  # a FIFO queue's message group: its records are taken in order

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> SqsRecord:
        attributes = record.get("attributes") or {}
        return cls(
            body=str(record.get("body", "")).encode(),
            message_id=str(record["messageId"]),
            receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
            queue=str(record.get("eventSourceARN", "")).rsplit(":", 1)[-1],
            group=attributes.get("MessageGroupId"),
        )


class _PublishOnly:
    """A function's broker: it publishes; what it consumes arrives as invocations (an SQS event
    source), so it never consumes from the broker itself. An SQS broker still declares its
    queues and their subscriptions to the topic at start (`SQSBroker.declare`), since nothing
    else subscribes them and the event source mapping only reads them."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.name = broker.name
        self._declare: Callable[[], Awaitable[None]] | None = getattr(broker, "declare", None)

    def subscribe(
        self, queue: str, types: Sequence[str], deliver: Delivery, *, broadcast: bool = False
    ) -> None:
        # Shared even for a broadcast: the event source mapping reads the one queue by its name.
        if self._declare is not None:
            self.broker.subscribe(queue, types, deliver)

    async def start(self) -> None:
        await (self._declare or self.broker.start)()

    async def publish(self, envelope: Envelope) -> None:
        await self.broker.publish(envelope)

    async def close(self) -> None:
        await self.broker.close()


@dataclass
class _Outcome:
    """How `settle` settled one record: None until it has, True once SQS may delete it."""

    park_unreadable: Callable[[str], Awaitable[None]]
    settled: bool | None = field(default=None)

    async def ack(self) -> None:
        self.settled = True

    async def retry(self) -> None:
        self.settled = False

    async def park(self, reason: str) -> None:
        await self.park_unreadable(reason)
        self.settled = True


class FunctionUnit:
    """One unit served as a Lambda function, on one event loop kept for the process's life."""

    def __init__(
        self,
        config: SystemConfig,
        unit: str | None = None,
        *,
        migrate: bool = False,
        max_attempts: int | None = None,
    ) -> None:
        from mangum import Mangum

        from cleave.messaging.adapters import create_broker
        from cleave.runtime import Unit
        from cleave.telemetry import configure_logging
        from cleave.web.app import create_app

        name = unit or next(iter(config.topology.units))
        configure_logging(unit=name)
        # The monolith's in-process bus stays: its relay delivers to the consumers beside it.
        url = config.topology.broker
        broker = None if url == "memory" else _PublishOnly(create_broker(url))
        if max_attempts is None:
            max_attempts = _redrive_receives(broker.broker) if broker else MAX_ATTEMPTS
        self.unit: Unit = Unit(config, name, broker=broker, max_attempts=max_attempts)
        app = create_app(self.unit, start_unit=False)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # Mangum runs each request on the current loop
        self.http: Mangum = Mangum(
            app,
            lifespan="off",  # Mangum would start and stop the unit on every request
            api_gateway_base_path=os.environ.get("CLEAVE_BASE_PATH", "/"),
            text_mime_types=TEXT_TYPES,
        )
        self.groups = self._consumer_groups()
        if migrate:
            self.loop.run_until_complete(self.unit.migrate())
        self.loop.run_until_complete(self.unit.start(background=False))

    def _consumer_groups(self) -> dict[str, tuple[frozenset[str], GroupDelivery]]:
        """Each consumer group of the unit (its queue's name), the types it takes, and how one
        receive of a message is delivered to it."""
        from cleave.auth.revocation import REVOCATION_EVENTS, revocation_queue

        groups: dict[str, tuple[frozenset[str], GroupDelivery]] = {
            name: (frozenset(consumer.types), consumer.deliver_attempt)
            for name, consumer in self.unit.consumers.items()
            if consumer.types
        }
        if self.unit.config.auth.provider:
            revoked = self.unit.apply_revocation

            async def revoke(envelope: Envelope, _receive: int) -> None:
                await revoked(envelope)  # idempotent, so every receive may apply it

            types = frozenset(event.event_type for event in REVOCATION_EVENTS)
            groups[revocation_queue(self.unit.name)] = (types, revoke)
        return groups

    def __call__(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        asyncio.set_event_loop(self.loop)
        try:
            return self._handle(event, context)
        finally:
            _flush_spans()

    def _handle(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        records = event.get("Records")
        if isinstance(records, list) and records:
            if any(record.get("eventSource") != "aws:sqs" for record in records):
                raise UnknownEvent("only SQS records are handled (eventSource aws:sqs)")
            failed = self.loop.run_until_complete(
                self.receive_batch([SqsRecord.of(record) for record in records])
            )
            return {"batchItemFailures": [{"itemIdentifier": message} for message in failed]}
        if event.get("source") == "aws.events" or event.get("detail-type") == "Scheduled Event":
            return {"published": self.loop.run_until_complete(self.unit.tick())}
        if "requestContext" in event or "httpMethod" in event:
            return self.http(dict(event), context)
        raise UnknownEvent(
            f"not an HTTP, SQS or scheduled event (keys: {', '.join(sorted(event)) or 'none'})"
        )

    async def receive_batch(self, records: Sequence[SqsRecord]) -> list[str]:
        """Receive a batch; returns the message ids to deliver again. Records of one FIFO
        message group are taken in order, and after one fails the rest of its group is
        returned untried, as SQS requires to keep the group's order."""
        lanes: dict[str | None, list[SqsRecord]] = {}
        for record in records:
            lanes.setdefault(record.group, []).append(record)

        async def in_order(lane: list[SqsRecord]) -> list[str]:
            for index, record in enumerate(lane):
                if not await self.receive(record):
                    return [later.message_id for later in lane[index:]]
            return []

        unordered = lanes.pop(None, [])
        results = await asyncio.gather(
            *(self._receive_one(record) for record in unordered),
            *(in_order(lane) for lane in lanes.values()),
        )
        failed = {message for result in results for message in result}
        return [record.message_id for record in records if record.message_id in failed]

    async def _receive_one(self, record: SqsRecord) -> list[str]:
        return [] if await self.receive(record) else [record.message_id]

    async def receive(self, record: SqsRecord) -> bool:
        """One receive of one message, through `settle` as from any broker: True once it is
        applied (or was before), or parked; False when it should be delivered again."""
        from cleave.messaging.remote import settle

        group = self._group_of(record.queue)

        async def deliver(envelope: Envelope) -> None:
            for name, (types, delivery) in self.groups.items():
                if (group is None or name == group) and envelope.type in types:
                    await delivery(envelope, record.receive_count)

        async def park_unreadable(reason: str) -> None:
            await self._parking(group).park_unreadable(record.body, record.message_id, reason)

        outcome = _Outcome(park_unreadable)
        try:
            # No pause before a retry: SQS redelivers after the visibility timeout.
            await settle(record.body, deliver, outcome, queue=record.queue, retry_delay=0)
        except Exception as error:  # the dead-letter write itself failed: receive it again
            log.warning("record not parked", message_id=record.message_id, error=str(error))
            return False
        return bool(outcome.settled)

    def _group_of(self, queue: str) -> str | None:
        """The consumer group a queue feeds: the longest group name the queue's name ends with
        (`shop-ordering`, `shop-ordering.fifo`); None when none does (every group then takes
        the types it consumes, and the inbox keeps each handler to once)."""
        name = queue.removesuffix(".fifo")
        matching = [
            group
            for group in self.groups
            if name == group or name.endswith((f"-{group}", f".{group}", f"_{group}"))
        ]
        return max(matching, key=len, default=None)

    def _parking(self, group: str | None) -> Consumer:
        """Where a message that is not a CloudEvent is kept: its group's dead-letter table, else
        the first consuming service's."""
        consumers = self.unit.consumers
        if group in consumers:
            return consumers[group]
        with_types = [consumer for consumer in consumers.values() if consumer.types]
        return (with_types or list(consumers.values()))[0]

    def close(self) -> None:
        self.loop.run_until_complete(self.unit.stop())
        self.loop.close()


def _redrive_receives(broker: Broker) -> int:
    """An SQS queue's receives before its redrive (the URL's `max_receives`): the last one parks
    the message with its error rather than leave it to the parked queue without one."""
    from cleave.messaging.sqs import SQSBroker

    return broker.sqs_address.max_receives if isinstance(broker, SQSBroker) else MAX_ATTEMPTS


def _flush_spans() -> None:
    """Export the invocation's spans before Lambda freezes the process: the batch exporter's
    thread does not run while it is frozen, and an instance may never be thawed."""
    from opentelemetry import trace

    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush(2000)


_function: FunctionUnit | None = None


def function_from_environment() -> FunctionUnit:
    """The process's function unit, built on first use from `CLEAVE_*` in the environment."""
    global _function
    if _function is None:
        from cleave.config import load_config

        _function = FunctionUnit(
            load_config(),
            os.environ.get("CLEAVE_UNIT") or None,
            migrate=os.environ.get("CLEAVE_MIGRATE") == "1",
        )
    return _function


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: `cleave.serverless.handler` (or `cleave.serverless:handler`)."""
    return function_from_environment()(event, context)
