"""Amazon SNS + SQS through aiobotocore: an SNS topic per system, an SQS queue per consumer service.

The URL: `sqs://HOST:PORT?region=R` talks to the SQS/SNS endpoint `http://HOST:PORT` (moto's
server, LocalStack); `sqs://aws?region=R` to AWS itself (the region may also come from
AWS_REGION / AWS_DEFAULT_REGION). `sqs://KEY:SECRET@HOST:PORT` signs with that access key;
without one, botocore's default credential chain (environment, profile, instance role) does.
Options of its own, beside `namespace` and `prefetch` (see `cleave.messaging.remote`):

- `fifo=true`: a FIFO topic and FIFO queues. An event's message group is its subject, so one
  aggregate's events arrive in the order they were published, whatever their types; the
  deduplication id is the envelope id, so SNS drops a relay's re-send within five minutes;
- `max_receives=N` (default 5): receives of one message before SQS moves it to the dead-letter
  queue (its consumer kept failing before it could even park it);
- `visibility=S` (default 30): the visibility timeout, extended every S/3 seconds while a
  handler runs, so only a consumer that died lets the message go to another;
- `wait=S` (default 5, at most 20): the long poll. `close` lets the poll in flight finish (and
  makes what it brought visible again), because a poll abandoned mid-wait still takes a message
  on the server side, hiding it from the next consumer for a whole visibility timeout.

Names, for namespace `ns`:

- topic `ns-events`: every event, with its CloudEvents type in the message attribute `type`.
  One topic per system rather than per type, because SNS topic names forbid the dots of event
  types; because a FIFO topic keeps sequence only within itself, and one aggregate's events are
  of several types; and because a publisher then needs one topic, made at start, not one per
  type it may ever publish. The price: a subscription's filter policy holds at most 150 types;
- queue `ns-<service>`: subscribed to the topic with raw message delivery (the body is the
  envelope itself) and a filter policy on `type` listing the types the service consumes;
- queue `ns-<service>-parked`: its dead-letter queue (the redrive target after `max_receives`),
  where a message that is not a CloudEvent is also moved at once;
- queue `ns-<queue>-<replica>`: a broadcast subscription's queue (see `cleave.messaging.broker`),
  one per replica, subscribed like the others, and unsubscribed and deleted when the replica
  closes its broker. A replica that is killed cannot: its queue stays subscribed, holding each
  message for `REPLICA_RETENTION_SECONDS` only (SQS's least), tagged `cleave-replica-of` with
  the queue it copies and `cleave-alive` with when its replica last said it runs (every
  `REPLICA_HEARTBEAT_SECONDS`). A replica starting deletes the sibling queues whose `cleave-alive`
  is older than `REPLICA_STALE_SECONDS`; until one starts, a leaked queue costs the topic's
  deliveries into it. Its parked messages go to the shared `ns-<queue>-parked`.

`publish` returns once SNS has accepted the message (stored it durably; its delivery to the
queues is SNS's job from there). A message is deleted from its queue only after the consumer has
applied or parked it, so a crash between the two redelivers it and the inbox drops the copy.

Tested against moto's server mode, an emulator, not AWS: it enforces neither IAM nor the queue
policy this adapter writes, does not retry SNS deliveries or limit throughput, forgets a FIFO
deduplication id once its message is deleted (AWS keeps it five minutes), and never delivers a
standard queue's message twice on its own, as SQS occasionally does (the inbox drops that).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from cleave.errors import ConfigError
from cleave.events import Envelope
from cleave.messaging.broker import Delivery
from cleave.messaging.remote import (
    RETRY_DELAY_SECONDS,
    BrokerAddress,
    check_event_type,
    claim_queue,
    log,
    replica_id,
    settle,
)

if TYPE_CHECKING:
    from types_aiobotocore_sns.client import SNSClient
    from types_aiobotocore_sns.type_defs import PublishInputTypeDef
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType
    from types_aiobotocore_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
        MessageTypeDef,
        SendMessageRequestTypeDef,
    )

REAL_AWS = "aws"
LOCAL_REGION = "us-east-1"  # what an emulator is asked when the URL names no region
RETENTION_SECONDS = 14 * 24 * 3600  # SQS's longest: a consumer down for days catches up
PUBLISH_TIMEOUT_SECONDS = 10.0
# How long `close` waits for handlers still running before it abandons them to redelivery.
GRACEFUL_SECONDS = 10.0
RECEIVE_BATCH = 10  # SQS's maximum per ReceiveMessage, and per batch of deletes or changes
# How long a delete waits for others to share its request (SQS bills per request).
DELETE_LINGER_SECONDS = 0.005
FILTER_POLICY_VALUES = 150  # SNS's limit on the values of one filter policy
NAME_LENGTH = 80  # SQS's limit on a queue name, ".fifo" included
# SNS and SQS take these characters in a message group or deduplication id.
_GROUP_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
OPTIONS = ("region", "fifo", "max_receives", "visibility", "wait")
REPLICA_RETENTION_SECONDS = 60  # SQS's least: a leaked replica queue holds a minute of events
REPLICA_HEARTBEAT_SECONDS = 300.0
# A replica queue not marked alive for this long belongs to a replica that was killed.
REPLICA_STALE_SECONDS = 3 * REPLICA_HEARTBEAT_SECONDS
REPLICA_OF_TAG, ALIVE_TAG = "cleave-replica-of", "cleave-alive"


@dataclass(frozen=True)
class SQSAddress:
    """An `sqs://` URL, read."""

    endpoint: str | None  # None: AWS's own endpoints for the region
    region: str | None
    access_key: tuple[str, str] | None
    fifo: bool = False
    max_receives: int = 5
    visibility: int = 30
    wait: int = 5

    @classmethod
    def parse(cls, url: str) -> SQSAddress:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ConfigError(f"broker {url!r}: name the endpoint, sqs://HOST:PORT or sqs://aws")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"broker {url!r}: unknown option {unknown[0]!r} (use {', '.join(OPTIONS)})"
            )
        fifo_text = options.get("fifo", "false").lower()
        if fifo_text not in ("true", "false"):
            raise ConfigError(f"broker fifo {fifo_text!r}: use true or false")
        real = parts.hostname == REAL_AWS and parts.port is None
        key = None
        if parts.username:
            key = (unquote(parts.username), unquote(parts.password or ""))
        return cls(
            endpoint=None if real else f"http://{parts.netloc.rpartition('@')[2]}",
            region=options.get("region") or (None if real else LOCAL_REGION),
            access_key=key,
            fifo=fifo_text == "true",
            max_receives=_whole(options, "max_receives", 5, 1, 1000),
            visibility=_whole(options, "visibility", 30, 2, 43_200),
            wait=_whole(options, "wait", 5, 1, 20),
        )


def _whole(options: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = options.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"broker {name} {text!r}: use a whole number {low}-{high}")
    return value


class SQSBroker:
    # The semantic conventions' name for the system the relay's publish spans go to.
    name = "aws.sns"

    def __init__(self, url: str) -> None:
        self.address = BrokerAddress.parse(url)
        self.sqs_address = SQSAddress.parse(self.address.url)
        self._suffix = ".fifo" if self.sqs_address.fifo else ""
        self._claimed: set[str] = set()
        self.replica = replica_id()
        self._subscriptions: dict[str, tuple[list[str], Delivery, bool]] = {}
        # This replica's own queues, to delete at close: queue URL -> its SNS subscription's ARN.
        self._replica_queues: dict[str, str] = {}
        self._exits = contextlib.AsyncExitStack()
        self._sns: SNSClient | None = None
        self._sqs: SQSClient | None = None
        self._topic_arn: str | None = None
        self._consumers: list[_QueueConsumer] = []
        self._receivers: list[asyncio.Task[None]] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._alive: asyncio.Task[None] | None = None
        self._started = False

    @property
    def topic_name(self) -> str:
        return f"{self.address.namespace}-events{self._suffix}"

    def queue_name(self, queue: str) -> str:
        return f"{self.address.namespace}-{queue}{self._suffix}"

    def parked_queue_name(self, queue: str) -> str:
        return f"{self.address.namespace}-{queue}-parked{self._suffix}"

    def replica_queue_name(self, queue: str) -> str:
        return f"{self.address.namespace}-{queue}-{self.replica}{self._suffix}"

    def subscribe(
        self, queue: str, types: Sequence[str], deliver: Delivery, *, broadcast: bool = False
    ) -> None:
        event_types = claim_queue(self._claimed, queue, types, started=self._started)
        if not event_types:
            return
        names = [self.parked_queue_name(queue)]
        if broadcast:
            names.append(self.replica_queue_name(queue))
        for name in names:
            if len(name) > NAME_LENGTH:
                raise ConfigError(
                    f"consumer queue {queue!r}: {name!r} is longer than SQS's {NAME_LENGTH} "
                    "characters (shorten the namespace)"
                )
        if len(event_types) > FILTER_POLICY_VALUES:
            raise ConfigError(
                f"consumer queue {queue!r} consumes {len(event_types)} event types; an SNS "
                f"filter policy holds at most {FILTER_POLICY_VALUES}"
            )
        self._subscriptions[queue] = (event_types, deliver, broadcast)

    async def connect(self) -> tuple[SNSClient, SQSClient]:
        """Open the SNS and SQS clients (once); `start` and the tests' inspection use them."""
        if self._sns is None or self._sqs is None:
            address = self.sqs_address
            session = get_session()
            settings: dict[str, Any] = {
                "region_name": address.region,
                "endpoint_url": address.endpoint,
                # Every publish the relay keeps in flight, and a long poll per queue, at once.
                "config": AioConfig(max_pool_connections=self.address.prefetch + 64),
            }
            if address.access_key:
                settings["aws_access_key_id"], settings["aws_secret_access_key"] = (
                    address.access_key
                )
            self._sns = await self._exits.enter_async_context(
                session.create_client("sns", **settings)
            )
            self._sqs = await self._exits.enter_async_context(
                session.create_client("sqs", **settings)
            )
        return self._sns, self._sqs

    async def declare(self) -> None:
        """Make the topic, and each subscribed queue with its dead-letter queue and subscription,
        without consuming them: what `start` does first, and all a unit needs whose queues are
        read by another poller (a Lambda event source mapping). Safe to repeat."""
        sns, sqs = await self.connect()
        topic_attributes = {"FifoTopic": "true"} if self.sqs_address.fifo else {}
        topic_arn = (await sns.create_topic(Name=self.topic_name, Attributes=topic_attributes))[
            "TopicArn"
        ]
        existing = await self._subscriptions_of(sns, topic_arn)
        self._consumers.clear()
        for queue, (event_types, deliver, broadcast) in self._subscriptions.items():
            if broadcast:
                await self._delete_stale_replicas(sns, sqs, queue, existing)
            queue_url, queue_arn, parked_url = await self._declare_queue(
                sqs, topic_arn, queue, broadcast=broadcast
            )
            subscription_arn = await self._subscribe_queue(
                sns, topic_arn, queue_arn, event_types, existing
            )
            if broadcast:
                self._replica_queues[queue_url] = subscription_arn
            self._consumers.append(_QueueConsumer(self, sqs, queue, queue_url, parked_url, deliver))
        self._topic_arn = topic_arn
        self._started = True

    async def start(self) -> None:
        await self.declare()
        _sns, sqs = await self.connect()
        self._receivers = [
            asyncio.create_task(consumer.receive(), name=f"receive {consumer.queue}")
            for consumer in self._consumers
        ]
        if self._consumers:
            self._heartbeat = asyncio.create_task(self._keep_invisible(sqs))
        if self._replica_queues:
            self._alive = asyncio.create_task(self._say_alive(sqs))

    async def _declare_queue(
        self, sqs: SQSClient, topic_arn: str, queue: str, *, broadcast: bool
    ) -> tuple[str, str, str]:
        """The queue (this replica's own, for a broadcast) and its dead-letter queue, their
        settings brought up to date: the queue's URL and ARN, and the dead-letter queue's URL."""
        address = self.sqs_address
        fifo: dict[QueueAttributeNameType, str] = {"FifoQueue": "true"} if address.fifo else {}
        # Only what cannot change goes in CreateQueue, which refuses differing attributes of a
        # queue that exists; the rest is set every start, so a new setting reaches old queues.
        parked_url = (
            await sqs.create_queue(QueueName=self.parked_queue_name(queue), Attributes=fifo)
        )["QueueUrl"]
        await sqs.set_queue_attributes(
            QueueUrl=parked_url, Attributes={"MessageRetentionPeriod": str(RETENTION_SECONDS)}
        )
        if broadcast:
            tags = {REPLICA_OF_TAG: queue, ALIVE_TAG: str(int(time.time()))}
            name = self.replica_queue_name(queue)
            created = await sqs.create_queue(QueueName=name, Attributes=fifo, tags=tags)
        else:
            created = await sqs.create_queue(QueueName=self.queue_name(queue), Attributes=fifo)
        queue_url = created["QueueUrl"]
        queue_arn = await self._queue_arn(sqs, queue_url)
        redrive = {
            "deadLetterTargetArn": await self._queue_arn(sqs, parked_url),
            "maxReceiveCount": address.max_receives,
        }
        # Only this system's topic may send to the queue.
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        }
        await sqs.set_queue_attributes(
            QueueUrl=queue_url,
            Attributes={
                "VisibilityTimeout": str(address.visibility),
                "ReceiveMessageWaitTimeSeconds": str(address.wait),
                "MessageRetentionPeriod": str(
                    REPLICA_RETENTION_SECONDS if broadcast else RETENTION_SECONDS
                ),
                "RedrivePolicy": json.dumps(redrive),
                "Policy": json.dumps(policy),
            },
        )
        return queue_url, queue_arn, parked_url

    @staticmethod
    async def _queue_arn(sqs: SQSClient, queue_url: str) -> str:
        attributes = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return attributes["Attributes"]["QueueArn"]

    @staticmethod
    async def _subscriptions_of(sns: SNSClient, topic_arn: str) -> dict[str, str]:
        """The topic's subscriptions: endpoint (a queue's ARN) -> subscription ARN."""
        found: dict[str, str] = {}
        paginator = sns.get_paginator("list_subscriptions_by_topic")
        async for page in paginator.paginate(TopicArn=topic_arn):
            for subscription in page.get("Subscriptions", []):
                if "Endpoint" in subscription and "SubscriptionArn" in subscription:
                    found[subscription["Endpoint"]] = subscription["SubscriptionArn"]
        return found

    @staticmethod
    async def _subscribe_queue(
        sns: SNSClient,
        topic_arn: str,
        queue_arn: str,
        event_types: list[str],
        existing: dict[str, str],
    ) -> str:
        """Subscribe a queue to the topic, or bring its subscription up to date; returns the
        subscription's ARN."""
        filter_policy = json.dumps({"type": sorted(event_types)})
        subscription_arn = existing.get(queue_arn)
        if subscription_arn is None:
            subscribed = await sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=queue_arn,
                Attributes={
                    "RawMessageDelivery": "true",
                    "FilterPolicyScope": "MessageAttributes",
                    "FilterPolicy": filter_policy,
                },
                ReturnSubscriptionArn=True,
            )
            return subscribed["SubscriptionArn"]
        # Subscribed by an earlier start: the service may consume other types by now.
        await sns.set_subscription_attributes(
            SubscriptionArn=subscription_arn,
            AttributeName="FilterPolicy",
            AttributeValue=filter_policy,
        )
        await sns.set_subscription_attributes(
            SubscriptionArn=subscription_arn,
            AttributeName="RawMessageDelivery",
            AttributeValue="true",
        )
        return subscription_arn

    async def _delete_stale_replicas(
        self, sns: SNSClient, sqs: SQSClient, queue: str, existing: dict[str, str]
    ) -> None:
        """Delete the replica queues of `queue` whose replicas were killed: not said alive for
        `REPLICA_STALE_SECONDS` (see the module's notes)."""
        prefix = f"{self.address.namespace}-{queue}-"
        paginator = sqs.get_paginator("list_queues")
        stale_before = time.time() - REPLICA_STALE_SECONDS
        async for page in paginator.paginate(QueueNamePrefix=prefix):
            for queue_url in page.get("QueueUrls", []):
                tags = (await sqs.list_queue_tags(QueueUrl=queue_url)).get("Tags", {})
                if tags.get(REPLICA_OF_TAG) != queue:  # a shared or parked queue, or another's
                    continue
                alive = tags.get(ALIVE_TAG, "")
                if alive.isdigit() and int(alive) >= stale_before:
                    continue
                subscription_arn = existing.pop(await self._queue_arn(sqs, queue_url), None)
                log.info("stale replica queue deleted", queue=queue, url=queue_url, alive=alive)
                await self._delete_replica_queue(sns, sqs, queue_url, subscription_arn)

    @staticmethod
    async def _delete_replica_queue(
        sns: SNSClient, sqs: SQSClient, queue_url: str, subscription_arn: str | None
    ) -> None:
        """A replica queue and its subscription gone; a failure is logged, since SQS keeps the
        leaked queue's messages only a minute, and the next replica to start retries."""
        try:
            if subscription_arn is not None:
                await sns.unsubscribe(SubscriptionArn=subscription_arn)
            await sqs.delete_queue(QueueUrl=queue_url)
        except Exception as error:
            log.warning("replica queue not deleted", url=queue_url, error=str(error))

    async def _say_alive(self, sqs: SQSClient) -> None:
        """Mark this replica's queues alive now and then, so no sibling deletes them as stale."""
        while True:
            await asyncio.sleep(REPLICA_HEARTBEAT_SECONDS)
            for queue_url in self._replica_queues:
                try:
                    await sqs.tag_queue(QueueUrl=queue_url, Tags={ALIVE_TAG: str(int(time.time()))})
                except Exception as error:
                    log.warning("replica queue not marked alive", url=queue_url, error=str(error))

    async def publish(self, envelope: Envelope) -> None:
        await self.publish_raw(
            envelope.type,
            envelope.to_json(),
            group=envelope.subject or envelope.id,
            deduplication=envelope.id,
        )

    async def publish_raw(
        self, event_type: str, body: str, *, group: str, deduplication: str
    ) -> None:
        """Publish `body` as an event of `event_type` (a FIFO topic's group and dedup ids)."""
        if self._sns is None or self._topic_arn is None:
            raise RuntimeError("the SQS broker is not started")
        check_event_type(event_type)
        request: PublishInputTypeDef = {
            "TopicArn": self._topic_arn,
            "Message": body,
            "MessageAttributes": {"type": {"DataType": "String", "StringValue": event_type}},
        }
        if self.sqs_address.fifo:
            request["MessageGroupId"] = group_of(group)
            request["MessageDeduplicationId"] = group_of(deduplication)
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            await self._sns.publish(**request)

    async def _keep_invisible(self, sqs: SQSClient) -> None:
        """Extend the visibility timeout of every message a handler holds, a third of it early."""
        visibility = self.sqs_address.visibility
        while True:
            await asyncio.sleep(visibility / 3)
            for consumer in self._consumers:
                receipts = list(consumer.held)
                for start in range(0, len(receipts), RECEIVE_BATCH):
                    entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                        {
                            "Id": str(index),
                            "ReceiptHandle": receipt,
                            "VisibilityTimeout": visibility,
                        }
                        for index, receipt in enumerate(receipts[start : start + RECEIVE_BATCH])
                    ]
                    try:
                        await sqs.change_message_visibility_batch(
                            QueueUrl=consumer.queue_url, Entries=entries
                        )
                    except Exception as error:
                        log.warning(
                            "visibility not extended", queue=consumer.queue, error=str(error)
                        )

    async def close(self) -> None:
        for consumer in self._consumers:
            consumer.stop()
        if self._receivers:
            # A poll lasts at most `wait` seconds; then the loops end of themselves.
            _done, late = await asyncio.wait(self._receivers, timeout=self.sqs_address.wait + 5)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._receivers, return_exceptions=True)
        handlers = [task for consumer in self._consumers for task in consumer.handlers]
        if handlers:
            _done, late = await asyncio.wait(handlers, timeout=GRACEFUL_SECONDS)
            for task in late:
                task.cancel()  # its message comes back after the visibility timeout
            await asyncio.gather(*handlers, return_exceptions=True)
        for consumer in self._consumers:
            await consumer.finish()
        for loop in (self._heartbeat, self._alive):
            if loop is not None:
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)
        if self._sns is not None and self._sqs is not None:
            for queue_url, subscription_arn in self._replica_queues.items():
                await self._delete_replica_queue(self._sns, self._sqs, queue_url, subscription_arn)
        self._replica_queues.clear()
        self._receivers, self._heartbeat, self._alive = [], None, None
        self._consumers.clear()
        await self._exits.aclose()
        self._sns = self._sqs = None
        self._topic_arn = None
        self._started = False


def group_of(key: str) -> str:
    """A message group or deduplication id for `key`: itself if SNS takes it, else its digest."""
    return key if _GROUP_ID.match(key) else hashlib.sha256(key.encode()).hexdigest()


@dataclass(eq=False)
class _QueueConsumer:
    """Long-polls one queue and hands each message to `settle`, at most `prefetch` at once.

    Messages of one message group (FIFO) are handled one after another in the order received;
    after one of them is retried, the rest of the group in that batch goes back too, in order."""

    broker: SQSBroker
    sqs: SQSClient
    queue: str
    queue_url: str
    parked_url: str
    deliver: Delivery
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    held: set[str] = field(default_factory=set)  # receipt handles of messages being handled
    handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _room: asyncio.Event = field(default_factory=asyncio.Event)
    _deletes: list[tuple[str, asyncio.Future[None]]] = field(default_factory=list)
    _deleting: asyncio.Task[None] | None = None

    def stop(self) -> None:
        """No more polls after the one in flight; wakes a loop waiting for room."""
        self.closing.set()
        self._room.set()

    async def finish(self) -> None:
        """After the handlers: end the batching of deletes, which nothing waits for any more."""
        if self._deleting is not None:
            self._deleting.cancel()
            await asyncio.gather(self._deleting, return_exceptions=True)

    async def receive(self) -> None:
        prefetch = self.broker.address.prefetch
        while not self.closing.is_set():
            room = prefetch - len(self.held)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                response = await self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(RECEIVE_BATCH, room),
                    WaitTimeSeconds=self.broker.sqs_address.wait,
                    MessageSystemAttributeNames=["MessageGroupId"],
                )
            except Exception as error:
                log.warning("receive failed; polling again", queue=self.queue, error=str(error))
                await asyncio.sleep(RETRY_DELAY_SECONDS)
                continue
            messages = response.get("Messages", [])
            if self.closing.is_set():
                await self._release(messages)  # polled while closing: for the next consumer
                return
            groups: dict[str, list[MessageTypeDef]] = {}
            for message in messages:
                self.held.add(message["ReceiptHandle"])
                key = message.get("Attributes", {}).get("MessageGroupId") or message["MessageId"]
                groups.setdefault(key, []).append(message)
            for group in groups.values():
                task = asyncio.create_task(self._handle(group))
                self.handlers.add(task)
                task.add_done_callback(self.handlers.discard)

    async def _handle(self, group: list[MessageTypeDef]) -> None:
        for position, message in enumerate(group):
            settlement = _Settlement(self, message)
            try:
                await settle(
                    message.get("Body", "").encode(), self.deliver, settlement, queue=self.queue
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Not deleted: it comes back after the visibility timeout, and the inbox knows it.
                log.warning("message not settled", queue=self.queue, error=str(error))
            finally:
                self._let_go(message)
            if settlement.retried:
                await self._release(group[position + 1 :])
                return

    async def _release(self, messages: Sequence[MessageTypeDef]) -> None:
        """Make messages visible again at once, in the order given."""
        for message in messages:
            with contextlib.suppress(Exception):
                await self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
            self._let_go(message)

    async def delete(self, receipt: str) -> None:
        """Delete a handled message; the deletes of a few milliseconds share one request."""
        deleted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deletes.append((receipt, deleted))
        if self._deleting is None or self._deleting.done():
            self._deleting = asyncio.create_task(self._delete_batches())
        await deleted

    async def _delete_batches(self) -> None:
        while self._deletes:
            await asyncio.sleep(DELETE_LINGER_SECONDS)
            batch, self._deletes = self._deletes[:RECEIVE_BATCH], self._deletes[RECEIVE_BATCH:]
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(index), "ReceiptHandle": receipt}
                for index, (receipt, _deleted) in enumerate(batch)
            ]
            failed: dict[str, str] = {}
            try:
                result = await self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
                failed = {entry["Id"]: entry["Code"] for entry in result.get("Failed", [])}
            except Exception as error:
                failed = {entry["Id"]: f"{type(error).__name__}: {error}" for entry in entries}
            for index, (_receipt, deleted) in enumerate(batch):
                if deleted.done():
                    continue  # its handler was cancelled
                if str(index) in failed:
                    deleted.set_exception(RuntimeError(f"not deleted: {failed[str(index)]}"))
                else:
                    deleted.set_result(None)

    def _let_go(self, message: MessageTypeDef) -> None:
        self.held.discard(message["ReceiptHandle"])
        self._room.set()


class _Settlement:
    def __init__(self, consumer: _QueueConsumer, message: MessageTypeDef) -> None:
        self.consumer = consumer
        self.message = message
        self.retried = False

    async def ack(self) -> None:
        await self.consumer.delete(self.message["ReceiptHandle"])

    async def retry(self) -> None:
        # Visible again now (settle has paused already); each receive counts toward the redrive.
        self.retried = True
        self.consumer._let_go(self.message)
        await self.consumer.sqs.change_message_visibility(
            QueueUrl=self.consumer.queue_url,
            ReceiptHandle=self.message["ReceiptHandle"],
            VisibilityTimeout=0,
        )

    async def park(self, reason: str) -> None:
        consumer, message = self.consumer, self.message
        request: SendMessageRequestTypeDef = {
            "QueueUrl": consumer.parked_url,
            "MessageBody": message.get("Body", ""),
            "MessageAttributes": {
                "cleave-parked-reason": {
                    "DataType": "String",
                    "StringValue": " ".join(reason.split())[:500] or "unreadable",
                }
            },
        }
        if consumer.broker.sqs_address.fifo:
            group = message.get("Attributes", {}).get("MessageGroupId") or message["MessageId"]
            request["MessageGroupId"] = group
            request["MessageDeduplicationId"] = message["MessageId"]
        try:
            await consumer.sqs.send_message(**request)
        except Exception as error:
            log.warning("could not park a message; SQS will offer it again", error=str(error))
            return  # still held invisible: it comes back after the visibility timeout
        await self.ack()
