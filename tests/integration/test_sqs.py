"""What is SQS's own, on moto's server: the redrive to the dead-letter queue, the visibility
timeout (expiring for a consumer that died, extended for one that is slow), FIFO order per key,
and `cleave plan` naming the broker of the `aws` topology.

The broker suite every adapter passes is `test_brokers.py`; here the adapter is driven directly,
a `deliver` callback standing in for a consumer. Moto is an emulator: see `cleave.messaging.sqs`
for what it does not do as AWS does.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from cleave.config import load_config
from cleave.errors import ConfigError
from cleave.events import Envelope
from cleave.messaging.broker import Delivery
from cleave.messaging.sqs import ALIVE_TAG, REPLICA_OF_TAG, REPLICA_STALE_SECONDS, SQSBroker
from tests.conftest import clean_environment, eventually, require_server, run_cleave
from tests.e2e.conftest import ROOT
from tests.integration import toy
from tests.integration.test_brokers import SQS_URL, delete_sqs_namespace, sqs_parked_bodies
from tests.services import SQS

NOTE_WRITTEN = toy.NoteWritten.event_type


class Namespace:
    """Brokers on one namespace of the test's own, each closed and its queues deleted after."""

    def __init__(self) -> None:
        self.name = f"t{uuid.uuid4().hex[:12]}"
        self.opened: list[SQSBroker] = []

    def url(self, options: str = "") -> str:
        return f"{SQS_URL}&namespace={self.name}{options}"

    def broker(self, options: str = "") -> SQSBroker:
        self.opened.append(SQSBroker(self.url(options)))
        return self.opened[-1]


@pytest.fixture
async def namespace() -> AsyncIterator[Namespace]:
    require_server("moto's SQS/SNS server", SQS)
    space = Namespace()
    try:
        yield space
    finally:
        for broker in space.opened:
            await broker.close()
        await delete_sqs_namespace(space.url(), ["tally", "revocations-x"])


def note(text: str, *, subject: str | None = None) -> Envelope:
    return Envelope.of(
        toy.NoteWritten(note_id=f"n-{uuid.uuid4().hex[:6]}", text=text),
        source="/test",
        subject=subject,
        trace={},
    )


async def queue_depth(broker: SQSBroker, queue: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue, as SQS counts them."""
    _sns, sqs = await broker.connect()
    url = (await sqs.get_queue_url(QueueName=broker.queue_name(queue)))["QueueUrl"]
    attributes = (
        await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def recorder(seen: list[Envelope], *, pause: Callable[[], float] = lambda: 0.0) -> Delivery:
    async def deliver(envelope: Envelope) -> None:
        await asyncio.sleep(pause())
        seen.append(envelope)

    return deliver


async def test_a_message_its_consumer_keeps_failing_is_redriven_to_the_dead_letter_queue(
    namespace: Namespace,
) -> None:
    attempts: list[str] = []

    async def broken(envelope: Envelope) -> None:  # as a consumer whose database is down
        attempts.append(envelope.id)
        raise ConnectionError("database unavailable")

    consumer = namespace.broker("&max_receives=2")
    consumer.subscribe("tally", [NOTE_WRITTEN], broken)
    await consumer.start()
    sent = note("doomed")
    await consumer.publish(sent)

    parked = await eventually(lambda: sqs_parked_bodies(namespace.url(), "tally"), within=20)
    assert [Envelope.from_json(body).id for body in parked] == [sent.id]
    assert attempts == [sent.id, sent.id]  # max_receives, then no more
    assert await queue_depth(consumer, "tally") == (0, 0)


async def test_a_message_held_by_a_consumer_that_died_goes_to_another_after_the_timeout(
    namespace: Namespace,
) -> None:
    first = namespace.broker("&visibility=2")
    first.subscribe("tally", [NOTE_WRITTEN], recorder([]))
    await first.start()  # declares the queue; then it stops, and a consumer that will die polls
    await first.close()
    _sns, sqs = await first.connect()
    queue_url = (await sqs.get_queue_url(QueueName=first.queue_name("tally")))["QueueUrl"]
    sent = note("orphaned")
    publisher = namespace.broker("&visibility=2")
    await publisher.start()
    await publisher.publish(sent)
    taken = await sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)
    taken_at = time.monotonic()
    assert [m["MessageId"] for m in taken.get("Messages", [])], "the dying consumer got nothing"

    seen: list[Envelope] = []
    second = namespace.broker("&visibility=2")
    second.subscribe("tally", [NOTE_WRITTEN], recorder(seen))
    await second.start()

    async def delivered() -> list[Envelope]:
        return seen

    assert [envelope.id for envelope in await eventually(delivered, within=15)] == [sent.id]
    assert time.monotonic() - taken_at >= 1.5  # not before the dead consumer's timeout ran out
    assert await eventually(lambda: _drained(second)) == (0, 0)


async def _drained(broker: SQSBroker) -> tuple[int, int] | None:
    depth = await queue_depth(broker, "tally")
    return depth if depth == (0, 0) else None


async def test_a_slow_handler_keeps_its_message_past_the_visibility_timeout(
    namespace: Namespace,
) -> None:
    seen: list[Envelope] = []
    replicas = [namespace.broker("&visibility=2") for _ in range(2)]
    for replica in replicas:  # two units of one service, sharing its queue
        replica.subscribe("tally", [NOTE_WRITTEN], recorder(seen, pause=lambda: 4.0))
        await replica.start()
    sent = note("slow")
    await replicas[0].publish(sent)

    async def handled() -> list[Envelope]:
        return seen

    assert [envelope.id for envelope in await eventually(handled, within=15)] == [sent.id]
    await asyncio.sleep(3)  # room for a redelivery the extension should have prevented
    assert [envelope.id for envelope in seen] == [sent.id]
    assert await eventually(lambda: _drained(replicas[0])) == (0, 0)


async def test_a_fifo_queue_keeps_each_subjects_order_and_drops_a_resent_event(
    namespace: Namespace,
) -> None:
    seen: list[Envelope] = []
    declaring = namespace.broker("&fifo=true")
    declaring.subscribe("tally", [NOTE_WRITTEN], recorder([]))
    await declaring.start()
    await declaring.close()
    sent = [note(f"{key}-{n}", subject=f"order-{key}") for n in range(12) for key in "abc"]
    publisher = namespace.broker("&fifo=true")
    await publisher.start()
    for envelope in sent:
        await publisher.publish(envelope)
    # A relay's re-send. AWS drops it for five minutes after the first; moto only while the first
    # is still in the queue, so it is sent before anything consumes it.
    await publisher.publish(sent[0])

    # Handlers that take random time would finish out of order if a group ran concurrently.
    consumer = namespace.broker("&fifo=true")
    consumer.subscribe("tally", [NOTE_WRITTEN], recorder(seen, pause=lambda: random.random() / 20))
    await consumer.start()

    async def all_seen() -> bool:
        return len(seen) >= len(sent)

    assert await eventually(all_seen, within=20)
    await asyncio.sleep(1)
    assert len(seen) == len(sent)
    for key in "abc":
        texts = [e.data["text"] for e in seen if e.subject == f"order-{key}"]
        assert texts == [f"{key}-{n}" for n in range(12)]
    assert consumer.queue_name("tally").endswith(".fifo")


def test_cleave_plan_shows_sns_and_sqs_carrying_the_aws_topologys_events() -> None:
    """`cleave plan --topology aws`, as the README shows it."""
    ran = run_cleave("plan", "--topology", "aws", env=clean_environment())
    assert ran.returncode == 0, ran.stderr
    planned = ran.stdout
    broker = load_config(ROOT / "cleave.toml", topology="aws").topology.broker
    assert broker.startswith("sqs://")
    assert f"topology aws · broker {broker}" in " ".join(planned.split())
    confirmed = next(line for line in planned.splitlines() if "order_confirmed" in line)
    assert confirmed.split() == [
        "shop.ordering.order_confirmed.v1",
        "ordering",
        "→",
        "customer",
        f"({broker})",
    ]


def test_a_subscription_sqs_cannot_hold_is_a_config_error() -> None:
    long_namespace = SQSBroker(f"{SQS_URL}&namespace={'n' * 64}")
    with pytest.raises(ConfigError, match="longer than SQS's 80 characters"):
        long_namespace.subscribe("a-consumer-of-notes", [NOTE_WRITTEN], recorder([]))
    too_many = [f"toy.kind_{n}.v1" for n in range(151)]
    with pytest.raises(ConfigError, match="an SNS filter policy holds at most 150"):
        SQSBroker(SQS_URL).subscribe("tally", too_many, recorder([]))


async def queue_names(broker: SQSBroker, prefix: str) -> set[str]:
    _sns, sqs = await broker.connect()
    urls = (await sqs.list_queues(QueueNamePrefix=prefix)).get("QueueUrls", [])
    return {url.rsplit("/", 1)[1] for url in urls}


async def subscribed_queues(broker: SQSBroker, topic_arn: str) -> set[str]:
    """The names of the queues subscribed to the topic."""
    sns, _sqs = await broker.connect()
    listed = (await sns.list_subscriptions_by_topic(TopicArn=topic_arn))["Subscriptions"]
    return {s["Endpoint"].rsplit(":", 1)[1] for s in listed if "Endpoint" in s}


async def test_a_replicas_own_queue_goes_when_it_closes_and_a_killed_replicas_when_one_starts(
    namespace: Namespace,
) -> None:
    looking = namespace.broker()
    sns, sqs = await looking.connect()
    topic_arn = (await sns.create_topic(Name=looking.topic_name))["TopicArn"]
    prefix = f"{namespace.name}-revocations-x-"
    killed, running = prefix + "killed-0000", prefix + "running-1111"
    # Two siblings, made by hand: one killed long ago (not said alive since), one running.
    for name, alive in ((killed, time.time() - 2 * REPLICA_STALE_SECONDS), (running, time.time())):
        tags = {REPLICA_OF_TAG: "revocations-x", ALIVE_TAG: str(int(alive))}
        url = (await sqs.create_queue(QueueName=name, tags=tags))["QueueUrl"]
        got = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        await sns.subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=got["Attributes"]["QueueArn"]
        )

    replica = namespace.broker()
    replica.subscribe("revocations-x", [NOTE_WRITTEN], recorder([]), broadcast=True)
    await replica.start()
    own = replica.replica_queue_name("revocations-x")
    parked = replica.parked_queue_name("revocations-x")  # shared by the replicas, kept

    assert await queue_names(looking, prefix) == {running, own, parked}
    assert await subscribed_queues(looking, topic_arn) == {running, own}
    await replica.close()
    assert await queue_names(looking, prefix) == {running, parked}
    assert await subscribed_queues(looking, topic_arn) == {running}
    await sqs.delete_queue(QueueUrl=(await sqs.get_queue_url(QueueName=running))["QueueUrl"])
