"""`make bench`: every figure of the performance targets, each a ratio or a count from one run.

    python -m bench [--quick] [--repeats N]

Every figure is measured against a baseline in the same run (the machine is shared, so absolute
numbers drift; ratios hold): a bare FastAPI app for reads and start-up, the unit itself for the
gateway, raw aio-pika publishing for the relay, the monolith for the split's CPU, tracing off for
tracing on. Reads are driven by wrk, orders by `bench.loadgen` (open loop: a fixed arrival rate,
latency from the intended send time). Writes bench/results/<date>.json, the table in
bench/README.md and the charts bench/results/{throughput,latency,cpu}.svg. The storefront's
home, search and product pages are timed against the bare GET too (`bench/storefront.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import time
import uuid
from dataclasses import asdict
from typing import Any

from bench import charts
from bench.system import (
    ROOT,
    OrderRun,
    baseline,
    monolith,
    pg_commits,
    prepare_orders,
    require_wrk,
    rss_mb,
    run_orders,
    split,
    wrk,
)

RESULTS = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"
PRODUCT = "/api/catalog/v1/products/MUG-CLASSIC"
SATURATION_RATE = 400.0  # orders/s offered: above what either topology carries


class Figures:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def add(
        self, name: str, target: str, values: list[float], *, baseline: str, unit: str, ok: Any
    ) -> None:
        self.rows[name] = {
            "target": target,
            "baseline": baseline,
            "unit": unit,
            "min": min(values),
            "median": statistics.median(values),
            "max": max(values),
            "values": values,
            "meets_target": bool(ok(statistics.median(values))),
        }
        print(f"  {name}: median {statistics.median(values):.3g} {unit}  (target {target})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, one repeat (< 2 min)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    require_wrk()
    repeats = args.repeats or (1 if args.quick else 3)
    read_seconds = 2 if args.quick else 5
    burst = 120 if args.quick else 500  # orders offered at saturation, per repeat
    latency_seconds = 2.0 if args.quick else 8.0
    latency_rates = [50.0] if args.quick else [10.0, 25.0, 50.0, 100.0]
    started = time.perf_counter()
    figures = Figures()
    runs: dict[str, Any] = {"repeats": repeats, "quick": args.quick}

    print("bare FastAPI baseline…", flush=True)
    with baseline() as bare:
        base_start, base_rss = bare.started_seconds, rss_mb(bare.process.pid)
        bare_rates = [wrk(f"{bare.base}/item", read_seconds)[0] for _ in range(repeats)]

    print("monolith (make up)…", flush=True)
    with monolith() as mono:
        mono_start, mono_rss = mono.started_seconds, rss_mb(mono.process.pid)
        read_rates = [wrk(f"{mono.base}{PRODUCT}", read_seconds)[0] for _ in range(repeats)]
        token = prepare_orders(mono)
        mono_saturation = [
            run_orders(mono, token, SATURATION_RATE, burst / SATURATION_RATE)
            for _ in range(repeats)
        ]
        mono_latency = {
            rate: run_orders(mono, token, rate, latency_seconds) for rate in latency_rates
        }

    print("monolith with tracing off…", flush=True)
    with monolith({"OTEL_TRACES_SAMPLER": "always_off"}) as untraced:
        token = prepare_orders(untraced)
        untraced_saturation = [
            run_orders(untraced, token, SATURATION_RATE, burst / SATURATION_RATE)
            for _ in range(repeats)
        ]

    print("split on PostgreSQL + RabbitMQ…", flush=True)
    with split() as spl:
        catalog_direct = f"http://127.0.0.1:{spl.unit_ports['catalog']}{PRODUCT}"
        direct_rates, gateway_rates = [], []
        for _ in range(repeats):
            direct_rates.append(wrk(catalog_direct, read_seconds)[0])
            gateway_rates.append(wrk(f"{spl.base}{PRODUCT}", read_seconds)[0])
        token = prepare_orders(spl)
        commits_before = asyncio.run(pg_commits(spl.databases))
        split_saturation = [
            run_orders(spl, token, SATURATION_RATE, burst / SATURATION_RATE) for _ in range(repeats)
        ]
        split_commits = asyncio.run(pg_commits(spl.databases)) - commits_before
        split_latency = {
            rate: run_orders(spl, token, rate, latency_seconds) for rate in latency_rates
        }

    print("outbox relay vs raw aio-pika…", flush=True)
    events = 1000 if args.quick else 5000
    relay_rates, raw_rates = [], []
    for _ in range(repeats):
        raw_rates.append(asyncio.run(raw_publish_rate(events)))
        relay_rates.append(asyncio.run(relay_rate(events)))

    print("what one order costs in the monolith's process…", flush=True)
    from bench.order_path import run as order_path

    counts = order_path(100 if args.quick else 300)

    # The figures, as the table names them.
    figures.add(
        "catalog GET vs bare FastAPI GET",
        "≥ 0.35×",
        [r / b for r, b in zip(read_rates, bare_rates, strict=True)],
        baseline=f"bare FastAPI {statistics.median(bare_rates):,.0f} req/s",
        unit="×",
        ok=lambda v: v >= 0.35,
    )
    figures.add(
        "the same GET through the split gateway vs straight to the unit",
        "≥ 0.7×",
        [g / d for g, d in zip(gateway_rates, direct_rates, strict=True)],
        baseline=f"catalog unit {statistics.median(direct_rates):,.0f} req/s",
        unit="×",
        ok=lambda v: v >= 0.7,
    )
    figures.add(
        "monolith: orders confirmed per second at saturation",
        "≥ 200/s",
        [run.throughput for run in mono_saturation],
        baseline=f"{SATURATION_RATE:.0f}/s offered",
        unit="orders/s",
        ok=lambda v: v >= 200,
    )
    figures.add(
        "monolith: server CPU per order",
        "≤ 5 ms",
        [run.cpu_ms_per_order["cleave processes"] for run in mono_saturation],
        baseline="at saturation",
        unit="ms",
        ok=lambda v: v <= 5,
    )
    figures.add(
        "split: orders confirmed per second at saturation",
        "≥ 150/s",
        [run.throughput for run in split_saturation],
        baseline=f"{SATURATION_RATE:.0f}/s offered",
        unit="orders/s",
        ok=lambda v: v >= 150,
    )
    mono_cpu = statistics.median(r.cpu_ms_per_order["cleave processes"] for r in mono_saturation)
    figures.add(
        "split: CPU per order (units, gateway, PostgreSQL) vs the monolith's",
        "≤ 2×",
        [_split_cpu(run) / mono_cpu for run in split_saturation],
        baseline=f"monolith {mono_cpu:.1f} ms per order",
        unit="×",
        ok=lambda v: v <= 2,
    )
    for topology, latency, limits in (
        ("monolith", mono_latency, (10, 50)),
        ("split", split_latency, (30, 150)),
    ):
        run = latency[50.0]
        figures.add(
            f"{topology}: POST → confirmed p50 at 50 orders/s",
            f"≤ {limits[0]} ms",
            [run.p50_ms],
            baseline="open loop, from the intended send",
            unit="ms",
            ok=lambda v, limit=limits[0]: v <= limit,
        )
        figures.add(
            f"{topology}: POST → confirmed p99 at 50 orders/s",
            f"≤ {limits[1]} ms",
            [run.p99_ms],
            baseline="open loop, from the intended send",
            unit="ms",
            ok=lambda v, limit=limits[1]: v <= limit,
        )
    figures.add(
        "outbox relay events/s vs raw aio-pika, pipelined confirms",
        "≥ 0.5×",
        [r / w for r, w in zip(relay_rates, raw_rates, strict=True)],
        baseline=f"aio-pika {statistics.median(raw_rates):,.0f} msg/s",
        unit="×",
        ok=lambda v: v >= 0.5,
    )
    figures.add(
        "tracing at 100 % vs tracing off, orders/s (monolith)",
        "≥ 0.9×",
        [
            traced.throughput / untraced.throughput
            for traced, untraced in zip(mono_saturation, untraced_saturation, strict=True)
        ],
        baseline=f"off: {statistics.median(r.throughput for r in untraced_saturation):.0f}/s",
        unit="×",
        ok=lambda v: v >= 0.9,
    )
    figures.add(
        "cleave up cold start to /readyz (monolith)",
        "≤ 2 s",
        [mono_start],
        baseline=f"bare uvicorn {base_start:.2f} s",
        unit="s",
        ok=lambda v: v <= 2,
    )
    figures.add(
        "resident memory when ready (monolith)",
        "≤ 150 MB",
        [mono_rss],
        baseline=f"bare uvicorn {base_rss:.0f} MB",
        unit="MB",
        ok=lambda v: v <= 150,
    )
    split_orders = sum(run.confirmed for run in split_saturation) or 1
    counts["split"] = {
        "PostgreSQL transactions (all services)": round(split_commits / split_orders, 1)
    }
    from bench import storefront

    print("timing the storefront's pages against a bare GET…", flush=True)
    pages = storefront.measure()
    for name, page in pages.items():
        figures.add(
            f"storefront {name} (monolith), median",
            "≤ 20 ms",
            [page["value"]],
            baseline=f"bare GET {page['baseline']:.2f} ms ({page['ratio']:.1f}×)",
            unit="ms",
            ok=lambda v: v <= 20,
        )
    from bench import cold_start

    print("a unit's cold start as a Lambda function…", flush=True)
    lambda_start = cold_start.measure(repeats)
    bare_cold = lambda_start["medians"]["baseline"]["cold"]
    figures.add(
        "Lambda cold start, import + first response (monolith)",
        "≤ 5× bare",
        lambda_start["ratios"],
        baseline=f"bare Mangum + FastAPI {bare_cold:.2f} s",
        unit="×",
        ok=lambda v: v <= 5,
    )
    runs.update(
        lambda_cold_start=lambda_start,
        monolith_saturation=[asdict(r) for r in mono_saturation],
        untraced_saturation=[asdict(r) for r in untraced_saturation],
        split_saturation=[asdict(r) for r in split_saturation],
        monolith_latency={str(k): asdict(v) for k, v in mono_latency.items()},
        split_latency={str(k): asdict(v) for k, v in split_latency.items()},
        reads={
            "bare": bare_rates,
            "monolith": read_rates,
            "unit": direct_rates,
            "gateway": gateway_rates,
        },
        relay={"relay": relay_rates, "aio-pika": raw_rates, "events": events},
        per_order=counts,
    )
    write(figures, runs, time.perf_counter() - started, mono_latency, split_latency)


def _split_cpu(run: OrderRun) -> float:
    return run.cpu_ms_per_order["cleave processes"] + run.cpu_ms_per_order.get("postgresql", 0.0)


async def raw_publish_rate(events: int) -> float:
    """The limit: aio-pika publishing 1 KB persistent messages, 256 confirms in flight."""
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(exchange, routing_key="#")
        body = b"x" * 1024
        limiter = asyncio.Semaphore(256)

        async def one(index: int) -> None:
            async with limiter:
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=f"bench.{index % 10}",
                )

        began = time.perf_counter()
        await asyncio.gather(*(one(index) for index in range(events)))
        rate = events / (time.perf_counter() - began)
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
        return rate
    finally:
        await connection.close()


async def relay_rate(events: int) -> float:
    from bench.relay_throughput import measure

    relayed, _consumed = await measure("rabbitmq", events, 256, lambda _phase, _done: None)
    return relayed


def write(
    figures: Figures,
    runs: dict[str, Any],
    seconds: float,
    mono_latency: dict[float, OrderRun],
    split_latency: dict[float, OrderRun],
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC)
    result = {
        "when": stamp.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "figures": figures.rows,
        "runs": runs,
    }
    path = RESULTS / f"{stamp:%Y-%m-%d}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    charts.write_all(RESULTS, runs, mono_latency, split_latency)
    table = _table(figures, runs, stamp, seconds)
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    start, end = "<!-- results -->", "<!-- /results -->"
    if start in text and end in text:
        text = (
            text[: text.index(start)]
            + start
            + "\n"
            + table
            + end
            + text[text.index(end) + len(end) :]
        )
    else:
        text += f"\n{start}\n{table}{end}\n"
    README.write_text(text)
    print(f"written: {path}, bench/README.md, charts in bench/results/ ({seconds:.0f} s)")


def _table(figures: Figures, runs: dict[str, Any], stamp: dt.datetime, seconds: float) -> str:
    mode = "quick" if runs["quick"] else "full"
    lines = [
        f"Run of {stamp:%Y-%m-%d %H:%M} UTC ({mode}, {runs['repeats']} repeat(s), "
        f"{seconds:.0f} s); `bench/results/{stamp:%Y-%m-%d}.json` has every value.",
        "",
        "| figure | target | baseline (same run) | min | median | max | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in figures.rows.items():
        unit = row["unit"]
        cells = [f"{row[k]:.3g} {unit}" for k in ("min", "median", "max")]
        met = "yes" if row["meets_target"] else "**no**"
        lines.append(
            f"| {name} | {row['target']} | {row['baseline']} | " + " | ".join(cells) + f" | {met} |"
        )
    lines += ["", "Per order, in the monolith's process (`python -m bench.order_path`):", ""]
    lines += ["| count | per order |", "|---|---|"]
    for name, value in runs["per_order"]["per_order"].items():
        lines.append(f"| {name} | {value} |")
    for name, value in runs["per_order"]["split"].items():
        lines.append(f"| split: {name} | {value} |")
    lines += [
        "",
        "![throughput](results/throughput.svg) ![latency](results/latency.svg) "
        "![cpu](results/cpu.svg)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
