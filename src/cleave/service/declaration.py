"""How a service declares itself: name, tables and migrations, routes, the events it publishes
and handles, the port it offers to other services and the ports it calls, its workers and demo
data. It never reads the topology: at run time it gets a `ServiceContext` whose ports are wired."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import MetaData

from cleave.errors import ConfigError
from cleave.events import Event

if TYPE_CHECKING:
    from fastapi import APIRouter

    from cleave.auth.revocation import Revocation
    from cleave.data.unit_of_work import UnitOfWork
    from cleave.service.context import ServiceContext, SystemFacts

P = TypeVar("P")
E = TypeVar("E", bound=Event)


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
    """An event type a service consumes, and the handler that applies it in a unit of work.

    `name` is the subscription's key in the inbox and the dead-letter store: it must never
    change once deployed, so it is declared, never taken from the handler's Python name (a
    renamed function would otherwise re-apply every redelivered event).
    """

    event: type[E]
    handler: Callable[[E, UnitOfWork], Awaitable[None]]
    name: str

    def __post_init__(self) -> None:
        if not _SUBSCRIPTION_NAME.fullmatch(self.name):
            raise ConfigError(
                f"subscription name {self.name!r} must be lower-case letters, digits and "
                "underscores, starting with a letter"
            )


_SUBSCRIPTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


Worker = Callable[["ServiceContext"], Awaitable[None]]
Seeder = Callable[["ServiceContext"], Awaitable[int]]
# A line for the person who has just started the system (where the demo accounts are, say).
Welcome = Callable[["SystemFacts"], str]
# How the system's own provider registers one of the system's confidential clients (a unit's):
# (its context, client id, scopes, secret) → whether anything changed. Idempotent.
ClientRegistrar = Callable[["ServiceContext", str, frozenset[str], str], Awaitable[bool]]
# How the system's own provider lists the revocations still in force (cleave.auth.revocation).
RevocationLister = Callable[["ServiceContext"], Awaitable[list["Revocation"]]]
# A provider state a consumer's pact may ask for (cleave.contracts.pacts): set up from the
# state's parameters; the values it returns are what the pact's requests take from the state.
ProviderState = Callable[["ServiceContext", dict[str, Any]], Awaitable[dict[str, Any]]]


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
    # One round of each worker's due work, returning: what a scheduled tick runs where no
    # worker can loop (a unit served as a function).
    ticks: Sequence[Worker] = ()
    seed: Seeder | None = None
    welcome: Welcome | None = None
    description: str = ""
    # The site's own pages, mounted at the root of the public address (`/`, and every path that
    # is not the API or the chassis's), in every topology; at most one service of a system.
    pages: APIRouter | None = None
    # Only the system's own OpenID provider (`[auth] provider`): registers the units' clients.
    registers_clients: ClientRegistrar | None = None
    # Only the provider: the revocations in force, read by every unit as it starts.
    lists_revocations: RevocationLister | None = None
    # The provider states of its own that its consumers' pacts set up before a request, by name.
    provider_states: Mapping[str, ProviderState] = field(default_factory=dict, hash=False)

    def may_call(self, protocol: type) -> bool:
        """Whether this service may use a port: its own, or one it declares in `calls=`. The same
        rule holds in-process and for the units a port answers over gRPC."""
        return protocol in self.calls or (self.port is not None and self.port.protocol is protocol)

    def routes(self) -> list[str]:
        """Each route as `METHODS path`: the API's under `/api/<name>/v1`, then the site's own
        pages at the root, marked `(page)`."""
        found = []
        for prefix, router, mark in (
            (f"/api/{self.name}/v1", self.router, ""),
            ("", self.pages, " (page)"),  # the site's own pages, at the root
        ):
            for route in router.routes if router is not None else ():
                methods = ",".join(sorted(getattr(route, "methods", None) or []))
                found.append(f"{methods:<6} {prefix}{getattr(route, 'path', '')}{mark}")
        return found

    def __post_init__(self) -> None:
        names = [subscription.name for subscription in self.subscriptions]
        if repeated := sorted({name for name in names if names.count(name) > 1}):
            raise ConfigError(f"service {self.name!r} has two subscriptions named {repeated[0]!r}")
