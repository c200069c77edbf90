"""The gateway's hop to a unit: keep-alive HTTP/1.1 connections, parsed by httptools.

A general client (httpx: httpcore, anyio, h11) spent over a millisecond of the gateway's CPU per
proxied request, several times what the unit behind it spent answering. A reverse proxy needs
much less: one origin per unit, one request at a time per connection, bodies passed on as they
come. So this is that and no more: an asyncio protocol per connection, the C parser uvicorn
itself uses (llhttp, through httptools), idle connections kept per origin for the next request
(as many as were ever in use at once, so 32 clients never open and close connections), and
nothing of one request kept for the next (no cookies, no redirects, no retries of a request that
may have reached the unit).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

RawHeaders = list[tuple[bytes, bytes]]

# A unit's uvicorn drops a keep-alive connection idle for 5 s: give it up before it does.
IDLE_SECONDS = 4.0
# Stop reading from a unit once this much of its answer waits for a slow client.
BUFFERED_BYTES = 256 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamError(Exception):
    """The unit could not be reached, or broke off, or did not answer in time."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made."""


class UpstreamTimeout(UpstreamError):
    """No connection, or no next part of the answer, within the timeout."""


class UpstreamBrokeOff(UpstreamError):
    """The connection ended or carried something that is not HTTP before the answer was whole."""


class _Connection(asyncio.Protocol):
    """One connection to a unit, carrying one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable = True
        self._begin()

    def _begin(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: RawHeaders = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.received_any = False
        self.no_body = False
        # False while the request's body is not all sent: a connection the unit answered before
        # that (a refusal) still owes it the rest, and would garble the next request.
        self.request_sent = True
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, though they are one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self.complete:  # nothing is due on an idle connection: it is not one to reuse
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamBrokeOff(f"not HTTP: {error}"))
            self.close()
            return
        if self.no_body and self.head_done:
            self.complete = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(UpstreamBrokeOff("the connection ended before the answer was whole"))
        self._wake()

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True
        if self.no_body or self.status in _NO_BODY_STATUSES or self.status < 200:
            self.no_body = True

    def on_body(self, body: bytes) -> None:
        if self.no_body:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > BUFFERED_BYTES and self.transport is not None:
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True

    # the exchange
    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, within: float) -> None:
        """Until something happens on the connection (data, its end, room to write)."""
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(within, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._error is not None:
            raise self._error

    async def send(self, data: bytes, within: float) -> None:
        if self._error is not None:
            raise self._error
        if self.closed or self.transport is None:
            raise UpstreamBrokeOff("the connection ended before the request was sent")
        self.transport.write(data)
        while not self._writable and not self.closed:
            await self.wait(within)

    def take(self) -> bytes:
        """What has arrived of the body so far (and room for more)."""
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        if self.buffered > BUFFERED_BYTES and self.transport is not None and not self.closed:
            self.transport.resume_reading()
        self.buffered = 0
        return data

    def reusable(self) -> bool:
        return (
            self.complete
            and self.keep_alive
            and self.request_sent
            and not self.closed
            and self._error is None
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("no answer in time"))


class UpstreamResponse:
    """A unit's answer: its status and header lines now, its body as it comes."""

    def __init__(self, pool: UpstreamPool, connection: _Connection, timeout: float) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self._timeout = timeout
        self.status = connection.status
        self.headers = connection.headers

    def whole_body(self) -> bytes | None:
        """The body if all of it has arrived already (most answers come in one read)."""
        connection = self._connection
        if connection is None or not connection.complete:
            return None
        return connection.take()

    async def body(self) -> AsyncIterator[bytes]:
        connection = self._connection
        assert connection is not None
        while True:
            if connection.chunks:
                yield connection.take()
            elif connection.complete:
                return
            else:
                await connection.wait(self._timeout)

    def close(self) -> None:
        """Hand the connection back for the next request if the exchange ended cleanly."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection)


class UpstreamPool:
    """Keep-alive connections to one unit (`http://host:port`)."""

    def __init__(self, base_url: str, *, timeout: float, connect_timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"the gateway reaches units over plain http://, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.encode("latin-1")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop), self.host, self.port),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout("no connection in time") from None
        except OSError as error:
            raise UpstreamUnreachable(error.strerror or str(error)) from None
        return connection

    def _reuse(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                connection._begin()
                return connection
            connection.close()
        return None

    def release(self, connection: _Connection) -> None:
        if connection.reusable():
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    async def request(
        self,
        method: str,
        target: str,
        headers: RawHeaders,
        body: AsyncIterator[bytes] | None = None,
        *,
        content_length: bool = False,
    ) -> UpstreamResponse:
        """Send a request and wait for the head of its answer. `body` is streamed as it comes:
        as is when the headers carry its `content-length`, else chunked."""
        head = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), b"host: ", self.host_header]
        for name, value in headers:
            head += [b"\r\n", name, b": ", value]
        if body is not None and not content_length:
            head.append(b"\r\ntransfer-encoding: chunked")
        head.append(b"\r\n\r\n")
        request_head = b"".join(head)
        reused = self._reuse()
        if reused is not None and body is None:
            try:
                return await self._exchange(reused, method, request_head, None, content_length)
            except UpstreamBrokeOff:
                # The unit closed this idle connection as the request left: nothing of it was
                # answered, so it is sent again, once, on a new connection.
                if reused.received_any:
                    raise
        elif reused is not None:
            return await self._exchange(reused, method, request_head, body, content_length)
        connection = await self._connect()
        return await self._exchange(connection, method, request_head, body, content_length)

    async def _exchange(
        self,
        connection: _Connection,
        method: str,
        request_head: bytes,
        body: AsyncIterator[bytes] | None,
        content_length: bool,
    ) -> UpstreamResponse:
        connection.no_body = method == "HEAD"
        try:
            await connection.send(request_head, self.timeout)
            if body is not None:
                connection.request_sent = False
                async for chunk in body:
                    if not chunk:
                        continue
                    if content_length:
                        await connection.send(chunk, self.timeout)
                    else:
                        await connection.send(b"%x\r\n%b\r\n" % (len(chunk), chunk), self.timeout)
                    if connection.head_done:  # answered early (a refusal): the rest is not read
                        break
                else:
                    if not content_length:
                        await connection.send(b"0\r\n\r\n", self.timeout)
                    connection.request_sent = True
            while not connection.head_done:
                await connection.wait(self.timeout)
        except BaseException:
            connection.close()
            raise
        return UpstreamResponse(self, connection, self.timeout)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
