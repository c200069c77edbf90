"""The fault classes F1-F10: each is injected while the paced order load runs, and returns the
moment the fault ended (for the recovery time). Process faults go through the supervisor's
process handles; network faults through the proxies; server restarts to private servers only."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.faults import next_release
from bench.faults.invariants import Poison
from bench.faults.servers import PrivateNats, PrivatePostgres, PrivateRabbitMQ
from bench.faults.system import System, unit_ready
from cleave.events import Envelope
from shop.ordering.contract import OrderConfirmed

CURRENT_ORDERING = "shop.ordering.service:service"


@dataclass
class Context:
    system: System
    load_seconds: float
    postgres: PrivatePostgres | None = None
    rabbitmq: PrivateRabbitMQ | None = None
    nats: PrivateNats | None = None
    poison: Poison | None = None
    notes: list[str] = field(default_factory=list)


Inject = Callable[[Context], Awaitable[float]]


@dataclass(frozen=True)
class FaultClass:
    name: str
    title: str
    topology: str
    inject: Inject
    smoke: bool = False  # process faults and the proxy only: safe on shared servers


async def kill_and_wait(context: Context, unit: str) -> None:
    context.system.supervisor.send_signal(unit, signal.SIGKILL)
    await asyncio.sleep(0.5)  # the supervisor notices the exit before readiness is asked
    await unit_ready(context.system, unit)


# F1 ------------------------------------------------------------------------------------------


async def broker_stopped(context: Context) -> float:
    assert context.rabbitmq is not None
    await asyncio.sleep(context.load_seconds * 0.25)
    await context.rabbitmq.stop_app()
    await asyncio.sleep(10)
    await context.rabbitmq.start_app()
    return time.time()


# F2 ------------------------------------------------------------------------------------------


async def orchestrator_killed_at_each_step(context: Context) -> float:
    """SIGKILL the ordering unit while a saga is inside step 0, then 1, … 4."""
    await asyncio.sleep(2)
    deadline = time.monotonic() + context.load_seconds + 60
    for step in range(5):
        connection = await context.system.connect("ordering")
        try:
            while time.monotonic() < deadline:
                inside = await connection.fetchval(
                    "SELECT id FROM cleave_sagas WHERE status = 'running' AND step = $1 LIMIT 1",
                    step,
                )
                if inside is not None:
                    await kill_and_wait(context, "ordering")
                    context.notes.append(f"killed inside step {step} (saga {inside[:8]})")
                    await asyncio.sleep(3)  # let it work a while, so orders get through too
                    break
                await asyncio.sleep(0.002)
            else:
                context.notes.append(f"no saga seen inside step {step}: not killed there")
        finally:
            await connection.close()
    return time.time()


# F3 ------------------------------------------------------------------------------------------


async def payment_killed(context: Context) -> float:
    """SIGKILL the payment unit mid-load; then once more, frozen while a capture is in flight
    (its `capturing` committed, the processor's answer not yet recorded), or failing that while
    an authorised payment waits for its capture."""
    system = context.system
    await asyncio.sleep(context.load_seconds * 0.2)
    await kill_and_wait(context, "payment")
    context.notes.append("killed mid-load")
    deadline = time.monotonic() + max(context.load_seconds * 0.5, 10)
    connection = await system.connect("payment")
    try:
        caught = None
        while time.monotonic() < deadline and caught is None:
            system.supervisor.send_signal("payment", signal.SIGSTOP)
            caught = await connection.fetchval(
                "SELECT order_id FROM payments WHERE status = 'capturing' LIMIT 1"
            )
            if caught is not None:
                system.supervisor.send_signal("payment", signal.SIGKILL)
                context.notes.append(f"killed between capturing and the answer ({caught[:8]})")
                break
            system.supervisor.send_signal("payment", signal.SIGCONT)
            await asyncio.sleep(0.03)
        if caught is None:
            waiting = await connection.fetchval(
                "SELECT order_id FROM payments WHERE status = 'authorized' LIMIT 1"
            )
            system.supervisor.send_signal("payment", signal.SIGKILL)
            context.notes.append(f"killed between authorise and capture ({waiting})")
    finally:
        await connection.close()
    await asyncio.sleep(0.5)
    await unit_ready(system, "payment")
    return time.time()


# F4 ------------------------------------------------------------------------------------------


async def postgres_restarted(context: Context) -> float:
    assert context.postgres is not None
    await asyncio.sleep(context.load_seconds * 0.3)
    started = time.monotonic()
    await context.postgres.restart()
    context.notes.append(f"restarted with -m immediate in {time.monotonic() - started:.1f} s")
    return time.time()


# F5 ------------------------------------------------------------------------------------------


async def poison_published(context: Context) -> float:
    """Messages no consumer can use, straight into the broker: 5 not JSON at all, 5 valid
    CloudEvents whose data breaks the event's schema."""
    import aio_pika

    assert context.rabbitmq is not None
    await asyncio.sleep(context.load_seconds * 0.3)
    poison = context.poison = Poison()
    event_type = OrderConfirmed.event_type
    connection = await aio_pika.connect(context.rabbitmq.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(f"{context.system.namespace}.events")
        for index in range(5):
            await exchange.publish(
                aio_pika.Message(b"\x00not json " + str(index).encode(), delivery_mode=2),
                routing_key=event_type,
            )
            poison.unreadable += 1
            real = Envelope.of(
                OrderConfirmed(
                    order_id=uuid.uuid4().hex,
                    customer_id="nobody",
                    total={"amount": 1, "currency": "EUR"},  # type: ignore[arg-type]
                ),
                source="/faults/poison",
                trace={},
            )
            broken: dict[str, Any] = json.loads(real.to_json())
            broken["data"] = {"order_id": 42, "total": "lots"}  # the schema says otherwise
            await exchange.publish(
                aio_pika.Message(json.dumps(broken).encode(), delivery_mode=2),
                routing_key=event_type,
            )
            poison.envelope_ids.add(real.id)
    return time.time()


async def parked_in_rabbitmq(context: Context) -> int:
    import aio_pika

    if context.rabbitmq is None:
        return 0
    connection = await aio_pika.connect(context.rabbitmq.url)
    async with connection:
        channel = await connection.channel()
        total = 0
        for service in ("customer",):
            queue = await channel.declare_queue(
                f"{context.system.namespace}.{service}.parked", passive=True
            )
            total += queue.declaration_result.message_count or 0
        return total


# F6 ------------------------------------------------------------------------------------------


async def network_faults(
    context: Context, *, blackhole_seconds: float = 10.0, phase_seconds: float | None = None
) -> float:
    """Latency with jitter, then connection resets, then a blackhole, between ordering and
    payment and between every unit and the broker."""
    proxies = context.system.proxies
    chosen = proxies.matching("payment.grpc", "payments.grpc", "->broker")
    phase = context.load_seconds * 0.2 if phase_seconds is None else phase_seconds
    await asyncio.sleep(phase)
    for proxy in chosen:
        proxy.faults.latency_seconds, proxy.faults.jitter_seconds = 0.03, 0.02
    await asyncio.sleep(phase)
    for proxy in chosen:
        proxy.faults.reset_probability = 0.05
    await asyncio.sleep(phase)
    for proxy in chosen:
        proxy.clear()
        proxy.blackhole(blackhole_seconds)
    await asyncio.sleep(blackhole_seconds)
    for proxy in chosen:
        proxy.clear()
    resets = sum(proxy.resets for proxy in chosen)
    context.notes.append(f"{len(chosen)} proxies; {resets} connections reset")
    return time.time()


# F7 ------------------------------------------------------------------------------------------


async def nats_restarted(context: Context) -> float:
    assert context.nats is not None
    await asyncio.sleep(context.load_seconds * 0.3)
    await context.nats.restart(down_seconds=5)
    return time.time()


# F8 ------------------------------------------------------------------------------------------


async def identity_down(context: Context) -> float:
    """The identity unit killed and kept down for 30 s: every service keeps verifying tokens on
    its cached keys, and a sign-in fails with a clear answer instead of hanging."""
    from cleave.auth.client import authorization_code_token
    from shop.identity.contract import read_credentials

    system = context.system
    await asyncio.sleep(context.load_seconds * 0.2)
    system.supervisor.hold("identity")
    system.supervisor.send_signal("identity", signal.SIGKILL)
    down_at = time.monotonic()
    await asyncio.sleep(2)
    credentials = read_credentials(system.config.var_dir)
    user = credentials["users"]["alice"]
    started = time.monotonic()
    try:
        await asyncio.to_thread(
            authorization_code_token,
            system.config.issuer,
            client_id="cleave-cli",
            redirect_uri=credentials["clients"]["cleave-cli"]["redirect_uri"],
            email=user["email"],
            password=user["password"],
            scopes=["openid"],
        )
        context.notes.append("VIOLATION: a sign-in succeeded while identity was down")
    except Exception as error:
        context.notes.append(
            f"sign-in refused in {time.monotonic() - started:.1f} s: {str(error)[:120]}"
        )
    await asyncio.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
    system.supervisor.release("identity")
    await unit_ready(system, "identity")
    return time.time()


# F9 ------------------------------------------------------------------------------------------


async def catalog_paused(context: Context) -> float:
    await asyncio.sleep(context.load_seconds * 0.3)
    context.system.supervisor.send_signal("catalog", signal.SIGSTOP)
    await asyncio.sleep(8)
    context.system.supervisor.send_signal("catalog", signal.SIGCONT)
    return time.time()


# F10 -----------------------------------------------------------------------------------------


async def ordering_upgraded_and_rolled_back(context: Context) -> float:
    """Replace the ordering unit by its next release mid-load (`.v1` gains a field, `.v2` is
    published beside it), then roll it back; customer stays at the current release throughout."""
    system = context.system
    await asyncio.sleep(context.load_seconds * 0.2)
    await system.deploy("ordering", next_release.IMPORT_PATH)
    context.notes.append("ordering upgraded to its next release")
    await asyncio.sleep(context.load_seconds * 0.4)
    await system.deploy("ordering", CURRENT_ORDERING)
    context.notes.append("ordering rolled back")
    healed_at = time.time()
    connection = await system.connect("ordering")
    try:
        published = await connection.fetch(
            "SELECT type, count(*) AS n, count(*) FILTER (WHERE envelope LIKE '%\"items\"%') "
            "AS with_items FROM cleave_outbox WHERE type LIKE '%order_confirmed%' GROUP BY type"
        )
    finally:
        await connection.close()
    by_type = {row["type"]: row for row in published}
    v1 = by_type.get(OrderConfirmed.event_type)
    v2 = by_type.get(next_release.OrderConfirmedV2.event_type)
    if v1 is None or v2 is None or not v1["with_items"]:
        context.notes.append(
            f"VIOLATION: the next release published none of its events: {published}"
        )
    else:
        context.notes.append(
            f"next release: {v2['n']} order_confirmed.v2 beside .v1, {v1['with_items']} of "
            f"{v1['n']} .v1 with the new field"
        )
    return healed_at


# The smoke version's own: the payments unit killed, and a short blackhole to it -------------


async def smoke_faults(context: Context) -> float:
    await asyncio.sleep(context.load_seconds * 0.2)
    await kill_and_wait(context, "payments")
    context.notes.append("payments unit killed")
    return await network_faults(context, blackhole_seconds=3.0, phase_seconds=1.0)


CLASSES = [
    FaultClass("F1", "RabbitMQ stopped for 10 s mid-stream", "split", broker_stopped),
    FaultClass(
        "F2", "the orchestrator killed inside each saga step", "split",
        orchestrator_killed_at_each_step, smoke=True,
    ),
    FaultClass(
        "F3", "payment killed mid-load and between capturing and the answer", "split",
        payment_killed, smoke=True,
    ),
    FaultClass("F4", "PostgreSQL restarted (-m immediate) under load", "split", postgres_restarted),
    FaultClass("F5", "poison messages: not JSON, schema-breaking", "split", poison_published),
    FaultClass(
        "F6", "latency, resets and a 10 s blackhole: ordering↔payment, units↔broker", "split",
        network_faults, smoke=True,
    ),
    FaultClass("F7", "nats-server restarted (payments-out)", "payments-out", nats_restarted),
    FaultClass("F8", "identity down for 30 s", "split", identity_down, smoke=True),
    FaultClass("F9", "catalog paused (SIGSTOP) for 8 s", "split", catalog_paused, smoke=True),
    FaultClass(
        "F10", "ordering upgraded to its next release mid-load, then rolled back", "split",
        ordering_upgraded_and_rolled_back, smoke=True,
    ),
]  # fmt: skip

SMOKE = FaultClass(
    "smoke", "payments killed, then latency, resets, a 3 s blackhole", "payments-out", smoke_faults
)
