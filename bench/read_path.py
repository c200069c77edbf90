"""What one product GET costs inside the process: `python -m bench.read_path`.

Drives the monolith's app and the bare FastAPI app straight through ASGI (no sockets, no load
generator), N requests each, and prints the CPU per request of each (process time, the best of
five batches, so other work on a shared machine counts less). Run it under `py-spy record` for a
flame graph of the read path alone, as bench/profiles/ has. The monolith's app serves the console as
`cleave up` does, so each span also reaches the console's store (`--no-console`: without it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any

PRODUCT = "/api/catalog/v1/products/MUG-CLASSIC"


def scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def cpu_per_request(app: Any, path: str, requests: int) -> float:
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(200):
        await app({**scope(path), "state": {}}, receive, send)
    # The best of five batches: on a shared machine, others' work only ever adds to a batch.
    batches = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(requests // 5):
            await app({**scope(path), "state": {}}, receive, send)
        batches.append((time.process_time() - started) / (requests // 5))
    # Every answer counted, not only the warm-up's: a 429 or a 500 is cheaper than the read.
    assert set(statuses) == {200}, sorted(set(statuses))
    return min(batches) * 1e6


async def measure(requests: int, *, console: bool) -> None:
    from bench.baseline import app as bare
    from cleave.config import load_config
    from cleave.runtime import Unit
    from cleave.web.app import create_app

    # The bare app first: once the chassis has set a tracer provider, FastAPI's own telemetry in
    # the bare app would open spans per dependency and serialisation, as it never does alone.
    baseline = await cpu_per_request(bare, "/item", requests)
    unit = Unit(load_config(topology="monolith"))
    await unit.migrate()
    await unit.seed()
    app = create_app(unit, start_unit=False, console=console)
    chassis = await cpu_per_request(app, PRODUCT, requests)
    await unit.stop()
    print(f"product GET through the chassis: {chassis:.0f} µs CPU per request")
    print(f"bare FastAPI JSON GET:           {baseline:.0f} µs CPU per request")
    print(f"ratio (bare / chassis):          {baseline / chassis:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--console", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as var:
        os.environ["CLEAVE_VAR"] = var
        os.environ.setdefault("CLEAVE_LOG_LEVEL", "WARNING")
        # One address sends every request, as wrk does in `make bench` (which turns these off too).
        os.environ["CLEAVE_RATE_LIMIT_PER_ADDRESS"] = "off"
        os.environ["CLEAVE_RATE_LIMIT_PER_PRINCIPAL"] = "off"
        asyncio.run(measure(args.requests, console=args.console))


if __name__ == "__main__":
    main()
