"""The fault proxy on real sockets: it forwards both ways, delays by its latency, holds traffic
in a blackhole and delivers it when it heals, and resets connections with an RST."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from cleave.faults.proxy import Proxy


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxied = Proxy("echo", "127.0.0.1", server.sockets[0].getsockname()[1])
    await proxied.start()
    try:
        yield proxied
    finally:
        await proxied.stop()
        server.close()


async def round_trip(proxy: Proxy, payload: bytes = b"ping") -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    started = time.monotonic()
    writer.write(payload)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readexactly(len(payload)), 10)
    elapsed = time.monotonic() - started
    writer.close()
    return answer, elapsed


async def test_it_forwards_and_adds_its_latency(proxy: Proxy) -> None:
    assert (await round_trip(proxy))[0] == b"ping"
    proxy.faults.latency_seconds = 0.1
    answer, elapsed = await round_trip(proxy)
    assert answer == b"ping"
    assert elapsed >= 0.2  # each way


async def test_a_blackhole_holds_traffic_and_delivers_it_when_it_heals(proxy: Proxy) -> None:
    proxy.blackhole(0.5)
    answer, elapsed = await round_trip(proxy)
    assert answer == b"ping"
    assert elapsed >= 0.4
    assert not proxy.faults.blackholed


async def test_a_reset_aborts_the_connection(proxy: Proxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"hello")
    assert await reader.readexactly(5) == b"hello"
    assert proxy.reset_all() == 1
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    proxy.faults.reset_probability = 1.0
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"x")
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    assert proxy.resets == 2
