"""Outbox relay throughput over each broker: memory, RabbitMQ, NATS JetStream, Kafka (Tansu), and
SNS+SQS on moto's server with `--brokers sqs` (an emulator's rate, not AWS's).

    .venv/bin/python -m bench.relay_throughput [--events 5000] [--brokers rabbitmq,nats,kafka]

The toy `notes` service commits N events to its outbox with no relay running; then its unit
starts and we time until the broker has confirmed every row (the relay's rate). The consuming
`tally` unit, whose durable queue or consumer already exists, then starts and we time until it has
applied them all (the consumer's rate, through its inbox, on SQLite). A benchmark only: no test
asserts these numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn
from sqlalchemy import func, select

from cleave.config import SystemConfig, Topology, load_config
from cleave.data.tables import outbox
from cleave.messaging.adapters import create_broker
from cleave.messaging.broker import MemoryBroker
from cleave.runtime import Unit
from tests.conftest import eventually
from tests.integration import toy
from tests.integration.test_brokers import Brokers

ROOT = Path(__file__).resolve().parent.parent
BATCH = 250
PENDING = select(func.count()).where(outbox.c.delivered_at.is_(None))


def toy_config(var: Path, url: str) -> SystemConfig:
    config = load_config(ROOT / "cleave.toml")
    topology = Topology(
        name="bench",
        units={"writer": ("notes",), "counter": ("tally",)},
        broker=url,
        database=f"sqlite+aiosqlite:///{var}/{{service}}.db",
    )
    return replace(
        config,
        services={
            "notes": "tests.integration.toy:notes_service",
            "tally": "tests.integration.toy:tally_service",
        },
        topology=topology,
        topologies={"bench": topology},
    )


async def wait_for(check: Callable[[], Awaitable[bool]], interval: float = 0.01) -> None:
    await eventually(check, within=600, interval=interval)


# Shows how far a measurement is: (phase, events done in it).
Report = Callable[[str, int], None]


async def measure(kind: str, events: int, prefetch: int, report: Report) -> tuple[float, float]:
    brokers = Brokers(kind, f"bench{uuid.uuid4().hex[:8]}")
    shared = MemoryBroker() if kind == "memory" else None
    with tempfile.TemporaryDirectory() as var:
        url = brokers.url if kind == "memory" else f"{brokers.url}&prefetch={prefetch}"
        config = toy_config(Path(var), url)

        def unit(name: str) -> Unit:
            return Unit(config, name, broker=shared or create_broker(url))

        counter = unit("counter")
        await counter.migrate()
        if kind != "memory":  # declare its durable queue/consumer, then let events pile up
            await counter.start()
            await counter.stop()
            counter = unit("counter")
        writer = unit("writer")
        await writer.migrate()
        for start in range(0, events, BATCH):
            async with writer.context("notes").unit_of_work() as uow:
                for index in range(start, min(start + BATCH, events)):
                    await toy.write_note(uow, f"n{index}", f"word{index % 100}")
            report("writing the outbox", min(start + BATCH, events))
        try:
            if kind == "memory":
                await counter.start()  # in-process delivery needs its consumer up
            began = time.perf_counter()
            await writer.start()

            async def relayed() -> bool:
                # Only the pending rows (the partial index): polling must not slow the relay.
                async with writer.context("notes").read() as connection:
                    pending = (await connection.execute(PENDING)).scalar_one()
                report("relaying to the broker", events - pending)
                return pending == 0

            await wait_for(relayed)
            relay_rate = events / (time.perf_counter() - began)

            began = time.perf_counter()
            if kind != "memory":
                await counter.start()

            async def applied() -> bool:
                async with counter.context("tally").read() as connection:
                    total = (
                        await connection.execute(select(func.sum(toy.tallies.c.count)))
                    ).scalar()
                report("consuming through the inbox", int(total or 0))
                return int(total or 0) == events

            await wait_for(applied, 0.05)
            consume_rate = events / (time.perf_counter() - began)
        finally:
            await writer.stop()
            await counter.stop()
            await brokers.delete_everything(["tally"])
    return relay_rate, consume_rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--brokers", default="memory,rabbitmq,nats")
    parser.add_argument("--prefetch", type=int, default=32, help="the consumers' prefetch")
    args = parser.parse_args()
    rows = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()
    ) as progress:
        for kind in args.brokers.split(","):
            task = progress.add_task(kind, total=args.events)

            def report(phase: str, done: int, task: TaskID = task, kind: str = kind) -> None:
                progress.update(task, description=f"{kind}: {phase}", completed=done)

            rows.append((kind, *await measure(kind, args.events, args.prefetch, report)))
            progress.update(task, description=f"{kind}: done")
    print(f"{'broker':<10} {'relay msg/s':>12} {'consumer msg/s':>15}   ({args.events} events)")
    for kind, relay_rate, consume_rate in rows:
        note = "  (delivery is inside the relay's publish)" if kind == "memory" else ""
        print(f"{kind:<10} {relay_rate:>12,.0f} {consume_rate:>15,.0f}{note}")


if __name__ == "__main__":
    asyncio.run(main())
