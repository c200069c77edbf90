"""Run the benchmarks and write bench/results/latest.{json,svg}.

Measured, each against a baseline in the same run (absolute numbers drift between machines):
- start-up: `cleave up` (migrations, seed, every service) until /readyz answers, against a bare
  FastAPI app under uvicorn; and the resident memory of each once ready;
- read throughput: GET one product through the whole chassis (auth-free route, metrics
  middleware, tracing, SQLite read) against the bare app's JSON GET, both driven by wrk;
- orders: orders placed and carried to a terminal state per second (HTTP in, the saga's five
  steps over three services, outbox and inbox), expressed also in "baseline GETs per order";
- the storefront's home, search and product pages: median server time against the bare GET's
  (`bench/storefront.py`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


@contextmanager
def server(
    command: list[str], port: int, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"benchmark server exited: {' '.join(command)}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.01)
        yield process, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=15)


def wrk(url: str, seconds: int = 5, connections: int = 32) -> float:
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


async def orders_per_second(base: str, token: str, count: int = 200, in_flight: int = 16) -> float:
    body = {
        "lines": [{"sku": "STICKER-PACK", "quantity": 1}],
        "card_token": "tok_approve",
        "shipping_address": {
            "name": "B",
            "line1": "1 St",
            "city": "X",
            "postal_code": "1",
            "country": "NL",
        },
    }
    headers = {"Authorization": f"Bearer {token}"}
    limiter = asyncio.Semaphore(in_flight)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:

        async def one() -> str:
            async with limiter:
                placed = await client.post("/api/ordering/v1/orders", json=body)
                placed.raise_for_status()
                order = f"/api/ordering/v1/orders/{placed.json()['id']}"
                # A client polls as an app would, every 50 ms, not in a spin.
                while (await client.get(order)).json()["status"] == "pending":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                return order

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        return count / (time.perf_counter() - started)


def chart(results: dict[str, dict[str, Any]]) -> str:
    """A small SVG: each measurement as a bar of its ratio to the baseline."""
    rows = [(name, values["ratio"], values["label"]) for name, values in results.items()]
    height = 40 + 34 * len(rows)
    scale = 360 / max(max(ratio for _, ratio, _ in rows), 1.0)
    bars = []
    for index, (name, ratio, label) in enumerate(rows):
        y = 30 + 34 * index
        bars.append(
            f'<text x="8" y="{y + 16}" font-size="12">{name}</text>'
            f'<rect x="200" y="{y}" width="{ratio * scale:.1f}" height="22" fill="#4a7bd0"/>'
            f'<text x="{206 + ratio * scale:.1f}" y="{y + 16}" font-size="12">{label}</text>'
        )
    baseline_x = 200 + scale
    title = "Cleave vs a bare FastAPI app (ratio; 1 = baseline)"
    return "".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}"',
            ' font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>',
            f'<text x="8" y="18" font-size="14" font-weight="bold">{title}</text>',
            *bars,
            f'<line x1="{baseline_x:.1f}" y1="26" x2="{baseline_x:.1f}" y2="{height - 6}"',
            ' stroke="#d04a4a" stroke-dasharray="4"/></svg>',
        ]
    )


def main() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CLEAVE_", "OTEL_"))}
    python = sys.executable
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as var:
        env = {**environment, "CLEAVE_VAR": var, "CLEAVE_LOG_LEVEL": "WARNING"}
        base_port, cleave_port = free_port(), free_port()
        baseline_command = [
            python,
            "-m",
            "uvicorn",
            "bench.baseline:app",
            "--port",
            str(base_port),
            "--no-access-log",
        ]
        print("measuring start-up and memory…", flush=True)
        with server(baseline_command, base_port, env) as (baseline, baseline_start):
            baseline_rss = rss_mb(baseline.pid)
            print("measuring the baseline's GET rate (wrk, 5 s)…", flush=True)
            baseline_rate = wrk(f"http://127.0.0.1:{base_port}/item")
        with server(
            [python, "-m", "cleave", "up", "--port", str(cleave_port)], cleave_port, env
        ) as (unit, start):
            ready_rss = rss_mb(unit.pid)
            print("measuring a product GET through the chassis (wrk, 5 s)…", flush=True)
            product_rate = wrk(
                f"http://127.0.0.1:{cleave_port}/api/catalog/v1/products/MUG-CLASSIC"
            )
            token = subprocess.run(
                [python, "-m", "cleave", "token", "--customer", "alice"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            print("placing 200 orders, 16 in flight…", flush=True)
            orders = asyncio.run(orders_per_second(f"http://127.0.0.1:{cleave_port}", token))
            loaded_rss = rss_mb(unit.pid)
    results["start-up time"] = {
        "value": start,
        "baseline": baseline_start,
        "ratio": start / baseline_start,
        "label": f"{start:.2f} s vs {baseline_start:.2f} s",
    }
    results["memory when ready"] = {
        "value": ready_rss,
        "baseline": baseline_rss,
        "ratio": ready_rss / baseline_rss,
        "label": f"{ready_rss:.0f} MB vs {baseline_rss:.0f} MB",
    }
    results["memory after orders"] = {
        "value": loaded_rss,
        "baseline": baseline_rss,
        "ratio": loaded_rss / baseline_rss,
        "label": f"{loaded_rss:.0f} MB",
    }
    results["product GET rate"] = {
        "value": product_rate,
        "baseline": baseline_rate,
        "ratio": product_rate / baseline_rate,
        "label": f"{product_rate:.0f}/s vs {baseline_rate:.0f}/s",
    }
    results["orders completed rate"] = {
        "value": orders,
        "baseline": baseline_rate,
        "ratio": orders / baseline_rate,
        "label": f"{orders:.0f} orders/s = {baseline_rate / orders:.0f} baseline GETs each",
    }
    from bench import storefront

    print("timing the storefront's pages against a bare GET…", flush=True)
    results.update(storefront.measure())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "latest.svg").write_text(chart(results))
    width = max(len(name) for name in results)
    for name, values in results.items():
        print(f"{name:<{width}}  ratio {values['ratio']:6.3f}   {values['label']}")
    print(f"written: {RESULTS / 'latest.json'} and latest.svg")


if __name__ == "__main__":
    main()
