"""A small TCP proxy that injects faults: latency and jitter, connection resets, a blackhole for
N seconds, and a bandwidth limit. Put between units (their gRPC) and between units and their
servers (PostgreSQL, RabbitMQ, NATS), it makes the network misbehave on purpose.

A blackhole behaves like a network that drops every packet for a while: nothing is delivered in
either direction and new connections hang, then everything held is delivered when it heals (as
TCP's retransmissions would) unless a side gave up meanwhile. A reset aborts both sides at once
with an RST, as a middlebox or a crashed peer would. Latency delays each chunk without holding
back the next one, so a busy stream keeps its throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

CHUNK = 65536


@dataclass
class Faults:
    """What the proxy does to the traffic now. Change the fields at any time."""

    latency_seconds: float = 0.0
    jitter_seconds: float = 0.0
    reset_probability: float = 0.0  # per chunk forwarded
    bytes_per_second: float | None = None
    blackhole_until: float = 0.0  # time.monotonic() at which a blackhole heals

    @property
    def blackholed(self) -> bool:
        return time.monotonic() < self.blackhole_until

    def delay(self) -> float:
        return max(0.0, self.latency_seconds + random.uniform(-1, 1) * self.jitter_seconds)


class _Link:
    """One proxied connection: the client's side and the server's side."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None:
                _abort(writer)
        for task in self.tasks:
            task.cancel()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN: SO_LINGER on with a zero timeout."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Proxy:
    """Listens on `listen_port` (0: a free one) and forwards to `target_host:target_port`."""

    def __init__(
        self,
        name: str,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.name = name
        self.target = (target_host, target_port)
        self.listen = (listen_host, listen_port)
        self.faults = Faults()
        self.connections = 0
        self.resets = 0
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> str:
        return f"{self.listen[0]}:{self.port}"

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, *self.listen)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.reset_all(count=False)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def clear(self) -> None:
        """No more faults; a blackhole heals now."""
        self.faults = Faults()

    def blackhole(self, seconds: float) -> None:
        self.faults.blackhole_until = time.monotonic() + seconds

    def reset_all(self, *, count: bool = True) -> int:
        """Abort every open connection now; returns how many."""
        links = list(self._links)
        for link in links:
            link.reset()
        if count:
            self.resets += len(links)
        return len(links)

    async def _until_healed(self) -> None:
        # Polled rather than signalled: a blackhole may be lengthened or cleared at any time.
        while self.faults.blackholed:  # noqa: ASYNC110
            await asyncio.sleep(min(0.05, self.faults.blackhole_until - time.monotonic()))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self._links.add(link)
        self.connections += 1
        try:
            await self._until_healed()  # a connection attempt into a blackhole just hangs
            try:
                upstream_reader, upstream = await asyncio.open_connection(*self.target)
            except OSError:
                _abort(writer)  # nothing listens there: the client sees its connection refused
                return
            link.server = upstream
            link.tasks = [
                asyncio.create_task(self._pipe(reader, upstream, link)),
                asyncio.create_task(self._pipe(upstream_reader, writer, link)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            for side in (writer, link.server):
                if side is not None and not side.is_closing():
                    side.close()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Read chunks as they come; deliver each once its latency has passed, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        delivering = asyncio.create_task(self._deliver(queue, sink, link))
        try:
            while True:
                data = await source.read(CHUNK)
                if not data:
                    break
                if random.random() < self.faults.reset_probability:
                    self.resets += 1
                    link.reset()
                    return
                queue.put_nowait((time.monotonic() + self.faults.delay(), data))
            queue.put_nowait((time.monotonic(), b""))  # end of stream, after what came before
            await delivering
        except (ConnectionError, OSError):
            link.reset()
        finally:
            delivering.cancel()

    async def _deliver(
        self, queue: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while True:
                due, data = await queue.get()
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                await self._until_healed()
                if not data:
                    if sink.can_write_eof():
                        sink.write_eof()
                    return
                sink.write(data)
                await sink.drain()
                if self.faults.bytes_per_second:
                    await asyncio.sleep(len(data) / self.faults.bytes_per_second)
        except (ConnectionError, OSError):
            link.reset()


class Proxies:
    """A set of named proxies, started and stopped together."""

    def __init__(self) -> None:
        self.by_name: dict[str, Proxy] = {}

    def __getitem__(self, name: str) -> Proxy:
        return self.by_name[name]

    def __iter__(self) -> Iterator[Proxy]:
        return iter(self.by_name.values())

    async def add(self, name: str, target_host: str, target_port: int) -> Proxy:
        proxy = Proxy(name, target_host, target_port)
        await proxy.start()
        self.by_name[name] = proxy
        return proxy

    def matching(self, *fragments: str) -> list[Proxy]:
        return [p for p in self if any(fragment in p.name for fragment in fragments)]

    def clear(self) -> None:
        for proxy in self:
            proxy.clear()

    async def stop(self) -> None:
        for proxy in self:
            await proxy.stop()
        self.by_name.clear()


async def serve_control(proxies: Proxies, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """A line protocol to change faults by hand (`nc HOST PORT`): `list`, or `NAME|* latency S
    [JITTER]`, `NAME|* resets P`, `NAME|* blackhole S`, `NAME|* bandwidth BYTES_PER_S`,
    `NAME|* reset-now`, `NAME|* clear`. Each line is answered with one line."""

    def apply(line: str) -> str:
        words = line.split()
        if words == ["list"]:
            return "; ".join(f"{p.name} :{p.port} -> {p.target[0]}:{p.target[1]}" for p in proxies)
        if len(words) < 2:
            return "error: NAME|* COMMAND [VALUE...]"
        name, command, values = words[0], words[1], [float(v) for v in words[2:]]
        chosen = list(proxies) if name == "*" else [p for p in proxies if p.name == name]
        if not chosen:
            return f"error: no proxy {name!r}"
        for proxy in chosen:
            if command == "latency":
                proxy.faults.latency_seconds = values[0]
                proxy.faults.jitter_seconds = values[1] if len(values) > 1 else 0.0
            elif command == "resets":
                proxy.faults.reset_probability = values[0]
            elif command == "blackhole":
                proxy.blackhole(values[0])
            elif command == "bandwidth":
                proxy.faults.bytes_per_second = values[0] or None
            elif command == "reset-now":
                proxy.reset_all()
            elif command == "clear":
                proxy.clear()
            else:
                return f"error: unknown command {command!r}"
        return f"ok: {command} on {', '.join(p.name for p in chosen)}"

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := (await reader.readline()).decode(errors="replace").strip():
                try:
                    answer = apply(line)
                except (ValueError, IndexError):
                    answer = "error: a number was expected"
                writer.write(answer.encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(session, host, port)
