"""One port call, local vs over gRPC to another process: `python -m bench.rpc_latency`.

The port is the real CatalogPort contract with an in-memory implementation, so the figures are
the chassis's cost (conversion, gRPC, retries bookkeeping, breaker), not a database's.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import uvloop

from cleave.auth.tokens import DevIssuer, TokenVerifier
from cleave.auth.units import UNIT_SCOPE, UnitTokens, unit_client_id
from cleave.rpc.client import remote_port
from cleave.rpc.contract import RpcContract
from cleave.rpc.server import AUTHORIZATION_KEY, RpcServer, ServedPort
from shop.catalog.contract import CatalogPort, OrderLine, PricedLine, catalog_pb2

LINES = [OrderLine(sku=f"SKU-{n}", quantity=n + 1) for n in range(3)]
CALLS = 3000


class InMemoryCatalog:
    async def price_lines(self, lines: list[OrderLine]) -> list[PricedLine]:
        return [
            PricedLine(
                sku=line.sku, name=line.sku, quantity=line.quantity, unit_price=999, currency="EUR"
            )
            for line in lines
        ]

    async def reserve_stock(self, order_id: str, lines: list[OrderLine]) -> None: ...

    async def release_stock(self, order_id: str) -> None: ...

    async def commit_stock(self, order_id: str) -> None: ...


CALLER = unit_client_id("bench")


def issuer(keys: Path) -> DevIssuer:
    """Both processes verify and sign with one development key: the calls are authenticated."""
    return DevIssuer.load_or_create(keys, "urn:cleave:bench", "cleave")


async def serve(keys: Path) -> None:
    dev = issuer(keys)
    server = RpcServer(
        "127.0.0.1:0",
        [
            ServedPort(
                "catalog",
                RpcContract.of(CatalogPort, catalog_pb2),
                InMemoryCatalog(),
                callers=frozenset({CALLER}),
            )
        ],
        verifier=TokenVerifier(dev.issuer, dev.audience, dev),
    )
    port = await server.start()
    print(port, flush=True)  # the one line that is only digits: the client reads it
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
    await server.stop(grace=0.1)


async def timed(call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    for _ in range(200):
        await call()
    samples = []
    cpu = time.process_time()
    for _ in range(CALLS):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    cpu_per_call = (time.process_time() - cpu) / CALLS
    return statistics.median(samples) * 1e6, cpu_per_call * 1e6


async def measure(port: int, keys: Path) -> None:
    local = InMemoryCatalog()
    token = issuer(keys).issue(CALLER, [UNIT_SCOPE], client_id=CALLER)

    async def fetch() -> tuple[str, float]:
        return token, 3600.0

    remote = remote_port(
        CatalogPort,
        f"127.0.0.1:{port}",
        catalog_pb2,
        service="catalog",
        tokens=UnitTokens(CALLER, fetch),
    )
    method = RpcContract.of(CatalogPort, catalog_pb2).methods["price_lines"]

    async def codec() -> object:
        arguments = method.decode_call(method.encode_call((LINES,), {}), "catalog")
        result = await local.price_lines(**arguments)
        return method.decode_result(method.encode_result(result))

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    raw: Any = channel.unary_unary(method.path)
    payload = method.encode_call((LINES,), {})

    print(f"CatalogPort.price_lines, 3 lines, {CALLS} calls one at a time (p50 wall / client CPU)")
    for name, call in (
        ("local call", lambda: local.price_lines(LINES)),
        ("conversion only (both sides)", codec),
        (
            "raw gRPC, pre-encoded request",
            lambda: raw(payload, metadata=((AUTHORIZATION_KEY, f"Bearer {token}"),)),
        ),
        ("remote port, another process", lambda: remote.price_lines(LINES)),
    ):
        wall, cpu = await timed(call)
        print(f"  {name:30} {wall:8.1f} µs   {cpu:8.1f} µs CPU")
    await remote.close()  # type: ignore[attr-defined]
    await channel.close()


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        uvloop.run(serve(Path(sys.argv[2])))
        return
    keys = Path(tempfile.mkdtemp(prefix="cleave-bench-"))
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.rpc_latency", "--serve", str(keys)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = next(int(line) for line in server.stdout if line.strip().isdigit())
        uvloop.run(measure(port, keys))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)
        shutil.rmtree(keys, ignore_errors=True)


if __name__ == "__main__":
    main()
