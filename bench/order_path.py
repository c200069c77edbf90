"""What one order costs inside the monolith's process: `python -m bench.order_path`.

Places orders through the ordering handler (the route's own code, minus HTTP) on a fresh
monolith on SQLite with its relay and saga runner running, waits until each is confirmed, and
counts per order: transactions, SQL statements, spans, log records and envelope
(de)serialisations. Each span also reaches the console's store, as under `cleave up`
(`--no-console`: without it). With `--profile FILE` it writes a cProfile of the whole run as well.
Tracing off, for the cost of tracing: `OTEL_TRACES_SAMPLER=always_off python -m bench.order_path`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from sqlalchemy import event, func, select

ROOT = Path(__file__).resolve().parent.parent


class SpanCounter(SpanProcessor):
    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


async def measure(orders: int, concurrency: int, console: bool) -> dict[str, Any]:
    from cleave.config import load_config
    from cleave.events import Envelope
    from cleave.runtime import Unit
    from cleave.serving import collect_garbage_again, hold_garbage_collection
    from cleave.telemetry import LOG_SINKS, configure_logging, configure_tracing
    from cleave.web.console import TraceStore, collect_here
    from shop.ordering import handlers, store
    from shop.ordering.domain import Line

    hold_garbage_collection()
    configure_logging(json_logs=True)
    configure_tracing("cleave-bench")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    spans = SpanCounter()
    provider.add_span_processor(spans)
    if console:
        collect_here(TraceStore())
    counts: Counter[str] = Counter()

    def count_log(_logger: Any, _method: str, event_dict: Any) -> Any:
        counts["log records"] += 1
        return event_dict

    LOG_SINKS.append(count_log)
    to_json, from_json = Envelope.to_json, Envelope.from_json

    def counting_to_json(self: Envelope) -> str:
        counts["envelope serialisations"] += 1
        return to_json(self)

    def counting_from_json(raw: str | bytes) -> Envelope:
        counts["envelope serialisations"] += 1
        return from_json(raw)

    Envelope.to_json = counting_to_json  # type: ignore[method-assign]
    Envelope.from_json = counting_from_json  # type: ignore[method-assign]

    def count_statement(sql: str) -> None:
        # Every statement SQLite runs, on SQLAlchemy's path or on the driver (`Prepared`), and
        # every commit, whether SQLAlchemy's transaction or the writer's own issued it.
        if sql.startswith("COMMIT"):
            counts["transactions"] += 1
        elif not sql.startswith(("BEGIN", "ROLLBACK", "PRAGMA")):
            counts["statements"] += 1

    unit = Unit(load_config(topology="monolith"))
    for context in unit.contexts.values():
        engine = context.database.engine.sync_engine
        event.listen(
            engine, "connect", lambda dbapi, _record: dbapi.set_trace_callback(count_statement)
        )
        event.listen(
            engine,
            "before_cursor_execute",
            lambda *_: counts.update(["statements built by SQLAlchemy"]),
        )
    await unit.migrate()
    await unit.seed()
    catalog = unit.context("catalog")
    async with catalog.unit_of_work() as uow:
        from shop.catalog import store as catalog_store

        await catalog_store.update_product(uow.connection, "STICKER-PACK", {"stock": 10**9})
    ordering = unit.context("ordering")
    await unit.start()
    command = handlers.PlaceOrder(
        customer_id="alice",
        lines=[Line("STICKER-PACK", 1)],
        card_token="tok_approve",
        shipping_address={
            "name": "B",
            "line1": "1 St",
            "city": "X",
            "postal_code": "1",
            "country": "NL",
        },
    )
    customer = await _customer_id(unit)
    command = handlers.PlaceOrder(**{**command.__dict__, "customer_id": customer})
    # As `cleave up` does once it serves: what start-up built is never scanned again.
    collect_garbage_again()
    counts.clear()
    spans.ended = 0
    started = time.perf_counter()
    cpu = time.process_time()
    limiter = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limiter:
            await handlers.place_order(ordering, command)

    await asyncio.gather(*(one() for _ in range(orders)))
    while True:
        async with ordering.read() as connection:
            pending = (
                await connection.execute(
                    select(func.count()).where(store.orders.c.status == "pending")
                )
            ).scalar_one()
        if pending == 0:
            break
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    await unit.stop()
    per_order = {name: round(value / orders, 1) for name, value in sorted(counts.items())}
    per_order["spans"] = round(spans.ended / orders, 1)
    return {
        "orders": orders,
        "seconds": round(elapsed, 3),
        "orders_per_second": round(orders / elapsed, 1),
        "cpu_ms_per_order": round(cpu * 1000 / orders, 2),
        "per_order": per_order,
    }


async def _customer_id(unit: Any) -> str:
    from shop.customer import store as customer_store

    async with unit.context("customer").read() as connection:
        row = (await connection.execute(select(customer_store.customers.c.id).limit(1))).one()
    return str(row.id)


def run(
    orders: int, concurrency: int = 32, profile: str | None = None, *, console: bool = True
) -> dict[str, Any]:
    """One measurement in a fresh var directory of its own."""
    with tempfile.TemporaryDirectory() as var:
        os.environ["CLEAVE_VAR"] = var
        os.environ.setdefault("CLEAVE_LOG_LEVEL", "WARNING")
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        result = asyncio.run(measure(orders, concurrency, console))
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(profile)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", help="write a cProfile of the run here")
    parser.add_argument("--console", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    print(
        json.dumps(run(args.orders, args.concurrency, args.profile, console=args.console), indent=2)
    )


if __name__ == "__main__":
    main()
