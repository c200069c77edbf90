"""Kafka through FastStream. Tested only with FastStream's in-memory TestKafkaBroker: no Kafka
broker can be installed on the machines this project is built on.

Names, for namespace `ns` (see `cleave.messaging.remote`):

- a topic `ns.<type>` per event type, keyed by the event's subject (so one aggregate's events
  keep their order on one partition);
- a consumer group `ns.<service>` per consumer service, starting from the earliest offset, its
  offsets committed only after the consumer has applied or parked the message;
- a topic `ns.parked.<service>`, where a message that is not a CloudEvent is copied before its
  offset is committed.

`publish` returns once the leader and its in-sync replicas have the record (`acks=all`, with an
idempotent producer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faststream.kafka import KafkaBroker as FastStreamKafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy

from cleave.errors import ConfigError
from cleave.events import Envelope
from cleave.messaging.broker import Delivery
from cleave.messaging.remote import (
    BrokerAddress,
    check_event_type,
    claim_queue,
    keep_raw_message,
    log,
    settle,
)

CONTENT_TYPE = "application/cloudevents+json"


class KafkaBroker:
    name = "kafka"

    def __init__(self, url: str) -> None:
        self.address = BrokerAddress.parse(url)
        servers = self.address.url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        if not servers:
            raise ConfigError(f"broker {url!r}: name the bootstrap servers, kafka://host:port")
        self.faststream = FastStreamKafkaBroker(
            servers.split(","),
            acks="all",
            enable_idempotence=True,
            logger=None,
            apply_types=False,
            graceful_timeout=10.0,
        )
        self._claimed: set[str] = set()
        self._started = False

    def topic(self, event_type: str) -> str:
        return f"{self.address.namespace}.{event_type}"

    def parked_topic(self, queue: str) -> str:
        return f"{self.address.namespace}.parked.{queue}"

    def subscribe(self, queue: str, types: Sequence[str], deliver: Delivery) -> None:
        event_types = claim_queue(self._claimed, queue, types, started=self._started)
        if not event_types:
            return

        async def handle(message: StreamMessage[Any]) -> None:
            assert isinstance(message, KafkaMessage)
            await settle(message.body, deliver, _Settlement(self, message, queue), queue=queue)

        self.faststream.subscriber(
            *(self.topic(event_type) for event_type in event_types),
            group_id=f"{self.address.namespace}.{queue}",
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            decoder=keep_raw_message,
            no_reply=True,
        )(handle)

    async def start(self) -> None:
        self._started = True
        await self.faststream.start()

    async def publish(self, envelope: Envelope) -> None:
        check_event_type(envelope.type)
        await self.faststream.publish(
            envelope.to_json().encode(),
            self.topic(envelope.type),
            key=(envelope.subject or envelope.id).encode(),
            headers={"content-type": CONTENT_TYPE, "ce_id": envelope.id},
        )

    async def close(self) -> None:
        await self.faststream.stop()
        self._started = False


class _Settlement:
    def __init__(self, broker: KafkaBroker, message: KafkaMessage, queue: str) -> None:
        self.broker = broker
        self.message = message
        self.queue = queue

    async def ack(self) -> None:
        await self.message.ack()

    async def retry(self) -> None:
        await self.message.nack()  # seeks back: the record is consumed again

    async def park(self, reason: str) -> None:
        try:
            await self.broker.faststream.publish(
                self.message.body,
                self.broker.parked_topic(self.queue),
                headers={"cleave-parked-reason": " ".join(reason.split())[:500]},
            )
        except Exception as error:
            log.warning("could not park a message; it will be consumed again", error=str(error))
            await self.message.nack()
            return
        await self.message.ack()
