"""`make faults`: every fault class under a paced open-loop order load, then the invariant check.

    python -m bench.faults [--quick] [--only F1,F4]

The shop runs as the `split` topology (and `payments-out` for F7) under the supervisor, with a
fault proxy in front of every unit's gRPC and between every unit and the broker, on a private
PostgreSQL cluster, a private RabbitMQ node and a private nats-server started here on free ports
and removed afterwards: the shared servers are never stopped, restarted or even used. Writes
bench/results/faults.json and faults.svg (faults-quick.* in quick mode); exits 1 if any invariant
is violated in any class.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator

from rich.console import Console
from rich.table import Table

from bench.faults.classes import CLASSES, Context, FaultClass
from bench.faults.invariants import Poison
from bench.faults.run import ClassResult, run_class
from bench.faults.servers import (
    PrivateNats,
    PrivatePostgres,
    PrivateRabbitMQ,
    nats_available,
    postgres_available,
    rabbitmq_available,
)
from bench.faults.system import ROOT, running_system

RESULTS = ROOT / "bench" / "results"
console = Console(highlight=False, soft_wrap=True, width=150)


def table(results: list[ClassResult], title: str) -> Table:
    shown = Table(title=title)
    for column in ("class", "fault", "orders", "refused", "lost", "dup", "stuck", "unexpected"):
        shown.add_column(column)
    shown.add_column("recovery s")
    shown.add_column("")
    for result in results:
        v = result.verdict
        recovery = f"{v.recovery_seconds:.2f}" if v.recovery_seconds is not None else "—"
        shown.add_row(
            result.name,
            result.title,
            str(v.orders),
            str(v.refused),
            str(v.lost),
            str(v.duplicated),
            str(v.stuck),
            str(v.unexpected),
            recovery,
            "[green]pass[/]" if v.passed else "[red]FAIL[/]",
        )
    return shown


def chart(results: list[ClassResult]) -> str:
    """An SVG: per class, the recovery time as a bar, and its orders and failures beside it."""
    height = 50 + 30 * len(results)
    longest = max((r.verdict.recovery_seconds or 0.0 for r in results), default=1.0) or 1.0
    scale = 300 / longest
    rows = []
    for index, result in enumerate(results):
        v, y = result.verdict, 36 + 30 * index
        width = (v.recovery_seconds or 0.0) * scale
        colour = "#1a7f37" if v.passed else "#c62828"
        recovery = f"{v.recovery_seconds:.2f} s" if v.recovery_seconds is not None else "—"
        rows.append(
            f'<text x="8" y="{y + 15}" font-size="12">{result.name}</text>'
            f'<rect x="60" y="{y}" width="{max(width, 1):.1f}" height="20" fill="{colour}"/>'
            f'<text x="{66 + width:.1f}" y="{y + 15}" font-size="12">{recovery} · '
            f"{v.orders} orders · lost {v.lost} · dup {v.duplicated} · stuck {v.stuck}</text>"
        )
    title = "Recovery to the first confirmed order after each fault (green: every invariant held)"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="820" height="{height}" '
        'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
        f'<text x="8" y="20" font-size="14" font-weight="bold">{title}</text>'
        + "".join(rows)
        + "</svg>"
    )


@contextlib.asynccontextmanager
async def started(server: PrivatePostgres | PrivateRabbitMQ | PrivateNats) -> AsyncIterator[None]:
    try:
        await server.start()
        yield
    finally:
        await server.stop()


async def run(chosen: list[FaultClass], *, count: int, rate: float) -> list[ClassResult]:
    missing = [
        name
        for name, available in (
            ("PostgreSQL (initdb/pg_ctl)", postgres_available()),
            ("RabbitMQ", rabbitmq_available()),
            ("nats-server", nats_available()),
        )
        if not available
    ]
    if missing:
        raise SystemExit(f"make faults needs {', '.join(missing)} installed")
    results: list[ClassResult] = []
    postgres, rabbitmq, nats = PrivatePostgres(), PrivateRabbitMQ(), PrivateNats()
    split = [c for c in chosen if c.topology == "split"]
    payments_out = [c for c in chosen if c.topology == "payments-out"]
    async with contextlib.AsyncExitStack() as servers:
        console.print("starting a private PostgreSQL, RabbitMQ and nats-server…")
        await servers.enter_async_context(started(postgres))
        if split:
            await servers.enter_async_context(started(rabbitmq))
        if payments_out:
            await servers.enter_async_context(started(nats))
        for topology, classes, broker in (
            ("split", split, rabbitmq.url),
            ("payments-out", payments_out, nats.url),
        ):
            if not classes:
                continue
            console.print(f"starting the shop as {topology}…")
            async with running_system(
                topology, admin_dsn=postgres.admin_url, broker=broker
            ) as shop:
                poison = Poison()
                for fault in classes:
                    console.print(f"{fault.name}: {fault.title} ({count} orders at {rate:g}/s)…")
                    context = Context(
                        shop,
                        load_seconds=count / rate,
                        postgres=postgres,
                        rabbitmq=rabbitmq if topology == "split" else None,
                        nats=nats if topology == "payments-out" else None,
                        poison=poison,
                    )
                    result = await run_class(fault, context, count=count, rate=rate)
                    poison = context.poison or poison
                    results.append(result)
                    console.print(table([result], f"{fault.name} done"))
                    for line in result.notes + result.verdict.violations[:10]:
                        console.print(f"  {line}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults")
    parser.add_argument("--quick", action="store_true", help="a few hundred orders per class")
    parser.add_argument("--only", help="comma-separated classes, like F1,F4")
    parser.add_argument("--orders", type=int, help="orders per class (1000; 300 with --quick)")
    parser.add_argument("--rate", type=float, default=15.0, help="orders per second")
    arguments = parser.parse_args()
    wanted = set(arguments.only.split(",")) if arguments.only else None
    chosen = [c for c in CLASSES if wanted is None or c.name in wanted]
    count = arguments.orders or (300 if arguments.quick else 1000)
    started_at = time.monotonic()
    results = asyncio.run(run(chosen, count=count, rate=arguments.rate))
    mode = "quick" if arguments.quick else "full"
    console.print(table(results, f"make faults ({mode}: {count} orders per class)"))
    cpu = sum(r.load_cpu_seconds for r in results)
    sent = sum(r.load_seconds for r in results)
    sent_orders = sum(r.verdict.orders + r.verdict.refused for r in results)
    console.print(
        f"load generator: {cpu:.1f} s CPU for {sent_orders} "
        f"orders over {sent:.0f} s ({100 * cpu / max(sent, 1):.1f}% of one core); "
        f"whole run {time.monotonic() - started_at:.0f} s"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "faults-quick" if arguments.quick else "faults"
    report = {
        "mode": mode,
        "orders_per_class": count,
        "rate_per_second": arguments.rate,
        "classes": [r.as_dict() for r in results],
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{stem}.svg").write_text(chart(results))
    console.print(f"wrote {RESULTS / stem}.json and .svg")
    failed = [r.name for r in results if not r.verdict.passed]
    if failed:
        console.print(f"[red]invariants violated in {', '.join(failed)}[/]")
        sys.exit(1)


if __name__ == "__main__":
    main()
