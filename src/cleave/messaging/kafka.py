"""Kafka through FastStream (aiokafka underneath). Tested against Tansu, a Kafka-protocol broker
(`tests/services.py` starts it), not against Apache Kafka itself, which cannot be installed on the
machines this project is built on.

Names, for namespace `ns` (see `cleave.messaging.remote`):

- a topic `ns.<type>` per event type, keyed by the event's subject (so one aggregate's events
  keep their order on one partition);
- a consumer group `ns.<service>` per consumer service, starting from the earliest offset, its
  offsets committed only after the consumer has applied or parked the message;
- for a broadcast subscription (see `cleave.messaging.broker`), a consumer in no group instead:
  it reads every partition of its topics from their end when it starts, and commits nothing, so
  a replica that stops leaves nothing on the broker;
- a topic `ns.parked.<service>`, where a message that is not a CloudEvent is copied before its
  offset is committed.

`publish` returns once the leader and its in-sync replicas have the record (`acks=all`). The
producer is idempotent by default: a retried produce after a lost response is not written twice.
`?idempotence=false` turns that off for brokers without `InitProducerId` (Tansu answers it with
UnknownError); a retried produce may then write a record twice, which the consumers' inbox drops.

`?session_timeout_ms=N` (default 10000, aiokafka's) is how long a consumer may stay silent before
the group gives its partitions to another member; it heartbeats every third of it. A broker waits
for members to join a new group for a while tied to it (Tansu: half of it), so it bounds how
quickly a unit's consumers start too. `?prefetch` does not apply: a consumer handles the records of
its partitions one at a time, committing each after it, which keeps a key's order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import UnknownError
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
_SWITCH = {"true": True, "false": False}
DEFAULT_SESSION_TIMEOUT_MS = 10_000
# How long `start` waits for a broadcast consumer to find where its partitions end.
START_TIMEOUT_SECONDS = 30.0


class KafkaBroker:
    name = "kafka"

    def __init__(self, url: str) -> None:
        self.address = BrokerAddress.parse(url)
        parts = urlsplit(self.address.url)
        if not parts.netloc:
            raise ConfigError(f"broker {url!r}: name the bootstrap servers, kafka://host:port")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        idempotence = options.pop("idempotence", "true")
        if idempotence not in _SWITCH:
            raise ConfigError(f"broker idempotence {idempotence!r}: use true or false")
        session_timeout = options.pop("session_timeout_ms", str(DEFAULT_SESSION_TIMEOUT_MS))
        self.session_timeout_ms = int(session_timeout) if session_timeout.isdigit() else 0
        if not 1_000 <= self.session_timeout_ms <= 3_600_000:
            raise ConfigError(
                f"broker session_timeout_ms {session_timeout!r}: use a whole number 1000-3600000"
            )
        if options:
            raise ConfigError(f"broker {url!r}: unknown option {next(iter(options))!r}")
        self.idempotent = _SWITCH[idempotence]
        self.faststream = FastStreamKafkaBroker(
            parts.netloc.split(","),
            acks="all",
            enable_idempotence=self.idempotent,
            logger=None,
            apply_types=False,
            graceful_timeout=10.0,
        )
        self._claimed: set[str] = set()
        self._broadcasts: list[Any] = []
        self._started = False

    def topic(self, event_type: str) -> str:
        return f"{self.address.namespace}.{event_type}"

    def parked_topic(self, queue: str) -> str:
        return f"{self.address.namespace}.parked.{queue}"

    def subscribe(
        self, queue: str, types: Sequence[str], deliver: Delivery, *, broadcast: bool = False
    ) -> None:
        event_types = claim_queue(self._claimed, queue, types, started=self._started)
        if not event_types:
            return

        async def handle(message: StreamMessage[Any]) -> None:
            assert isinstance(message, KafkaMessage)
            settlement = _Settlement(self, message, queue, commits=not broadcast)
            await settle(message.body, deliver, settlement, queue=queue)

        subscriber = self.faststream.subscriber(
            *(self.topic(event_type) for event_type in event_types),
            group_id=None if broadcast else f"{self.address.namespace}.{queue}",
            auto_offset_reset="latest" if broadcast else "earliest",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.session_timeout_ms // 3,
            ack_policy=AckPolicy.MANUAL,
            decoder=keep_raw_message,
            no_reply=True,
        )
        subscriber(handle)
        if broadcast:
            self._broadcasts.append(subscriber)

    async def start(self) -> None:
        self._started = True
        try:
            await self.faststream.start()
        except UnknownError as error:
            if not self.idempotent:
                raise
            await self.faststream.stop()
            raise ConfigError(
                f"broker {self.address.url!r} refused an idempotent producer ({error}); a broker "
                "without InitProducerId, such as Tansu, needs ?idempotence=false"
            ) from error
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            for subscriber in self._broadcasts:
                await _read_from_the_end_now(subscriber.consumer)

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


async def _read_from_the_end_now(consumer: AIOKafkaConsumer) -> None:
    """Fix where a consumer in no group starts reading (the partitions' ends) now, rather than at
    its first fetch, so an event published once `start` has returned is not skipped. Started, it
    has every partition of its topics already: no group assigns them."""
    for partition in consumer.assignment():
        await consumer.position(partition)


class _Settlement:
    def __init__(
        self, broker: KafkaBroker, message: KafkaMessage, queue: str, *, commits: bool
    ) -> None:
        self.broker = broker
        self.message = message
        self.queue = queue
        self.commits = commits  # a consumer in no group has no offsets to commit

    async def ack(self) -> None:
        if self.commits:
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
        await self.ack()
