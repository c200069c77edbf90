"""Events between units over the real RabbitMQ, NATS JetStream, a Kafka-protocol broker (Tansu)
and SNS+SQS (moto's server), and in-process, for contrast.

The toy `notes` runs in one unit and `tally` in another, each unit with its own broker client on
the same server, as two processes would be. Every test gets its own broker namespace, so its
exchanges, queues and streams are its own, and deletes them afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import aio_pika
import nats
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import func, select

from cleave.auth.revocation import RELOAD_SECONDS, TokenRevoked, revocation_queue
from cleave.clock import utcnow
from cleave.config import SystemConfig, Topology
from cleave.data.tables import inbox
from cleave.errors import ConfigError
from cleave.events import Envelope
from cleave.messaging.adapters import create_broker
from cleave.messaging.broker import Broker, Delivery, MemoryBroker
from cleave.messaging.consumer import list_dead_letters
from cleave.messaging.jetstream import JetStreamBroker
from cleave.messaging.kafka import KafkaBroker
from cleave.messaging.rabbitmq import RabbitMQBroker
from cleave.messaging.relay import outbox_state
from cleave.messaging.remote import BrokerAddress
from cleave.messaging.sqs import SQSBroker
from cleave.runtime import Unit
from tests.conftest import eventually, require_server
from tests.integration import toy
from tests.services import KAFKA, NATS, RABBITMQ, SQS

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"
KAFKA_SERVERS = f"{KAFKA[0]}:{KAFKA[1]}"
# Tansu has no idempotent producer (InitProducerId: UnknownError): see cleave.messaging.kafka.
# A short session: Tansu holds a new group's first join for half of it.
KAFKA_URL = f"kafka://{KAFKA_SERVERS}?idempotence=false&session_timeout_ms=2000"
# A one-second long poll: closing a consumer waits for the poll in flight, and tests close many.
SQS_URL = f"sqs://test:test@{SQS[0]}:{SQS[1]}?region=us-east-1&wait=1"
NOTE_WRITTEN = toy.NoteWritten.event_type
TOY_UNITS = ("writer", "counter")


@dataclass
class Brokers:
    """One broker server seen by a test: its URL in a namespace of the test's own."""

    kind: str
    namespace: str

    @property
    def url(self) -> str:
        base = {"rabbitmq": RABBITMQ_URL, "nats": NATS_URL, "kafka": KAFKA_URL, "sqs": SQS_URL}.get(
            self.kind
        )
        if base is None:
            return "memory"
        return f"{base}{'&' if '?' in base else '?'}namespace={self.namespace}"

    async def create_topics(self, event_types: list[str], partitions: int) -> None:
        """Kafka topics of the test's own, of several partitions (a consumer makes one)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_SERVERS)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(f"{self.namespace}.{t}", partitions, 1) for t in event_types]
            )
        finally:
            await admin.close()

    async def delete_everything(self, queues: list[str]) -> None:
        if self.kind == "rabbitmq":
            connection = await aio_pika.connect(RABBITMQ_URL)
            async with connection:
                channel = await connection.channel()
                for queue in queues:
                    await channel.queue_delete(f"{self.namespace}.{queue}")
                    await channel.queue_delete(f"{self.namespace}.{queue}.parked")
                for exchange in ("events", "parked"):
                    await channel.exchange_delete(f"{self.namespace}.{exchange}")
        elif self.kind == "nats":
            client = await nats.connect(NATS_URL)
            try:
                jetstream = client.jetstream()
                for stream in ("events", "parked"):
                    await jetstream.delete_stream(f"{self.namespace}_{stream}")
            except nats.js.errors.NotFoundError:
                pass
            finally:
                await client.close()
        elif self.kind == "kafka":
            admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_SERVERS)
            await admin.start()
            try:
                ours = [t for t in await admin.list_topics() if t.startswith(f"{self.namespace}.")]
                if ours:
                    await admin.delete_topics(ours)
            finally:
                await admin.close()

        elif self.kind == "sqs":
            await delete_sqs_namespace(self.url, queues)


async def delete_sqs_namespace(url: str, queues: list[str]) -> None:
    """The topic and queues an `sqs://` URL's broker made for `queues`, gone."""
    broker = SQSBroker(url)
    sns, sqs = await broker.connect()
    try:
        topics = {topic["TopicArn"] for topic in (await sns.list_topics()).get("Topics", [])}
        for arn in topics:
            if arn.rsplit(":", 1)[1] == broker.topic_name:
                await sns.delete_topic(TopicArn=arn)
        for queue in queues:
            for name in (broker.queue_name(queue), broker.parked_queue_name(queue)):
                with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
                    url_of = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
                    await sqs.delete_queue(QueueUrl=url_of)
    finally:
        await broker.close()


@pytest.fixture(params=["memory", "rabbitmq", "nats", "kafka", "sqs"])
async def brokers(request: pytest.FixtureRequest) -> AsyncIterator[Brokers]:
    if request.param == "rabbitmq":
        require_server("RabbitMQ", RABBITMQ)
    if request.param == "nats":
        require_server("NATS", NATS)
    if request.param == "kafka":
        require_server("Kafka (Tansu)", KAFKA)
    if request.param == "sqs":
        require_server("moto's SQS/SNS server", SQS)
    server = Brokers(request.param, f"t{uuid.uuid4().hex[:12]}")
    try:
        yield server
    finally:
        await server.delete_everything(["tally", *map(revocation_queue, TOY_UNITS)])


remote_only = pytest.mark.parametrize(
    "brokers", ["rabbitmq", "nats", "kafka", "sqs"], indirect=True
)


class CountingBroker:
    """A broker that counts what it hands each consumer, to know when redeliveries are done."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.name = inner.name
        self.delivered = 0

    def subscribe(
        self, queue: str, types: Any, deliver: Delivery, *, broadcast: bool = False
    ) -> None:
        async def counted(envelope: Envelope) -> None:
            await deliver(envelope)
            self.delivered += 1

        self.inner.subscribe(queue, types, counted, broadcast=broadcast)

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, envelope: Envelope) -> None:
        await self.inner.publish(envelope)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
def split_config(base_config: SystemConfig, brokers: Brokers) -> SystemConfig:
    return toy_split(base_config, brokers.url)


def toy_split(base_config: SystemConfig, broker: str) -> SystemConfig:
    """The toy over `broker`: `notes` in unit `writer`, `tally` in unit `counter`."""
    services = {
        "notes": "tests.integration.toy:notes_service",
        "tally": "tests.integration.toy:tally_service",
    }
    topology = Topology(
        name="toy-split",
        units=dict(zip(TOY_UNITS, [("notes",), ("tally",)], strict=True)),
        broker=broker,
        database="sqlite+aiosqlite:///{var}/{service}.db",
    )
    return replace(
        base_config, services=services, topology=topology, topologies={topology.name: topology}
    )


class Units:
    """Starts the toy's two units; in memory they must share one broker to reach each other."""

    def __init__(self, config: SystemConfig, brokers: Brokers) -> None:
        self.config = config
        self.shared = MemoryBroker() if brokers.kind == "memory" else None
        self.running: list[Unit] = []

    async def start(self, name: str, *, wrap: Callable[[Broker], Broker] | None = None) -> Unit:
        broker = self.shared or create_broker(self.config.topology.broker)
        unit = Unit(self.config, name, broker=wrap(broker) if wrap else broker, max_attempts=3)
        for consumer in unit.consumers.values():
            consumer.backoff_seconds = 0.01
        await unit.migrate()
        await unit.start()
        self.running.append(unit)
        return unit

    async def stop(self, unit: Unit) -> None:
        self.running.remove(unit)
        await unit.stop()


@pytest.fixture
async def units(split_config: SystemConfig, brokers: Brokers) -> AsyncIterator[Units]:
    started = Units(split_config, brokers)
    try:
        yield started
    finally:
        for unit in list(started.running):
            await started.stop(unit)


async def tally_of(unit: Unit, word: str) -> int:
    async with unit.context("tally").read() as connection:
        count = (
            await connection.execute(select(toy.tallies.c.count).where(toy.tallies.c.word == word))
        ).scalar()
    return int(count or 0)


async def write_note(unit: Unit, text: str) -> None:
    async with unit.context("notes").unit_of_work() as uow:
        await toy.write_note(uow, f"note-{uuid.uuid4().hex[:8]}", text)


async def test_an_event_committed_in_one_unit_is_applied_once_in_another(units: Units) -> None:
    counter = await units.start("counter")
    writer = await units.start("writer")

    await write_note(writer, "hello")

    assert await eventually(lambda: tally_of(counter, "hello")) == 1

    async def recorded_as_delivered_once() -> bool:
        state = await outbox_state(writer.context("notes"))
        return (state.pending, state.delivered) == (0, 1)

    # The relay records the broker's confirm after it arrives, which may be after the consumer ran.
    assert await eventually(recorded_as_delivered_once)


async def test_the_same_event_published_again_is_applied_once(
    units: Units, brokers: Brokers
) -> None:
    counting: list[CountingBroker] = []

    def count(broker: Broker) -> Broker:
        counting.append(CountingBroker(broker))
        return counting[-1]

    counter = await units.start("counter", wrap=count)
    writer = await units.start("writer")
    envelope = Envelope.of(toy.NoteWritten(note_id="n1", text="twice"), source="/t", trace={})

    for _ in range(3):  # as a relay that crashed before recording its deliveries would
        await writer.broker.publish(envelope)

    # JetStream itself drops a re-sent message id; the others hand every copy to the inbox.
    expected = 1 if brokers.kind == "nats" else 3

    async def all_handled() -> bool:
        return counting[0].delivered == expected

    assert await eventually(all_handled)
    assert await tally_of(counter, "twice") == 1
    async with counter.context("tally").read() as connection:
        assert (await connection.execute(select(func.count()).select_from(inbox))).scalar() == 1


@remote_only
async def test_a_revocation_published_once_is_applied_by_every_replica_of_a_unit(
    units: Units,
) -> None:
    replicas = [await units.start("counter"), await units.start("counter")]
    writer = await units.start("writer")
    revoked = TokenRevoked(jti=f"j-{uuid.uuid4().hex[:8]}", until=utcnow() + timedelta(minutes=5))

    await writer.broker.publish(Envelope.of(revoked, source="/identity", trace={}))

    async def refused_by_both() -> list[bool]:
        refused = [unit.revocations.revoked({"jti": revoked.jti}) == "token" for unit in replicas]
        return refused if all(refused) else []

    # Well before the reload that would bring it to a replica the event missed.
    assert await eventually(refused_by_both, within=RELOAD_SECONDS / 6)


@remote_only
async def test_an_event_published_while_the_consumer_is_down_arrives_when_it_returns(
    units: Units,
) -> None:
    first = await units.start("counter")  # its first start declares its durable queue
    await units.stop(first)
    writer = await units.start("writer")

    await write_note(writer, "meanwhile")

    async def confirmed_by_the_broker() -> bool:
        return (await outbox_state(writer.context("notes"))).pending == 0

    assert await eventually(confirmed_by_the_broker)
    returned = await units.start("counter")
    assert await eventually(lambda: tally_of(returned, "meanwhile")) == 1


async def test_a_failing_handler_parks_the_message_and_a_replay_applies_it(units: Units) -> None:
    counter = await units.start("counter")
    writer = await units.start("writer")
    try:
        await write_note(writer, "poison")

        letters = await eventually(lambda: list_dead_letters(counter.context("tally")))
        assert [(letter.attempts, letter.type) for letter in letters] == [(3, NOTE_WRITTEN)]
        assert "cannot count 'poison'" in letters[0].error

        toy.failures["poison"] = False  # the broken dependency is fixed
        assert await counter.consumers["tally"].replay(letters[0].id) is True
        assert await tally_of(counter, "poison") == 1
        assert await list_dead_letters(counter.context("tally")) == []
    finally:
        toy.failures["poison"] = True


@remote_only
async def test_a_malformed_message_is_parked_by_the_broker_and_consuming_goes_on(
    units: Units, brokers: Brokers
) -> None:
    counter = await units.start("counter")
    writer = await units.start("writer")

    await publish_raw(writer.broker, NOTE_WRITTEN, b'{"not": "a cloud event"}')
    await write_note(writer, "after")

    assert await eventually(lambda: tally_of(counter, "after")) == 1
    parked = await eventually(lambda: parked_bodies(brokers, "tally"))
    assert parked == [b'{"not": "a cloud event"}']
    assert await list_dead_letters(counter.context("tally")) == []


async def publish_raw(broker: Broker, event_type: str, body: bytes) -> None:
    if isinstance(broker, RabbitMQBroker):
        await broker.faststream.publish(body, exchange=broker.exchange, routing_key=event_type)
    elif isinstance(broker, KafkaBroker):
        await broker.faststream.publish(body, broker.topic(event_type))
    elif isinstance(broker, SQSBroker):
        await broker.publish_raw(event_type, body.decode(), group="raw", deduplication="raw")
    else:
        assert isinstance(broker, JetStreamBroker)
        await broker.publish_raw(broker.subject(event_type), body, {})


async def parked_bodies(brokers: Brokers, queue: str) -> list[bytes]:
    if brokers.kind == "rabbitmq":
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            parked = await channel.get_queue(f"{brokers.namespace}.{queue}.parked")
            message = await parked.get(fail=False, no_ack=True)
            return [message.body] if message else []
    if brokers.kind == "kafka":
        return await kafka_records(f"{brokers.namespace}.parked.{queue}")
    if brokers.kind == "sqs":
        return await sqs_parked_bodies(brokers.url, queue)
    client = await nats.connect(NATS_URL)
    try:
        jetstream = client.jetstream()
        info = await jetstream.stream_info(f"{brokers.namespace}_parked")
        if not info.state.messages:
            return []
        stored = await jetstream.get_last_msg(
            f"{brokers.namespace}_parked", f"{brokers.namespace}.parked.{queue}"
        )
        return [stored.data or b""]
    finally:
        await client.close()


async def kafka_records(topic: str) -> list[bytes]:
    """Every record of a topic so far, from all its partitions, read outside any consumer group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA_SERVERS, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # refreshes the metadata, which a new topic is not in yet
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[bytes] = []
        for partition in partitions:
            while await consumer.position(partition) < ends[partition]:
                batch = await consumer.getmany(partition, timeout_ms=1000)
                records += [record.value or b"" for record in batch.get(partition, [])]
        return records
    finally:
        await consumer.stop()


async def sqs_parked_bodies(url: str, queue: str) -> list[bytes]:
    """What waits in a queue's dead-letter queue, left there (invisible for a second)."""
    broker = SQSBroker(url)
    _sns, sqs = await broker.connect()
    try:
        parked = (await sqs.get_queue_url(QueueName=broker.parked_queue_name(queue)))["QueueUrl"]
        received = await sqs.receive_message(
            QueueUrl=parked, MaxNumberOfMessages=10, VisibilityTimeout=1
        )
        return [message["Body"].encode() for message in received.get("Messages", [])]
    finally:
        await broker.close()


# Not JetStream, yet: FastStream's pull subscriber applies each fetched batch concurrently, so
# this test finds one subject's events applied out of order there.
@pytest.mark.parametrize("brokers", ["memory", "rabbitmq", "kafka"], indirect=True)
async def test_one_subjects_events_are_applied_in_the_order_they_were_published(
    units: Units, brokers: Brokers
) -> None:
    applied: list[tuple[str, str]] = []
    if brokers.kind == "kafka":  # one partition would keep every order; the key must pick it
        await brokers.create_topics([NOTE_WRITTEN], partitions=3)

    def record(broker: Broker) -> Broker:
        return RecordingBroker(broker, applied)

    await units.start("counter", wrap=record)
    writer = await units.start("writer")
    subjects = ["a", "b", "c"]
    for step in range(8):  # interleaved, as several aggregates' events are
        for subject in subjects:
            note = toy.NoteWritten(note_id=f"{subject}{step}", text=f"{subject}-{step}")
            await writer.broker.publish(Envelope.of(note, source="/t", subject=subject, trace={}))

    async def all_applied() -> bool:
        return len(applied) == 8 * len(subjects)

    assert await eventually(all_applied, within=20)
    for subject in subjects:
        steps = [int(text.split("-")[1]) for key, text in applied if key == subject]
        assert steps == list(range(8)), f"subject {subject} applied out of order: {steps}"


class RecordingBroker(CountingBroker):
    """Also records each delivered event's subject and text, in the order they were handled."""

    def __init__(self, inner: Broker, applied: list[tuple[str, str]]) -> None:
        super().__init__(inner)
        self.applied = applied

    def subscribe(
        self, queue: str, types: Any, deliver: Delivery, *, broadcast: bool = False
    ) -> None:
        async def recorded(envelope: Envelope) -> None:
            await deliver(envelope)
            self.applied.append((envelope.subject or "", str(envelope.data["text"])))

        super().subscribe(queue, types, recorded, broadcast=broadcast)


@pytest.mark.parametrize(
    ("url", "adapter"),
    [
        ("memory", MemoryBroker),
        ("amqp://guest:guest@127.0.0.1:5672/", RabbitMQBroker),
        ("amqps://guest:guest@broker.example:5671/", RabbitMQBroker),
        ("nats://127.0.0.1:4222", JetStreamBroker),
        ("kafka://127.0.0.1:9092", KafkaBroker),
        ("sqs://127.0.0.1:4566?region=us-east-1", SQSBroker),
        ("sqs://aws?region=eu-west-1&fifo=true", SQSBroker),
    ],
)
def test_the_broker_url_scheme_picks_the_adapter(url: str, adapter: type) -> None:
    assert isinstance(create_broker(url), adapter)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis://127.0.0.1:6379", "unknown scheme 'redis'"),
        ("rabbit", "unknown scheme 'rabbit'"),
        ("nats://127.0.0.1:4222?namespace=a.b", "broker namespace 'a.b'"),
        ("amqp://127.0.0.1/?prefetch=lots", "broker prefetch 'lots'"),
        ("kafka://127.0.0.1:9092?idempotence=maybe", "broker idempotence 'maybe'"),
        ("kafka://127.0.0.1:9092?acks=1", "unknown option 'acks'"),
        ("kafka://127.0.0.1:9092?session_timeout_ms=10s", "broker session_timeout_ms '10s'"),
        ("kafka://?namespace=x", "name the bootstrap servers"),
        ("sqs://127.0.0.1:4566?fifo=yes", "broker fifo 'yes'"),
        ("sqs://127.0.0.1:4566?visibility=1", "broker visibility '1'"),
        ("sqs://127.0.0.1:4566?wait=60", "broker wait '60'"),
        ("sqs://127.0.0.1:4566?max_receives=none", "broker max_receives 'none'"),
        ("sqs://127.0.0.1:4566?regoin=eu-west-1", "unknown option 'regoin'"),
        ("sqs://?region=eu-west-1", "name the endpoint"),
    ],
)
def test_a_broker_url_that_cannot_work_is_a_config_error(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        create_broker(url)


def test_cleaves_own_options_leave_the_url_the_client_library_sees() -> None:
    address = BrokerAddress.parse("amqp://u:p@h:5672/vhost?namespace=shop2&prefetch=8&heartbeat=30")
    assert (address.namespace, address.prefetch) == ("shop2", 8)
    assert address.url == "amqp://u:p@h:5672/vhost?heartbeat=30"


@pytest.mark.parametrize(
    ("url", "endpoint", "region", "key"),
    [
        (
            "sqs://k:s%2F1@127.0.0.1:4566?fifo=true",
            "http://127.0.0.1:4566",
            "us-east-1",
            ("k", "s/1"),
        ),
        ("sqs://aws?region=eu-west-1", None, "eu-west-1", None),
        ("sqs://aws", None, None, None),  # the region from AWS_REGION or the profile
    ],
)
def test_an_sqs_url_names_the_endpoint_its_region_and_key(
    url: str, endpoint: str | None, region: str | None, key: tuple[str, str] | None
) -> None:
    broker = create_broker(f"{url}{'&' if '?' in url else '?'}namespace=shop2")
    assert isinstance(broker, SQSBroker)
    address = broker.sqs_address
    assert (address.endpoint, address.region, address.access_key) == (endpoint, region, key)
    assert broker.queue_name("ordering").startswith("shop2-ordering")
