"""NATS JetStream through FastStream: one stream of events, durable pull consumers per service.

Names, for namespace `ns` (see `cleave.messaging.remote`):

- stream `ns_events` over the subjects `ns.events.>`; an event's subject is `ns.events.<type>`,
  kept on disk for `RETENTION_SECONDS`, so a consumer that was down catches up when it returns;
- a durable consumer `<service>-<type>` per consumer service and event type it handles (the
  NATS servers this targets, 2.9, filter a consumer on one subject only), acknowledged
  explicitly, only after the consumer has applied or parked the message;
- for a broadcast subscription (see `cleave.messaging.broker`), an ephemeral consumer per replica
  and event type instead, delivering only what is published after it was made; the server
  deletes it once its replica has not fetched for `EPHEMERAL_INACTIVE_SECONDS`;
- stream `ns_parked` over `ns.parked.<service>`: a message that is not a CloudEvent is copied
  there, then terminated, so it is kept for a person to look at and never redelivered.

`publish` returns once JetStream has stored the event (its PubAck). The envelope id goes in the
`Nats-Msg-Id` header, so the server drops a relay's re-send of the same event within its
duplicate window. Like the RabbitMQ adapter, it publishes on the connection FastStream opened,
without FastStream's per-message middleware.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsMessage
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy as ConsumerAckPolicy,
)
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from cleave.events import Envelope
from cleave.messaging.broker import Delivery
from cleave.messaging.remote import (
    RETRY_DELAY_SECONDS,
    BrokerAddress,
    check_event_type,
    claim_queue,
    keep_raw_message,
    log,
    settle,
)

RETENTION_SECONDS = 7 * 24 * 3600
DUPLICATE_WINDOW_SECONDS = 120.0
ACK_WAIT_SECONDS = 60.0
FETCH_WAIT_SECONDS = 1.0
# A replica fetches every FETCH_WAIT_SECONDS; this long without one, it has gone (or was killed)
# and the server deletes its ephemeral consumers. Longer than a broker connection's usual blips.
EPHEMERAL_INACTIVE_SECONDS = 120.0
PUBLISH_TIMEOUT_SECONDS = 10.0
CONTENT_TYPE = "application/cloudevents+json"


class JetStreamBroker:
    name = "nats"

    def __init__(self, url: str) -> None:
        self.address = BrokerAddress.parse(url)
        namespace = self.address.namespace
        self.events_stream = f"{namespace}_events"
        self.parked_stream = f"{namespace}_parked"
        self.faststream = NatsBroker(
            self.address.url, logger=None, apply_types=False, graceful_timeout=10.0
        )
        self._claimed: set[str] = set()
        self._jetstream: JetStreamContext | None = None

    def subject(self, event_type: str) -> str:
        return f"{self.address.namespace}.events.{event_type}"

    def parked_subject(self, queue: str) -> str:
        return f"{self.address.namespace}.parked.{queue}"

    def subscribe(
        self, queue: str, types: Sequence[str], deliver: Delivery, *, broadcast: bool = False
    ) -> None:
        started = self._jetstream is not None
        event_types = claim_queue(self._claimed, queue, types, started=started)

        async def handle(message: StreamMessage[Any]) -> None:
            assert isinstance(message, NatsMessage)
            await settle(message.body, deliver, _Settlement(self, message, queue), queue=queue)

        for event_type in event_types:
            # A broadcast's consumer has no durable name: the client names it, the server ends it.
            durable = None if broadcast else f"{queue}-{event_type.replace('.', '_')}"
            self.faststream.subscriber(
                self.subject(event_type),
                stream=JStream(self.events_stream, declare=False),
                durable=durable,
                config=ConsumerConfig(
                    durable_name=durable,
                    ack_policy=ConsumerAckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.NEW if broadcast else DeliverPolicy.ALL,
                    ack_wait=ACK_WAIT_SECONDS,
                    max_ack_pending=self.address.prefetch * 4,
                    inactive_threshold=EPHEMERAL_INACTIVE_SECONDS if broadcast else None,
                ),
                pull_sub=PullSub(batch_size=self.address.prefetch, timeout=FETCH_WAIT_SECONDS),
                ack_policy=AckPolicy.MANUAL,
                decoder=keep_raw_message,
                no_reply=True,
            )(handle)

    async def start(self) -> None:
        jetstream = (await self.faststream.connect()).jetstream()
        namespace = self.address.namespace
        await _declare_stream(
            jetstream,
            StreamConfig(
                name=self.events_stream,
                subjects=[f"{namespace}.events.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=RETENTION_SECONDS,
                duplicate_window=DUPLICATE_WINDOW_SECONDS,
            ),
        )
        await _declare_stream(
            jetstream,
            StreamConfig(
                name=self.parked_stream,
                subjects=[f"{namespace}.parked.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
            ),
        )
        self._jetstream = jetstream
        await self.faststream.start()

    async def publish(self, envelope: Envelope) -> None:
        await self.publish_raw(
            self.subject(envelope.type),
            envelope.to_json().encode(),
            {"Nats-Msg-Id": envelope.id, "content-type": CONTENT_TYPE},
            check=envelope.type,
        )

    async def publish_raw(
        self, subject: str, body: bytes, headers: dict[str, str], *, check: str | None = None
    ) -> None:
        if self._jetstream is None:
            raise RuntimeError("the NATS broker is not started")
        if check is not None:
            check_event_type(check)
        await self._jetstream.publish(
            subject, body, timeout=PUBLISH_TIMEOUT_SECONDS, headers=headers
        )

    async def close(self) -> None:
        await self.faststream.stop()
        self._jetstream = None


async def _declare_stream(jetstream: JetStreamContext, config: StreamConfig) -> None:
    try:
        await jetstream.add_stream(config)
    except BadRequestError:
        # It exists with another configuration (an older release's): bring it up to date.
        await jetstream.update_stream(config)


class _Settlement:
    def __init__(self, broker: JetStreamBroker, message: NatsMessage, queue: str) -> None:
        self.broker = broker
        self.message = message
        self.queue = queue

    async def ack(self) -> None:
        await self.message.ack()

    async def retry(self) -> None:
        await self.message.nack()

    async def park(self, reason: str) -> None:
        headers = {"Cleave-Parked-Reason": " ".join(reason.split())[:500]}
        try:
            await self.broker.publish_raw(
                self.broker.parked_subject(self.queue), self.message.body, headers
            )
        except Exception as error:
            log.warning("could not park a message; JetStream will offer it again", error=str(error))
            await self.message.nack(delay=RETRY_DELAY_SECONDS)
            return
        await self.message.reject()  # terminated: never redelivered
