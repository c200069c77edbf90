"""RabbitMQ through FastStream: a topic exchange for events, a durable queue per consumer service.

Names, for namespace `ns` (see `cleave.messaging.remote`):

- `ns.events`: a durable topic exchange; the routing key of an event is its CloudEvents type.
- `ns.<service>`: a durable queue per consumer service, bound to each type it handles. Messages
  are persistent, so an event published while the service is down waits for it there.
- `ns.parked`: the dead-letter exchange of those queues; a message a consumer rejects (one that
  is not a CloudEvent at all) lands in the durable queue `ns.<service>.parked`.
- `ns.<queue>.<replica>`: a broadcast subscription's queue, one per replica (see
  `cleave.messaging.broker`): exclusive to the replica's connection and deleted with it, so a
  replica that stops, or is killed, leaves none behind. What it parks goes to `ns.<queue>.parked`.

`publish` returns once RabbitMQ has confirmed the message (publisher confirms); confirms stay in
flight concurrently, so the relay's many publishes share round trips. It writes straight to the
confirmed channel FastStream opened: FastStream's own publish path measured twice the CPU per
message here. A delivery is acknowledged only after the consumer has applied or parked it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aio_pika.abc import AbstractChannel
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.rabbit import (
    Channel,
    ExchangeType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)
from faststream.rabbit.message import RabbitMessage
from faststream.rabbit.schemas.queue import ClassicQueueArgs
from pamqp.commands import Basic

from cleave.events import Envelope
from cleave.messaging.broker import Delivery
from cleave.messaging.remote import (
    BrokerAddress,
    check_event_type,
    claim_queue,
    keep_raw_message,
    replica_id,
    settle,
)

CONTENT_TYPE = "application/cloudevents+json"
PERSISTENT = 2
# A publish waits this long for a connection being restored before the relay retries it.
PUBLISH_TIMEOUT_SECONDS = 10.0


class RabbitMQBroker:
    name = "rabbitmq"

    def __init__(self, url: str) -> None:
        self.address = BrokerAddress.parse(url)
        namespace = self.address.namespace
        self.exchange = RabbitExchange(f"{namespace}.events", type=ExchangeType.TOPIC, durable=True)
        self.parked_exchange = RabbitExchange(
            f"{namespace}.parked", type=ExchangeType.DIRECT, durable=True
        )
        self.faststream = RabbitBroker(
            self.address.url,
            default_channel=Channel(prefetch_count=self.address.prefetch, publisher_confirms=True),
            logger=None,
            apply_types=False,
            graceful_timeout=10.0,
        )
        self.replica = replica_id()
        self._claimed: set[str] = set()
        self._queues: dict[str, tuple[RabbitQueue, list[str]]] = {}
        self._channel: AbstractChannel | None = None
        self._started = False

    def queue_name(self, queue: str) -> str:
        return f"{self.address.namespace}.{queue}"

    def parked_queue_name(self, queue: str) -> str:
        return f"{self.address.namespace}.{queue}.parked"

    def subscribe(
        self, queue: str, types: Sequence[str], deliver: Delivery, *, broadcast: bool = False
    ) -> None:
        event_types = claim_queue(self._claimed, queue, types, started=self._started)
        if not event_types:
            return
        declared = self._queue(queue, event_types, broadcast=broadcast)
        self._queues[queue] = (declared, event_types)

        async def handle(message: StreamMessage[Any]) -> None:
            assert isinstance(message, RabbitMessage)
            await settle(message.body, deliver, _Settlement(message), queue=queue)

        self.faststream.subscriber(
            declared,
            self.exchange,
            ack_policy=AckPolicy.MANUAL,
            decoder=keep_raw_message,
            no_reply=True,
        )(handle)

    def _queue(self, queue: str, event_types: list[str], *, broadcast: bool) -> RabbitQueue:
        dead_letters: ClassicQueueArgs = {
            "x-dead-letter-exchange": self.parked_exchange.name,
            "x-dead-letter-routing-key": queue,
        }
        if broadcast:
            return RabbitQueue(
                f"{self.queue_name(queue)}.{self.replica}",
                durable=False,
                exclusive=True,
                auto_delete=True,
                routing_key=event_types[0],
                arguments=dead_letters,
            )
        return RabbitQueue(
            self.queue_name(queue), durable=True, routing_key=event_types[0], arguments=dead_letters
        )

    async def start(self) -> None:
        await self.faststream.connect()
        parked_exchange = await self.faststream.declare_exchange(self.parked_exchange)
        events = await self.faststream.declare_exchange(self.exchange)
        for queue, (declaration, event_types) in self._queues.items():
            parked = await self.faststream.declare_queue(
                RabbitQueue(self.parked_queue_name(queue), durable=True)
            )
            await parked.bind(parked_exchange, routing_key=queue)
            declared = await self.faststream.declare_queue(declaration)
            for event_type in event_types:
                await declared.bind(events, routing_key=event_type)
        self._channel = events.channel
        self._started = True
        await self.faststream.start()

    async def publish(self, envelope: Envelope) -> None:
        if self._channel is None:
            raise RuntimeError("the RabbitMQ broker is not started")
        check_event_type(envelope.type)
        properties = Basic.Properties(
            content_type=CONTENT_TYPE,
            delivery_mode=PERSISTENT,
            message_id=envelope.id,
            message_type=envelope.type,
            timestamp=envelope.time,
        )
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            channel = await self._channel.get_underlay_channel()
            # Not mandatory: an event no service consumes is dropped, as in the monolith.
            await channel.basic_publish(
                envelope.to_json().encode(),
                exchange=self.exchange.name,
                routing_key=envelope.type,
                properties=properties,
                mandatory=False,
            )

    async def close(self) -> None:
        await self.faststream.stop()
        self._channel = None
        self._started = False


class _Settlement:
    def __init__(self, message: RabbitMessage) -> None:
        self.message = message

    async def ack(self) -> None:
        await self.message.ack()

    async def retry(self) -> None:
        await self.message.nack(requeue=True)

    async def park(self, reason: str) -> None:
        # Rejected without requeue, the queue's dead-letter exchange moves it to the parked queue.
        await self.message.reject(requeue=False)
