"""What the chassis hands a running service: its database, settings, signals and others' ports."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.data.database import Database
from cleave.data.unit_of_work import UnitOfWork
from cleave.errors import ConfigError
from cleave.service.declaration import Service

P = TypeVar("P")


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


def port_methods(protocol: type) -> list[str]:
    """The methods of a port Protocol: its public coroutine functions."""
    return [
        name
        for name, member in vars(protocol).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    ]


def check_fake(protocol: type, fake: object) -> None:
    """Refuse a fake that a caller of `protocol` could not call as it calls the real port: a
    method missing, not async, or taking other parameters (names, kinds, which are optional)."""

    def shape(signature: inspect.Signature) -> list[tuple[str, Any, bool]]:
        return [
            (p.name, p.kind, p.default is not inspect.Parameter.empty)
            for p in signature.parameters.values()
        ]

    def unannotated(signature: inspect.Signature) -> inspect.Signature:
        empty = inspect.Parameter.empty
        parameters = [p.replace(annotation=empty) for p in signature.parameters.values()]
        return signature.replace(parameters=parameters, return_annotation=empty)

    problems = []
    for name in port_methods(protocol):
        method = getattr(fake, name, None)
        if method is None:
            problems.append(f"it has no method {name}")
            continue
        if not inspect.iscoroutinefunction(method):
            problems.append(f"its {name} is not async")
            continue
        wanted = inspect.signature(getattr(protocol, name))
        wanted = wanted.replace(parameters=list(wanted.parameters.values())[1:])  # without self
        got = inspect.signature(method)
        if shape(got) != shape(wanted):
            problems.append(f"its {name}{unannotated(got)} is not {name}{unannotated(wanted)}")
    if problems:
        raise ConfigError(
            f"the fake {type(fake).__name__} is no {protocol.__name__}: {'; '.join(problems)}"
        )


# The console's public client at the system's provider, and where it receives the answer.
CONSOLE_CLIENT = "cleave-console"
CONSOLE_CALLBACK_PATH = "/console/callback"


@dataclass(frozen=True)
class SystemFacts:
    """What any service may know of the system it runs in, whichever service it is."""

    public_url: str = ""
    # The issuer URL of this system's own OpenID provider, and the audience of its access tokens.
    issuer: str = ""
    audience: str = ""
    # The issuer whose tokens every service trusts: this system's own, or an external provider.
    trusted_issuer: str = ""
    # This topology's development state (`var/<topology>/`): generated demo secrets, say.
    state_dir: Path = field(default_factory=lambda: Path("var"))
    # The public client the API docs page signs in as, and where it receives the answer.
    docs_client: str | None = None
    docs_redirect_uri: str = ""
    # The public client the console signs its administrators in as, and its callback.
    console_client: str | None = None
    console_redirect_uri: str = ""


class ServiceContext:
    """Everything a running service may use: its own database, its settings and others' ports."""

    def __init__(
        self,
        service: Service,
        database: Database,
        ports: PortRegistry,
        settings: Mapping[str, Any],
        *,
        system: SystemFacts | None = None,
    ) -> None:
        self.service = service
        self.system = system or SystemFacts()
        self.name = service.name
        self.database = database
        self.settings = settings
        self._ports = ports
        self._signals: dict[str, Signal] = {}
        self._at_stop: list[Callable[[], Awaitable[None]]] = []
        self.log = structlog.get_logger(service=service.name)

    def port(self, protocol: type[P]) -> P:
        # The check a remote port's server makes, made here too: an undeclared call fails in the
        # monolith first, not only once the services run apart.
        if not self.service.may_call(protocol):
            raise ConfigError(
                f"{self.name} calls {protocol.__name__} without declaring it: "
                f"add it to calls= in {self.name}'s Service"
            )
        return self._ports.get(protocol)

    def signal(self, name: str) -> Signal:
        return self._signals.setdefault(name, Signal())

    def setting(self, key: str, default: float) -> float:
        return float(self.settings.get(key, default))

    def at_stop(self, close: Callable[[], Awaitable[None]]) -> None:
        """Run `close` when the unit stops: for what a service opens on first use (a pool)."""
        self._at_stop.append(close)

    async def stop(self) -> None:
        while self._at_stop:
            await self._at_stop.pop()()

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        # A read is an event of the span it runs in (the request, saga step or message), as a
        # transaction is, not a span of its own; outside any trace (a poller that finds nothing
        # to do) or with tracing off it leaves nothing behind and costs nothing.
        span = trace.get_current_span()
        if not span.is_recording():
            async with self.database.read() as connection:
                yield connection
            return
        started = time.perf_counter()
        try:
            async with self.database.read() as connection:
                yield connection
        finally:
            span.add_event(
                f"read {self.name}",
                {
                    **self.database.span_attributes,
                    "cleave.read.duration_ms": (time.perf_counter() - started) * 1e3,
                },
            )
