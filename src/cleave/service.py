"""How a service declares itself, and what the chassis hands it at run time.

A service declares once: its name, tables and migrations, routes, the events it publishes and
handles, the port it offers to other services and the ports it calls. It never reads the topology:
at run time it gets a `ServiceContext` whose ports are already wired, local or remote.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.db import Database, utcnow
from cleave.errors import ConfigError
from cleave.messaging.envelope import Envelope, Event
from cleave.tables import outbox
from cleave.telemetry import current_carrier, tracer

if TYPE_CHECKING:
    from fastapi import APIRouter

P = TypeVar("P")
E = TypeVar("E", bound=Event)

OUTBOX_SIGNAL = "outbox"
OUTBOX_CHANNEL = "cleave_outbox"
_NOTIFY_OUTBOX = text(f"NOTIFY {OUTBOX_CHANNEL}")


@dataclass(frozen=True)
class PortBinding(Generic[P]):
    """The public port a service offers (a Protocol in its `contract`) and how to build it.

    `rpc` is the generated `_pb2` module of the port's `.proto`, so other units can call it.
    """

    protocol: type[P]
    factory: Callable[[ServiceContext], P]
    rpc: ModuleType | None = None


@dataclass(frozen=True)
class Subscription(Generic[E]):
    """An event type a service consumes, and the handler that applies it in a unit of work."""

    event: type[E]
    handler: Callable[[E, UnitOfWork], Awaitable[None]]

    @property
    def name(self) -> str:
        return self.handler.__name__


Worker = Callable[["ServiceContext"], Awaitable[None]]
Seeder = Callable[["ServiceContext"], Awaitable[int]]


@dataclass(frozen=True)
class Service:
    name: str
    metadata: MetaData
    migrations: Path
    router: APIRouter | None = None
    publishes: Sequence[type[Event]] = ()
    subscriptions: Sequence[Subscription[Any]] = ()
    port: PortBinding[Any] | None = None
    calls: Sequence[type] = ()
    workers: Sequence[Worker] = ()
    seed: Seeder | None = None
    description: str = ""


class Signal:
    """A wake-up call from a committed transaction to a background worker of the same service."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """Wait until set or `seconds` pass; True if it was set. Clears the signal."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        was_set = self._event.is_set()
        self._event.clear()
        return was_set


class PortRegistry:
    """The ports of a unit: each service's public port, local or remote, by its Protocol."""

    def __init__(self) -> None:
        self._ports: dict[type, object] = {}

    def bind(self, protocol: type[P], implementation: P) -> None:
        self._ports[protocol] = implementation

    def provides(self, protocol: type) -> bool:
        return protocol in self._ports

    def get(self, protocol: type[P]) -> P:
        try:
            implementation = self._ports[protocol]
        except KeyError:
            raise ConfigError(f"no service provides {protocol.__name__} in this unit") from None
        return implementation  # type: ignore[return-value]


class ServiceContext:
    """Everything a running service may use: its own database, its settings and others' ports."""

    def __init__(
        self,
        service: Service,
        database: Database,
        ports: PortRegistry,
        settings: Mapping[str, Any],
        *,
        issuer: str = "",
        audience: str = "",
        var_dir: Path | None = None,
    ) -> None:
        self.service = service
        # The system's own token issuer URL and API audience, for the service that issues tokens.
        self.issuer = issuer
        self.audience = audience
        self.var_dir = var_dir
        self.name = service.name
        self.database = database
        self.settings = settings
        self._ports = ports
        self._signals: dict[str, Signal] = {}
        self.log = structlog.get_logger(service=service.name)

    def port(self, protocol: type[P]) -> P:
        return self._ports.get(protocol)

    def signal(self, name: str) -> Signal:
        return self._signals.setdefault(name, Signal())

    def setting(self, key: str, default: float) -> float:
        return float(self.settings.get(key, default))

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with tracer.start_as_current_span(
            f"read {self.name}", kind=SpanKind.CLIENT, attributes=self.database.span_attributes
        ):
            async with self.database.read() as connection:
                yield connection


class UnitOfWork:
    """One transaction on the service's database, with the events it publishes.

    Handlers never commit: the block that opened the unit of work commits on a clean exit, and the
    collected events are written to the outbox in that same transaction. After the commit, the
    relay (and any worker named with `notify`) is woken at once instead of at its next poll.
    """

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self._events: list[Envelope] = []
        self._notify: set[str] = set()
        self._transaction: contextlib.AbstractAsyncContextManager[AsyncConnection] | None = None
        self._connection: AsyncConnection | None = None

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open: use `async with`")
        return self._connection

    def publish(self, event: Event, *, subject: str | None = None) -> Envelope:
        envelope = Envelope.of(
            event, source=f"/cleave/{self.context.name}", subject=subject, trace=current_carrier()
        )
        self._events.append(envelope)
        return envelope

    def notify(self, signal: str) -> None:
        """Wake the named worker of this service once the transaction has committed."""
        self._notify.add(signal)

    async def __aenter__(self) -> Self:
        # One span per transaction, not per statement: a hop to the database, and the parent of
        # the events it publishes.
        self._span = tracer.start_span(
            f"transaction {self.context.name}",
            kind=SpanKind.CLIENT,
            attributes=self.context.database.span_attributes,
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._transaction = self.context.database.transaction()
        try:
            self._connection = await self._transaction.__aenter__()
        except BaseException:
            self._end_span()
            raise
        return self

    def _end_span(self) -> None:
        otel_context.detach(self._token)
        self._span.end()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._transaction is not None
        transaction, self._transaction = self._transaction, None
        if exc is None and self._events:
            try:
                await self.connection.execute(outbox.insert(), _outbox_rows(self._events))
                if not self.context.database.is_sqlite:
                    # Wakes relays in other processes too (the one in this process is woken below).
                    await self.connection.execute(_NOTIFY_OUTBOX)
            except BaseException as error:
                try:
                    await transaction.__aexit__(type(error), error, error.__traceback__)
                finally:
                    self._end_span()
                raise
            self._notify.add(OUTBOX_SIGNAL)
        try:
            suppressed = await transaction.__aexit__(exc_type, exc, tb)
        finally:
            self._connection = None
            self._end_span()
        if exc is None:
            for name in self._notify:
                self.context.signal(name).set()
        return suppressed


def _outbox_rows(envelopes: Sequence[Envelope]) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "message_id": envelope.id,
            "type": envelope.type,
            "envelope": envelope.to_json(),
            "created_at": now,
            "attempts": 0,
        }
        for envelope in envelopes
    ]
