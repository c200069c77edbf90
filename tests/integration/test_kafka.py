"""What is Kafka's own, on a real Kafka-protocol broker (Tansu): a consumer group shared by two
units of one service, offsets committed only after the inbox write, redelivery after a crash.

The toy of `test_brokers`: `notes` in unit `writer`, `tally` in unit `counter`; two `counter`
units are two replicas of it, one consumer group between them, one database.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from cleave.config import SystemConfig
from cleave.data.tables import inbox
from cleave.events import Envelope
from cleave.messaging.broker import Broker, Delivery
from cleave.messaging.kafka import KafkaBroker
from cleave.runtime import Unit
from cleave.telemetry import configure_tracing
from tests.conftest import eventually, require_server
from tests.integration import toy
from tests.integration.test_brokers import (
    KAFKA_SERVERS,
    NOTE_WRITTEN,
    Brokers,
    CountingBroker,
    RecordingBroker,
    Units,
    tally_of,
    toy_split,
    write_note,
)
from tests.services import KAFKA

PARTITIONS = 4


@pytest.fixture
async def kafka() -> AsyncIterator[Brokers]:
    require_server("Kafka (Tansu)", KAFKA)
    server = Brokers("kafka", f"t{uuid.uuid4().hex[:12]}")
    try:
        yield server
    finally:
        await server.delete_everything(["tally"])


@pytest.fixture
async def units(base_config: SystemConfig, kafka: Brokers) -> AsyncIterator[Units]:
    started = Units(toy_split(base_config, kafka.url), kafka)
    try:
        yield started
    finally:
        for unit in list(started.running):
            await started.stop(unit)


def assigned(unit: Unit) -> set[int]:
    """The partitions of the notes topic this unit's `tally` consumer holds now."""
    assert isinstance(unit.broker, CountingBroker)
    broker = unit.broker.inner
    assert isinstance(broker, KafkaBroker)
    # The revocations' consumer is a broadcast, in no group: its group_id is None.
    (subscriber,) = [
        s
        for s in broker.faststream.subscribers
        if (getattr(s, "group_id", None) or "").endswith(".tally")
    ]
    consumer: Any = getattr(subscriber, "consumer", None)
    if consumer is None:
        return set()
    return {p.partition for p in consumer.assignment() if p.topic.endswith(NOTE_WRITTEN)}


async def committed_offsets(kafka: Brokers) -> dict[int, int]:
    """The offsets the `tally` group has committed on the notes topic, by partition; asked by a
    client that names the group but never joins it (aiokafka's admin client cannot parse Tansu's
    answer to ListConsumerGroupOffsets)."""
    topic = f"{kafka.namespace}.{NOTE_WRITTEN}"
    client = AIOKafkaConsumer(
        bootstrap_servers=KAFKA_SERVERS,
        group_id=f"{kafka.namespace}.tally",
        enable_auto_commit=False,
    )
    await client.start()
    try:
        await client.topics()
        committed = {
            partition: await client.committed(TopicPartition(topic, partition))
            for partition in client.partitions_for_topic(topic) or ()
        }
    finally:
        await client.stop()
    return {partition: offset for partition, offset in committed.items() if offset is not None}


async def inbox_rows(unit: Unit) -> int:
    async with unit.context("tally").read() as connection:
        return int((await connection.execute(select(func.count()).select_from(inbox))).scalar_one())


async def test_two_units_of_one_service_share_the_partitions_and_one_takes_over_from_the_other(
    units: Units, kafka: Brokers
) -> None:
    await kafka.create_topics([NOTE_WRITTEN], partitions=PARTITIONS)
    applied: dict[str, list[tuple[str, str]]] = {"first": [], "second": []}
    first = await units.start("counter", wrap=lambda b: RecordingBroker(b, applied["first"]))
    second = await units.start("counter", wrap=lambda b: RecordingBroker(b, applied["second"]))
    writer = await units.start("writer")

    async def shared() -> bool:
        mine, theirs = assigned(first), assigned(second)
        return bool(mine and theirs) and mine | theirs == set(range(PARTITIONS))

    assert await eventually(shared, within=20)
    assert not assigned(first) & assigned(second)

    async def publish(words: list[str]) -> None:
        for word in words:  # a subject each, so the key spreads them over the partitions
            note = toy.NoteWritten(note_id=word, text=word)
            await writer.broker.publish(Envelope.of(note, source="/t", subject=word, trace={}))

    before = [f"before-{i}" for i in range(24)]
    await publish(before)

    async def all_applied(words: list[str]) -> bool:
        counts = [await tally_of(first, word) for word in words]
        return counts == [1] * len(words)

    assert await eventually(lambda: all_applied(before), within=20)
    assert applied["first"], "the second unit consumed every partition"
    assert applied["second"], "the first unit consumed every partition"

    during = [f"during-{i}" for i in range(24)]
    publishing = asyncio.create_task(publish(during))
    await units.stop(second)  # leaves the group mid-stream: the rebalance hands its partitions on
    await publishing

    async def taken_over() -> bool:
        return assigned(first) == set(range(PARTITIONS))

    assert await eventually(taken_over, within=20)
    after = [f"after-{i}" for i in range(24)]
    await publish(after)
    assert await eventually(lambda: all_applied(before + during + after), within=20)
    assert {text for _, text in applied["first"]} >= set(after)
    assert await inbox_rows(first) == len(before) + len(during) + len(after)


class GatedBroker(CountingBroker):
    """Holds each delivery after the consumer has applied it, before the broker settles it."""

    def __init__(self, inner: Broker) -> None:
        super().__init__(inner)
        self.applied = asyncio.Event()
        self.release = asyncio.Event()

    def subscribe(
        self, queue: str, types: Any, deliver: Delivery, *, broadcast: bool = False
    ) -> None:
        async def gated(envelope: Envelope) -> None:
            await deliver(envelope)
            if queue == "tally":
                self.applied.set()
                await self.release.wait()

        super().subscribe(queue, types, gated, broadcast=broadcast)


async def test_an_offset_is_committed_only_after_the_inbox_has_the_message(
    units: Units, kafka: Brokers
) -> None:
    gates: list[GatedBroker] = []

    def gate(broker: Broker) -> Broker:
        gates.append(GatedBroker(broker))
        return gates[-1]

    counter = await units.start("counter", wrap=gate)
    writer = await units.start("writer")
    await write_note(writer, "held")

    await asyncio.wait_for(gates[0].applied.wait(), 20)
    assert await inbox_rows(counter) == 1
    assert await committed_offsets(kafka) == {}, "committed before the consumer settled"

    gates[0].release.set()

    async def committed() -> dict[int, int]:
        return await committed_offsets(kafka)

    assert await eventually(committed) == {0: 1}


async def test_a_message_applied_by_a_consumer_that_crashed_before_committing_is_delivered_again_and_applied_once(  # noqa: E501
    units: Units, kafka: Brokers
) -> None:
    gates: list[GatedBroker] = []

    def gate(broker: Broker) -> Broker:
        gates.append(GatedBroker(broker))
        return gates[-1]

    crashed = await units.start("counter", wrap=gate)
    writer = await units.start("writer")
    await write_note(writer, "crash")
    await asyncio.wait_for(gates[0].applied.wait(), 20)
    assert await tally_of(crashed, "crash") == 1

    # The crash: the consuming task dies between the inbox write and the commit.
    inner = gates[0].inner
    assert isinstance(inner, KafkaBroker)
    for subscriber in inner.faststream.subscribers:
        for task in getattr(subscriber, "tasks", []):
            task.cancel()
    await units.stop(crashed)
    assert await committed_offsets(kafka) == {}

    duplicates = consumed("duplicate")
    returned = await units.start("counter", wrap=CountingBroker)
    assert isinstance(returned.broker, CountingBroker)
    counting = returned.broker

    async def delivered_again() -> bool:
        return counting.delivered == 1

    assert await eventually(delivered_again, within=20)
    assert await tally_of(returned, "crash") == 1, "the redelivery was applied a second time"
    assert consumed("duplicate") == duplicates + 1
    assert await eventually(lambda: committed_offsets(kafka)) == {0: 1}


def consumed(outcome: str) -> float:
    labels = {"service": "tally", "handler": "count_note", "outcome": outcome}
    return REGISTRY.get_sample_value("cleave_events_consumed_total", labels) or 0.0


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span the process ends from now on, kept in memory by the real SDK."""
    configure_tracing("cleave-tests")  # no-op once any test has set the provider up
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


async def test_the_producer_and_consumer_spans_and_outcomes_are_those_of_every_broker(
    units: Units, spans: InMemorySpanExporter
) -> None:
    counter = await units.start("counter")
    writer = await units.start("writer")
    applied = consumed("applied")

    with trace.get_tracer("tests").start_as_current_span("write") as write:
        await write_note(writer, "traced")
    assert await eventually(lambda: tally_of(counter, "traced")) == 1

    def of_the_write(kind: SpanKind) -> list[Any]:
        trace_id = write.get_span_context().trace_id
        return [
            s
            for s in spans.get_finished_spans()
            if s.kind is kind and s.context is not None and s.context.trace_id == trace_id
        ]

    async def both_ended() -> bool:
        return bool(of_the_write(SpanKind.PRODUCER) and of_the_write(SpanKind.CONSUMER))

    assert await eventually(both_ended)
    (producer,) = of_the_write(SpanKind.PRODUCER)
    (consumer,) = of_the_write(SpanKind.CONSUMER)
    assert producer.name == consumer.name.replace("process", "publish")
    assert producer.attributes["messaging.system"] == "kafka"
    assert producer.attributes["messaging.destination.name"] == NOTE_WRITTEN
    assert consumer.attributes["messaging.consumer.group.name"] == "tally"
    assert consumed("applied") == applied + 1


async def test_the_default_idempotent_producer_is_refused_by_tansu_with_the_option_to_use(
    kafka: Brokers,
) -> None:
    """Why the suite's URLs say idempotence=false, and proof the option reaches aiokafka. In a
    process of its own: FastStream drops the producer whose start failed without closing it."""
    url = f"kafka://{KAFKA_SERVERS}?namespace={kafka.namespace}"
    assert KafkaBroker(url).idempotent
    starting = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import asyncio, sys; from cleave.messaging.kafka import KafkaBroker; "
        "asyncio.run(KafkaBroker(sys.argv[1]).start())",
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(starting.communicate(), 60)
    assert starting.returncode != 0
    assert "ConfigError" in stderr.decode()
    assert "refused an idempotent producer" in stderr.decode()
    assert "needs ?idempotence=false" in stderr.decode()


HOLDING_CONSUMER = """
import asyncio, sys
from cleave.messaging.kafka import KafkaBroker

async def main() -> None:
    broker = KafkaBroker(sys.argv[1])

    async def hold(envelope) -> None:  # received, never applied nor committed
        print(envelope.id, flush=True)
        await asyncio.Event().wait()

    broker.subscribe("tally", [sys.argv[2]], hold)
    await broker.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_consumer_process_killed_before_committing_hands_its_message_to_the_next_member(
    units: Units, kafka: Brokers
) -> None:
    """A real crash: no LeaveGroup, so the group waits out the dead member's session first."""
    await kafka.create_topics([NOTE_WRITTEN], partitions=1)
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDING_CONSUMER,
        kafka.url,
        NOTE_WRITTEN,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        writer = await units.start("writer")
        await write_note(writer, "killed")
        assert holder.stdout is not None
        held = (await asyncio.wait_for(holder.stdout.readline(), 30)).decode().strip()
        assert held, "the holding consumer never received the message"
    finally:
        holder.kill()
        await holder.wait()

    returned = await units.start("counter", wrap=CountingBroker)
    assert await eventually(lambda: tally_of(returned, "killed"), within=30) == 1
    async with returned.context("tally").read() as connection:
        ids = (await connection.execute(select(inbox.c.message_id))).scalars().all()
    assert ids == [held]
